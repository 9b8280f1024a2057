"""`python -m bench.callgrind`: user-space instructions per request, counted by callgrind.

Timing on a shared 2-core machine is noisy; instruction counts are not. The server runs under
`valgrind --tool=callgrind` (as in the bench: one worker, uvloop, httptools, no access log),
uninstrumented until a client outside valgrind has sent a warm-up; then counting starts from
zero, the client sends a fixed number of keep-alive requests over the same connections (HTTP/1.1,
HTTP/1.1 over TLS, or h2c with prior knowledge) and the counters are dumped. Kernel time is not counted, so this
measures the server's own code path, not the whole cost of a request.

    python -m bench.callgrind --server roadrunner --server uvicorn --requests 4000
    python -m bench.callgrind --server roadrunner --like h1_tls   # over TLS: OpenSSL counts too
    python -m bench.callgrind --check     # make bench-check: the regression gate (bench/gate.py)
    python -m bench.callgrind --record    # make bench-baseline: rewrite the gate's baseline
    ROADRUNNER_PURE=1 python -m bench.callgrind --record --baseline /tmp/pure.json  # the pure build
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, StreamEnded, StreamReset

from bench.gate import BASELINE
from bench.gate import run as gate_run
from bench.http1 import encode_request, parse_response
from bench.process import free_port
from bench.scenarios import SCENARIOS, LoadScenario, Request
from bench.servers import SERVERS, Launch

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Scenario:
    """One measured workload: `requests` requests round-robin over `connections` connections,
    after `warmup` requests on the same connections (not counted)."""

    name: str
    request: Request
    protocol: str = "h1"  # "h1tls": over TLS; "h2c": HTTP/2 with prior knowledge (RFC 9113 §3.3)
    connections: int = 4
    warmup: int = 400
    requests: int = 4000
    lockstep: bool = False  # one request in flight in all, not one per connection
    pipeline: int = 1  # h1: requests written back to back per connection before reading
    idle: float = 0.0  # seconds of idle counting, to take the idle cost per second out

    @property
    def settings(self) -> str:
        """What the figure depends on besides the code: a changed setting needs a new baseline."""
        request = self.request
        return (f"{self.protocol} {request.method} {request.path} ({len(request.body)} B body), "
                f"{self.requests} requests over {self.connections} connections"
                f"{' in lockstep' if self.lockstep else ''}"
                f"{f' x {self.pipeline} pipelined' if self.pipeline > 1 else ''} after {self.warmup} warm-up"
                f"{', idle cost per second taken out' if self.idle else ''}")


def _bench_request(name: str) -> Request:
    scenario = SCENARIOS[name]
    assert isinstance(scenario, LoadScenario)
    return scenario.request


# The regression gate's scenarios (make bench-check): the bench's own requests, counts sized so
# that each runs in well under a minute under valgrind on a 2-core machine, in lockstep so that
# how the server's reads batch cannot depend on scheduling (that moved h2c counts by 2%).
GATE: dict[str, Scenario] = {s.name: s for s in (
    Scenario("h1_hello", _bench_request("hello"), connections=2, warmup=200, requests=2000,
             lockstep=True, idle=3.0),
    Scenario("h1_echo", _bench_request("echo"), connections=2, warmup=200, requests=2000,
             lockstep=True, idle=3.0),
    Scenario("h2c_hello", _bench_request("h2c_hello"), protocol="h2c", connections=2, warmup=100,
             requests=400, lockstep=True, idle=3.0),
)}


def request_bytes(path: str) -> bytes:
    # wrk's request shape: a request line and a Host header.
    return encode_request(Request(path=path), HOST)


def read_response(sock: socket.socket, buffer: bytearray) -> bytes:
    """Read one response off a keep-alive connection, framed by Content-Length or chunked
    (bench.http1.parse_response); its body."""
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end != -1:
            head = bytes(buffer[:end]).lower()
            if re.search(rb"\r\n(content-length: *\d|transfer-encoding: *chunked)", head) is None:
                raise RuntimeError(f"neither content-length nor chunked in {head!r}")
            response = parse_response(bytes(buffer))
            if response is not None:
                del buffer[:response.size]
                return response.body
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk


class Client:
    """Keep-alive connections opened once, so warm-up and measurement share them (no connection
    set-up or close falls into the counted window). `run` sends one request on each connection,
    then reads each response, `requests // connections` times; in lockstep, one request is in
    flight at a time, so each one wakes the server on its own whatever the scheduling."""

    def __init__(self, port: int, connections: int, request: Request,
                 lockstep: bool = False, tls: bool = False) -> None:
        self.request = request
        self.lockstep = lockstep
        self.socks = [socket.create_connection((HOST, port)) for _ in range(connections)]
        if tls:
            # The bench's own certificate: nothing to verify. ALPN as browsers and h2load --h1.
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["http/1.1"])
            self.socks = [context.wrap_socket(sock) for sock in self.socks]

    def send(self, index: int) -> None:
        raise NotImplementedError

    def receive(self, index: int) -> bytes:
        raise NotImplementedError

    def run(self, requests: int) -> None:
        rounds = [[index] for index in range(len(self.socks))] if self.lockstep else [
            list(range(len(self.socks)))]
        for _ in range(requests // len(self.socks)):
            for indexes in rounds:
                for index in indexes:
                    self.send(index)
                for index in indexes:
                    self.check(self.receive(index))

    def check(self, body: bytes) -> None:
        if self.request.method == "POST" and body != self.request.body:
            raise RuntimeError(f"echo returned {len(body)} bytes, not the request body")

    def close(self) -> None:
        for sock in self.socks:
            sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class H1Client(Client):
    """`pipeline` requests in one write per turn, then their `pipeline` responses read (each
    turn counts as `pipeline` requests)."""

    def __init__(self, port: int, connections: int, request: Request,
                 lockstep: bool = False, pipeline: int = 1, tls: bool = False) -> None:
        super().__init__(port, connections, request, lockstep, tls)
        self.pipeline = pipeline
        self.payload = encode_request(request, HOST) * pipeline
        self.buffers = [bytearray() for _ in self.socks]

    def run(self, requests: int) -> None:
        super().run(requests // self.pipeline)

    def send(self, index: int) -> None:
        self.socks[index].sendall(self.payload)

    def receive(self, index: int) -> bytes:
        body = b""
        for _ in range(self.pipeline):
            body = read_response(self.socks[index], self.buffers[index])
        return body


class H2Client(Client):
    """h2c with prior knowledge, the frames built by the `h2` library here, outside valgrind.
    Whatever the client owes the server (SETTINGS ACK, WINDOW_UPDATE) leaves with the next
    request in one write, so the server sees the same reads in every run."""

    def __init__(self, port: int, connections: int, request: Request,
                 lockstep: bool = False) -> None:
        super().__init__(port, connections, request, lockstep)
        config = H2Configuration(client_side=True, header_encoding=None)
        self.conns = [H2Connection(config) for _ in self.socks]
        for conn in self.conns:
            conn.initiate_connection()
        self.pending = [conn.data_to_send() for conn in self.conns]
        self.streams = [0 for _ in self.socks]
        self.headers = [(b":method", request.method.encode()), (b":scheme", b"http"),
                        (b":authority", HOST.encode()), (b":path", request.path.encode()),
                        *((name.encode(), value.encode()) for name, value in request.headers)]

    def send(self, index: int) -> None:
        conn = self.conns[index]
        stream_id = self.streams[index] = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, self.headers, end_stream=not self.request.body)
        if self.request.body:
            conn.send_data(stream_id, self.request.body, end_stream=True)
        self.socks[index].sendall(self.pending[index] + conn.data_to_send())
        self.pending[index] = b""

    def receive(self, index: int) -> bytes:
        conn, stream_id, body, ended = self.conns[index], self.streams[index], bytearray(), False
        while not ended:
            data = self.socks[index].recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            for event in conn.receive_data(data):
                if isinstance(event, (StreamReset, ConnectionTerminated)):
                    raise RuntimeError(f"server ended the exchange: {event}")
                if isinstance(event, DataReceived) and event.stream_id == stream_id:
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                ended = ended or (isinstance(event, StreamEnded) and event.stream_id == stream_id)
            self.pending[index] += conn.data_to_send()
        return bytes(body)


def client(scenario: Scenario, port: int) -> Client:
    if scenario.protocol == "h2c":
        return H2Client(port, scenario.connections, scenario.request, scenario.lockstep)
    return H1Client(port, scenario.connections, scenario.request, scenario.lockstep,
                    scenario.pipeline, tls=scenario.protocol == "h1tls")


def drive(port: int, path: str, connections: int, requests: int, tls: bool = False) -> None:
    """`requests` keep-alive GETs of `path` spread round-robin over `connections` sockets."""
    with H1Client(port, connections, Request(path=path), tls=tls) as h1:
        h1.run(requests)


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float,
               tls: bool = False) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited at start")
        try:
            drive(port, "/hello", 1, 1, tls)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("server did not answer in time")


def total_instructions(out_file: Path) -> int:
    for line in out_file.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out_file}")


def _control(pid: int, *args: str) -> float:
    """Run callgrind_control; the moment it took effect, taken as the middle of the call."""
    started = time.monotonic()
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)
    return (started + time.monotonic()) / 2


def _window(pid: int, tmp: Path, work: Callable[[], object]) -> tuple[int, float]:
    """Instructions counted while `work` runs (from zeroed counters to a dump), and seconds."""
    zeroed = _control(pid, "-z")
    work()
    dumped = _control(pid, "-d")
    return total_instructions(_latest(tmp)), dumped - zeroed


def _latest(tmp: Path) -> Path:
    return max(tmp.glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime_ns)


def idle_corrected(busy: int, seconds: float, idle: int, idle_seconds: float,
                   requests: int) -> float:
    """Per request, less what the server spends idle per second (its 0.1 s main-loop tick)
    times the busy window's length: a slower machine then no longer counts more ticks."""
    return (busy - idle / idle_seconds * seconds) / requests


