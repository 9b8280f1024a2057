"""gRPC figures for docs/grpc.md: the connectrpc app of tests/frameworks/grpc_app with grpcio.

    python -m bench.grpc latency [--server roadrunner|hypercorn|pyvoy] [--messages 1000000]
    python -m bench.grpc throughput [--server ...] [--seconds 10]

The server runs under `taskset -c 0`, this client under `taskset -c 1` (the ping prober is a
second process on core 1). latency: time to first message of a server-streaming call, and the
/ping round trip on another (HTTP/1.1) connection while one connection streams --messages.
throughput: grpc_unary (calls/s, 32 in flight) and grpc_stream (messages/s, one stream).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.process import free_port
from bench.procstat import tree_usage

ROOT = Path(__file__).resolve().parent.parent
APP = "tests.frameworks.grpc_app.service:app"
PING = b"GET /ping HTTP/1.1\r\nHost: bench\r\n\r\n"


def server_argv(server: str, port: int) -> list[str]:
    bind = f"127.0.0.1:{port}"
    if server == "roadrunner":
        return [sys.executable, "-m", "roadrunner", APP, "--port", str(port),
                "--protocols", "h1,h2", "--no-access-log", "--log-level", "warning"]
    if server == "hypercorn":
        return [sys.executable, "-m", "hypercorn", APP, "--bind", bind, "--log-level", "warning"]
    if server == "pyvoy":
        return [str(Path(sys.executable).parent / "pyvoy"), APP, "--port", str(port),
                "--log-level", "warning"]
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


@contextmanager
def running(server: str) -> Iterator[tuple[int, int]]:
    port = free_port("127.0.0.1")
    proc = subprocess.Popen(["taskset", "-c", "0", *server_argv(server, port)], cwd=ROOT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                    ping_once(sock)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"{server} did not start") from None
                time.sleep(0.1)
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def channel(port: int):  # type: ignore[no-untyped-def]
    import grpc

    from tests.frameworks.grpc_app import echo_pb2_grpc

    chan = grpc.insecure_channel(f"127.0.0.1:{port}")
    return chan, echo_pb2_grpc.EchoStub(chan)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def probe(port: int, interval: float) -> None:
    """Ping until stdin closes; print the round trips (ms) as JSON."""
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
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
        "pings": len(pings), "ping_reconnects": probed["reconnects"], "ping_ms_p50": percentile(pings, 0.5),
        "ping_ms_p99": percentile(pings, 0.99), "ping_ms_max": max(pings),
    }


def throughput(server: str, seconds: float) -> dict[str, float]:
    from tests.frameworks.grpc_app import echo_pb2 as pb

    with running(server) as (port, pid):
        chan, stub = channel(port)
        request = pb.Msg(n=1, text="hello")
        for _ in range(200):
            stub.Unary(request)  # warm up
        calls, deadline = 0, time.perf_counter() + seconds
        cpu, start = tree_usage(pid).cpu_seconds, time.perf_counter()
        in_flight = [stub.Unary.future(request) for _ in range(32)]
        while in_flight:
            in_flight.pop(0).result()
            calls += 1
            if time.perf_counter() < deadline:
                in_flight.append(stub.Unary.future(request))
        elapsed = time.perf_counter() - start
        unary, unary_cpu = calls / elapsed, (tree_usage(pid).cpu_seconds - cpu) / elapsed
        count = 0
        cpu, start = tree_usage(pid).cpu_seconds, time.perf_counter()
        call = stub.ServerStream(pb.StreamRequest(count=10**8, size=16))
        for _ in call:
            count += 1
            if count % 1000 == 0 and time.perf_counter() - start > seconds:
                break
        elapsed = time.perf_counter() - start
        stream, stream_cpu = count / elapsed, (tree_usage(pid).cpu_seconds - cpu) / elapsed
        call.cancel()
        chan.close()
    # *_server_cpu: the server's CPU seconds per second (1.0 = its core saturated).
    return {"grpc_unary_calls_per_s": unary, "grpc_unary_server_cpu": unary_cpu,
            "grpc_stream_messages_per_s": stream, "grpc_stream_server_cpu": stream_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["latency", "throughput", "probe"])
    parser.add_argument("port", nargs="?", type=int)
    parser.add_argument("--server", default="roadrunner")
    parser.add_argument("--messages", type=int, default=10**6)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.mode == "probe":
        probe(args.port, 0.01)
        return
    os.sched_setaffinity(0, {1})  # the client's core
    try:
        result = latency(args.server, args.messages) if args.mode == "latency" else throughput(
            args.server, args.seconds)
    except Exception as exc:  # noqa: BLE001 - a server that fails the scenario is a result too
        print(json.dumps({"server": args.server, "failed": repr(exc)[:300]}, indent=1))
        raise SystemExit(1) from None
    print(json.dumps({"server": args.server, **{k: round(v, 2) for k, v in result.items()}},
                     indent=1))


if __name__ == "__main__":
    main()
