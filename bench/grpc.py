"""gRPC figures for docs/grpc.md: the connectrpc app of tests/frameworks/grpc_app with grpcio.

    python -m bench.grpc suite [--servers roadrunner-nghttp2,roadrunner-h2,pyvoy,hypercorn]
        [--repeat 3] [--seconds 5] [--stream-messages 100000] [--bulk 300000] [--json out.json]
    python -m bench.grpc latency [--servers ...] [--messages 1000000]

Every server runs under `taskset -c 0`, this client (and h2load, the ping prober) under
`taskset -c 1`. suite: in each repetition every server in turn (A B C A B C ...), medians
reported: grpc_unary (calls/s, 32 in flight on one channel, h2c and TLS), grpc_stream (one call
of --stream-messages 16-byte messages decoded by the stub), bulk (one call of --bulk such
messages, read by h2load and by grpcio as raw bytes), each with the server's CPU time (its
whole process tree) per call or message. latency: time to first message of a server-streaming
call, and the /ping round trip on another (HTTP/1.1) connection while one connection streams
--messages.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.process import free_port
from bench.procstat import tree_usage
from bench.tls import bench_certificate

ROOT = Path(__file__).resolve().parent.parent
APP = "tests.frameworks.grpc_app.service:app"
PING = b"GET /ping HTTP/1.1\r\nHost: bench\r\n\r\n"
STREAM_METHOD = "/roadrunner.echo.Echo/ServerStream"
IN_FLIGHT = 32  # unary calls kept in flight on the one channel
MESSAGE_SIZE = 16  # payload bytes of a streamed message
SERVERS = ("roadrunner-nghttp2", "roadrunner-h2", "pyvoy", "hypercorn")
# hypercorn closes an HTTP/2 connection after keep_alive_max_requests (1000 by default) streams,
# failing the channel's calls in flight (grpcio: UNAVAILABLE, GOAWAY received). It has no CLI
# flag for it; the bench raises it with a config file.
HYPERCORN_CONFIG = "keep_alive_max_requests = 1000000000\n"


def server_argv(server: str, port: int, tls: bool, workdir: Path) -> list[str]:
    """The command line of one server on 127.0.0.1:port, h2c (prior knowledge) or TLS."""
    cert = bench_certificate()
    if server.startswith("roadrunner"):
        engine = server.partition("-")[2] or "auto"
        argv = [sys.executable, "-m", "roadrunner", APP, "--port", str(port),
                "--http2-engine", engine, "--no-access-log", "--log-level", "warning"]
        tls_flags = ["--ssl-certfile", str(cert.certfile), "--ssl-keyfile", str(cert.keyfile)]
        return argv + (tls_flags if tls else ["--protocols", "h1,h2"])
    if server == "hypercorn":
        config = workdir / "hypercorn.toml"
        config.write_text(HYPERCORN_CONFIG)
        argv = [sys.executable, "-m", "hypercorn", APP, "--bind", f"127.0.0.1:{port}",
                "--workers", "1", "--worker-class", "uvloop", "--log-level", "warning",
                "--config", str(config)]
        return argv + (["--certfile", str(cert.certfile), "--keyfile", str(cert.keyfile)]
                       if tls else [])
    if server == "pyvoy":
        argv = [str(Path(sys.executable).parent / "pyvoy"), APP, "--port", str(port),
                "--log-level", "warning"]
        return argv + (["--tls-cert", str(cert.certfile), "--tls-key", str(cert.keyfile),
                        "--tls-disable-http3"] if tls else [])
    raise SystemExit(f"unknown server {server}")


def ping_once(sock: socket.socket) -> float:
    start = time.perf_counter()
    sock.sendall(PING)
    data = b""
    while not data.endswith(b"pong"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("server closed the ping connection")
        data += chunk
    return time.perf_counter() - start


def ready_check(port: int, tls: bool) -> None:
    """One /ping over HTTP/1.1 (TLS with ALPN http/1.1 if tls); raises OSError until it works."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
        if not tls:
            ping_once(raw)
            return
        context = ssl.create_default_context(cafile=str(bench_certificate().certfile))
        context.set_alpn_protocols(["http/1.1"])
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            ping_once(sock)  # type: ignore[arg-type]