def measure(server: str, scenario: Scenario, keep: Path | None = None) -> float:
    """Instructions per request; with `keep`, the callgrind dump is copied there."""
    spec = SERVERS[server]
    port = free_port(HOST)
    launch = Launch(HOST, port, protocols=frozenset({scenario.protocol}))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        # No instrumentation until the warm-up is done: start-up runs several times faster.
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={out}.%p", *spec.argv(launch)]
        # A fixed hash seed: set and dict probing is then the same from run to run.
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore", PYTHONHASHSEED="0")
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_ready(port, process, 180.0, scenario.protocol == "h1tls")
            with client(scenario, port) as load:
                load.run(scenario.warmup)
                _control(process.pid, "--instr=on")
                busy, seconds = _window(process.pid, Path(tmp), lambda: load.run(scenario.requests))
                if keep is not None:
                    shutil.copy(_latest(Path(tmp)), keep / f"callgrind.{server}.{scenario.name}.out")
                if not scenario.idle:
                    return busy / scenario.requests
                idle, idle_seconds = _window(process.pid, Path(tmp),
                                             lambda: time.sleep(scenario.idle))
            return idle_corrected(busy, seconds, idle, idle_seconds, scenario.requests)
        finally:
            # The counts are dumped: no need to wait for valgrind's own dump at exit.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(60)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.callgrind", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    gate = parser.add_mutually_exclusive_group()
    gate.add_argument("--check", action="store_true",
                      help="the regression gate: roadrunner's gate scenarios against the baseline")
    gate.add_argument("--record", action="store_true",
                      help="measure the gate scenarios and rewrite the baseline")
    parser.add_argument("--scenario", action="append", choices=list(GATE),
                        help="with --check/--record: only these gate scenarios")
    parser.add_argument("--baseline", type=Path, default=BASELINE,
                        help="with --check/--record: this baseline file (default: the gate's)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="with --check/--record: runs per scenario (the median counts)")
    parser.add_argument("--server", action="append", choices=list(SERVERS))
    parser.add_argument("--path", default="/hello")
    parser.add_argument("--like", choices=[n for n, s in SCENARIOS.items() if isinstance(s, LoadScenario)],
                        help="send this bench scenario's request (its path, headers and body) "
                             "instead of a GET of --path")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--pipeline", type=int, default=1,
                        help="h1: requests written back to back per connection (as pipelined_h1)")
    parser.add_argument("--tls", action="store_true",
                        help="HTTP/1.1 over TLS (implied by --like h1_tls)")
    parser.add_argument("--keep", type=Path, help="copy each dump here (for callgrind_annotate)")
    args = parser.parse_args(argv)
    if args.check or args.record:
        chosen = {name: GATE[name].settings for name in args.scenario or GATE}
        return gate_run("check" if args.check else "record", chosen,
                        lambda name: measure("roadrunner", GATE[name], args.keep), args.repeat,
                        path=args.baseline)
    request = _bench_request(args.like) if args.like else Request(path=args.path)
    tls = args.tls or (args.like is not None and "h1tls" in SCENARIOS[args.like].requires)
    scenario = Scenario("custom", request, protocol="h1tls" if tls else "h1",
                        connections=args.connections, warmup=args.warmup,
                        requests=args.requests, pipeline=args.pipeline)
    for server in args.server or ["roadrunner", "uvicorn"]:
        per_request = measure(server, scenario, args.keep)
        print(f"{server}: {per_request:,.0f} instructions per request ({scenario.settings})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