@contextmanager
def running(server: str, tls: bool = False) -> Iterator[tuple[int, int]]:
    """Start server on core 0 (its output in a log file, shown if it fails); yield port, pid."""
    port = free_port("127.0.0.1")
    with tempfile.TemporaryDirectory(prefix="bench-grpc-") as tmp:
        workdir = Path(tmp)
        log = open(workdir / "server.log", "w+b")  # noqa: SIM115 - closed in finally
        proc = subprocess.Popen(["taskset", "-c", "0", *server_argv(server, port, tls, workdir)],
                                cwd=ROOT, start_new_session=True, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    ready_check(port, tls)
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        log.seek(0)
                        tail = log.read()[-2000:].decode(errors="replace")
                        raise SystemExit(f"{server} did not start:\n{tail}") from None
                    time.sleep(0.1)
            yield port, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def channel(port: int, tls: bool = False):  # type: ignore[no-untyped-def]
    import grpc

    from tests.frameworks.grpc_app import echo_pb2_grpc

    target = f"127.0.0.1:{port}"
    if tls:
        ca = bench_certificate().certfile.read_bytes()
        chan = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca))
    else:
        chan = grpc.insecure_channel(target)
    return chan, echo_pb2_grpc.EchoStub(chan)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class Meter:
    """Wall time, the server tree's CPU time and this client's CPU time over one measurement."""

    pid: int

    def __enter__(self) -> Meter:
        self.wall = time.perf_counter()
        self.server = tree_usage(self.pid).cpu_seconds
        times = os.times()
        self.client = times.user + times.system
        return self

    def __exit__(self, *exc: object) -> None:
        times = os.times()
        self.client = times.user + times.system - self.client
        self.server = tree_usage(self.pid).cpu_seconds - self.server
        self.wall = time.perf_counter() - self.wall


def measure_unary(port: int, pid: int, tls: bool, seconds: float) -> dict[str, float]:
    from tests.frameworks.grpc_app import echo_pb2 as pb

    chan, stub = channel(port, tls)
    request = pb.Msg(n=1, text="hello")
    for _ in range(200):
        stub.Unary(request)  # warm up: connection, window growth, the app's first calls
    calls, deadline = 0, time.perf_counter() + seconds
    with Meter(pid) as meter:
        in_flight = [stub.Unary.future(request) for _ in range(IN_FLIGHT)]
        while in_flight:
            assert in_flight.pop(0).result().n == 2
            calls += 1
            if time.perf_counter() < deadline:
                in_flight.append(stub.Unary.future(request))
    chan.close()
    return {"calls_per_s": calls / meter.wall, "server_us_per_call": meter.server / calls * 1e6,
            "server_cpu": meter.server / meter.wall, "client_cpu": meter.client / meter.wall}


def raw_stream(chan: Any) -> Callable[..., Any]:
    """ServerStream with the messages left as bytes: the client's time goes to receiving them,
    not to protobuf (grpcio still splits and delivers each message)."""
    from tests.frameworks.grpc_app import echo_pb2 as pb

    return chan.unary_stream(  # type: ignore[no-any-return]
        STREAM_METHOD, request_serializer=pb.StreamRequest.SerializeToString,
        response_deserializer=None)


def measure_stream(port: int, pid: int, count: int) -> dict[str, float]:
    """One server-streaming call of `count` messages, decoded by the generated stub.

    Whole calls only: a stream cut short by the client leaves up to a flow-control window of
    messages (grpcio grows its window to MBs) produced but never counted.
    """
    from tests.frameworks.grpc_app import echo_pb2 as pb

    chan, stub = channel(port)
    stub.Unary(pb.Msg(n=1))  # connect first: the figure is the call, not the handshake
    with Meter(pid) as meter:
        received = sum(1 for _ in stub.ServerStream(pb.StreamRequest(count=count,
                                                                     size=MESSAGE_SIZE)))
    chan.close()
    assert received == count, received
    return {"messages_per_s": count / meter.wall,
            "server_us_per_message": meter.server / count * 1e6,
            "server_cpu": meter.server / meter.wall, "client_cpu": meter.client / meter.wall}


def measure_bulk(port: int, pid: int, count: int) -> dict[str, float]:
    """Wall time of one call streaming `count` messages, grpcio reading them as bytes."""
    from tests.frameworks.grpc_app import echo_pb2 as pb

    chan, stub = channel(port)
    stub.Unary(pb.Msg(n=1))
    with Meter(pid) as meter:
        received = sum(1 for _ in raw_stream(chan)(pb.StreamRequest(count=count,
                                                                     size=MESSAGE_SIZE)))
    chan.close()
    assert received == count, received
    return {"seconds": meter.wall, "server_us_per_message": meter.server / count * 1e6,
            "server_cpu": meter.server / meter.wall, "client_cpu": meter.client / meter.wall}


def measure_bulk_h2load(port: int, pid: int, count: int, workdir: Path) -> dict[str, float]:
    """The same call from h2load (nghttp2's C client, one connection, h2c prior knowledge):
    a client that reads the response far faster than grpcio, so the figure is the server's.
    h2load does not parse gRPC; the DATA bytes received are checked against the messages'."""
    from tests.frameworks.grpc_app import echo_pb2 as pb

    request = pb.StreamRequest(count=count, size=MESSAGE_SIZE).SerializeToString()
    body = workdir / "stream-request.bin"
    body.write_bytes(b"\0" + len(request).to_bytes(4, "big") + request)  # gRPC message frame
    payload = b"x" * MESSAGE_SIZE
    expect = sum(5 + pb.Msg(n=n, payload=payload).ByteSize() for n in range(count))
    argv = ["taskset", "-c", "1", "h2load", "-n1", "-c1", "-m1", "-d", str(body),
            "-H", "content-type: application/grpc", "-H", "te: trailers",
            f"http://127.0.0.1:{port}{STREAM_METHOD}"]
    with Meter(pid) as meter:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=300).stdout
    match = re.search(r"^traffic: .*\((\d+)\) data", out, re.MULTILINE)
    if "1 succeeded" not in out or not match or int(match[1]) != expect:
        raise RuntimeError(f"h2load: expected {expect} data bytes:\n{out[-600:]}")
    total = re.search(r"^traffic: [\d.]+\w+ \((\d+)\) total", out, re.MULTILINE)
    return {"seconds": meter.wall, "server_us_per_message": meter.server / count * 1e6,
            "server_cpu": meter.server / meter.wall,
            "wire_bytes": float(total[1]) if total else 0.0}


def suite_once(server: str, seconds: float, stream: int, bulk: int) -> dict[str, dict[str, float]]:
    result: dict[str, dict[str, float]] = {}
    with running(server) as (port, pid), tempfile.TemporaryDirectory() as tmp:
        result["unary_h2c"] = measure_unary(port, pid, False, seconds)
        result["stream"] = measure_stream(port, pid, stream)
        if bulk:
            result["bulk_h2load"] = measure_bulk_h2load(port, pid, bulk, Path(tmp))
            result["bulk"] = measure_bulk(port, pid, bulk)
    with running(server, tls=True) as (port, pid):
        result["unary_tls"] = measure_unary(port, pid, True, seconds)
    return result


def medians(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """The median of every figure over the runs that produced it."""
    out: dict[str, dict[str, float]] = {}
    for run in runs:
        for scenario, figures in run.items():
            for key in figures:
                values = [r[scenario][key] for r in runs if scenario in r]
                out.setdefault(scenario, {})[key] = statistics.median(values)
    return out


def table(summary: dict[str, Any]) -> str:
    """docs/grpc.md's throughput table (medians)."""
    rows: list[tuple[Any, ...]] = [
        ("grpc_unary h2c, calls/s", "unary_h2c", "calls_per_s", "{:,.0f}"),
        ("  server CPU per call, us", "unary_h2c", "server_us_per_call", "{:,.0f}"),
        ("grpc_unary TLS, calls/s", "unary_tls", "calls_per_s", "{:,.0f}"),
        ("  server CPU per call, us", "unary_tls", "server_us_per_call", "{:,.0f}"),
        (f"grpc_stream ({summary['stream']:,} messages), messages/s", "stream",
         "messages_per_s", "{:,.0f}"),
        ("  server CPU per message, us", "stream", "server_us_per_message", "{:,.1f}"),
        ("  client CPU (cores)", "stream", "client_cpu", "{:.2f}"),
        (f"{summary['bulk']:,} x 16 B, one call, h2load, s", "bulk_h2load", "seconds", "{:.2f}"),
        ("  server CPU per message, us", "bulk_h2load", "server_us_per_message", "{:,.1f}"),
        ("  bytes on the wire, MB", "bulk_h2load", "wire_bytes", "{:.2f}", 1e-6),
        (f"{summary['bulk']:,} x 16 B, one call, grpcio, s", "bulk", "seconds", "{:.2f}"),
        ("  server CPU per message, us", "bulk", "server_us_per_message", "{:,.1f}"),
        ("  client CPU (cores)", "bulk", "client_cpu", "{:.2f}"),
    ]
    servers = list(summary["medians"])
    lines = [f"| figure (median of {summary['repeat']}) | " + " | ".join(servers) + " |",
             "| --- |" + " --- |" * len(servers)]
    for label, scenario, key, fmt, *scale in rows:
        cells = []
        for server in servers:
            figures = summary["medians"][server].get(scenario)
            cells.append(fmt.format(figures[key] * (scale or [1])[0]) if figures else "failed")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def suite(servers: list[str], repeat: int, seconds: float, stream: int,
          bulk: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, dict[str, float]]]] = {s: [] for s in servers}
    failures: dict[str, list[str]] = {s: [] for s in servers}
    load_before = os.getloadavg()
    for rep in range(repeat):
        for server in servers:  # interleaved: A B C A B C ...
            try:
                runs[server].append(suite_once(server, seconds, stream, bulk))
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - a failure is a result too
                failures[server].append(repr(exc)[:300])
            print(f"rep {rep + 1}/{repeat} {server}: "
                  f"{json.dumps(runs[server][-1] if runs[server] else failures[server][-1])}",
                  file=sys.stderr, flush=True)
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "repeat": repeat, "seconds": seconds,
            "stream": stream, "bulk": bulk, "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "medians": {s: medians(runs[s]) for s in servers}, "runs": runs,
            "failures": {s: f for s, f in failures.items() if f}}


def probe(port: int, interval: float) -> None:
    """Ping until stdin closes; print the round trips (ms) as JSON."""
    stop = threading.Event()

    def wait_stdin() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    samples: list[float] = []
    reconnects = 0
    while not stop.is_set():
        with socket.create_connection(("127.0.0.1", port)) as sock:
            try:
                while not stop.is_set():
                    samples.append(ping_once(sock) * 1000)
                    time.sleep(interval)
            except ConnectionError:
                reconnects += 1  # the server closed the keep-alive connection: a new one
    print(json.dumps({"samples": samples, "reconnects": reconnects}))


def latency(server: str, messages: int) -> dict[str, float]:
    from tests.frameworks.grpc_app import echo_pb2 as pb

    with running(server) as (port, _):
        chan, stub = channel(port)
        firsts = []
        for _ in range(50):
            start = time.perf_counter()
            call = stub.ServerStream(pb.StreamRequest(count=10, interval_ms=0))
            next(call)
            firsts.append((time.perf_counter() - start) * 1000)
            list(call)
        cold_start = time.perf_counter()
        cold_chan, cold_stub = channel(port)
        next(cold_stub.ServerStream(pb.StreamRequest(count=1)))
        cold = (time.perf_counter() - cold_start) * 1000
        cold_chan.close()
        prober = subprocess.Popen(
            ["taskset", "-c", "1", sys.executable, "-m", "bench.grpc", "probe", str(port)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        start = time.perf_counter()
        received = sum(1 for _ in stub.ServerStream(pb.StreamRequest(count=messages)))
        elapsed = time.perf_counter() - start
        out, _ = prober.communicate("", timeout=30)
        probed = json.loads(out)
        pings = probed["samples"]
        chan.close()
    assert received == messages, received
    return {
        "first_message_ms_p50": percentile(firsts, 0.5), "first_message_ms_max": max(firsts),
        "first_message_cold_ms": cold, "stream_messages": messages,
        "stream_seconds": elapsed, "stream_messages_per_s": messages / elapsed,
        "pings": len(pings), "ping_reconnects": probed["reconnects"],
        "ping_ms_p50": percentile(pings, 0.5), "ping_ms_p99": percentile(pings, 0.99),
        "ping_ms_max": max(pings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["suite", "latency", "probe"])
    parser.add_argument("port", nargs="?", type=int)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--stream-messages", type=int, default=100_000)
    parser.add_argument("--bulk", type=int, default=300_000)
    parser.add_argument("--messages", type=int, default=10**6)
    parser.add_argument("--json", type=Path, help="also write the whole result here")
    args = parser.parse_args()
    if args.mode == "probe":
        probe(args.port, 0.01)
        return
    os.sched_setaffinity(0, {1})  # the client's core (grpcio's threads inherit it)
    servers = args.servers.split(",")
    if args.mode == "suite":
        result = suite(servers, args.repeat, args.seconds, args.stream_messages,
                       args.bulk)
        print(table(result))
        print(f"load average before {result['loadavg_before']}, after {result['loadavg_after']}")
        if result["failures"]:
            print("failures: " + json.dumps(result["failures"], indent=1))
    else:
        result = {"date": time.strftime("%Y-%m-%d %H:%M"), "loadavg_before": os.getloadavg()}
        for server in servers:
            try:
                figures: Any = {k: round(v, 2) for k, v in latency(server, args.messages).items()}
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - a failure is a result too
                figures = {"failed": repr(exc)[:300]}
            result[server] = figures
            print(json.dumps({"server": server, **figures}), flush=True)
        result["loadavg_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
