"""gRPC end to end: the connectrpc app of grpc_app/ under the real roadrunner CLI, called by
grpcio over h2c prior knowledge (h2-only port), the shared h1,h2 port and TLS (ALPN h2); the
Connect and gRPC-Web protocols over HTTP/1.1 through connectrpc's own client."""

from __future__ import annotations

import json
import queue
import re
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("connectrpc")  # Python 3.11+
grpc = pytest.importorskip("grpc")

from connectrpc.code import Code  # noqa: E402
from connectrpc.errors import ConnectError  # noqa: E402
from connectrpc.protocol import ProtocolType  # noqa: E402
from hyperframe.frame import HeadersFrame  # noqa: E402
from pyqwest import HTTPVersion, SyncClient, SyncHTTPTransport  # noqa: E402

from tests.frameworks.grpc_app import echo_pb2 as pb  # noqa: E402
from tests.frameworks.grpc_app import echo_pb2_grpc  # noqa: E402
from tests.frameworks.grpc_app.echo_connect import EchoClientSync  # noqa: E402
from tests.helpers import NGHTTP2_MISSING  # noqa: E402
from tests.integration.process_helpers import roadrunner  # noqa: E402
from tests.integration.test_http2_grpc import stream_frames  # noqa: E402
from tests.integration.test_http2_support import RawH2, request_headers  # noqa: E402

APP = "tests.frameworks.grpc_app.service:app"
MiB = 1024 * 1024
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 16 * MiB),
                   ("grpc.max_send_message_length", 16 * MiB)]


@dataclass
class Target:
    name: str
    url: str
    stub: Any  # echo_pb2_grpc.EchoStub
    markers: Path
    ca: bytes | None

    def marker(self, name: str) -> Path:
        path = self.markers / f"{self.name.replace(',', '')}-{name}.json"
        path.unlink(missing_ok=True)
        return path


# Every transport on each HTTP/2 engine (nghttp2 skipped, with the reason, where not built).
TARGETS = [
    pytest.param(
        (transport, engine),
        id=f"{transport}-{engine}",
        marks=pytest.mark.skipif(
            engine == "nghttp2" and bool(NGHTTP2_MISSING),
            reason=f"the nghttp2 engine is not built: {NGHTTP2_MISSING}",
        ),
    )
    for transport in ("h2c", "h1,h2", "tls")
    for engine in ("nghttp2", "h2")
]


@pytest.fixture(scope="module", params=TARGETS)
def target(request: pytest.FixtureRequest, tls_files: dict[str, str], project_root: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One server per transport and HTTP/2 engine for the whole module."""
    name, engine = request.param
    if name == "tls":
        args = ["--ssl-certfile", tls_files["certfile"], "--ssl-keyfile", tls_files["keyfile"]]
    else:
        args = ["--protocols", "h2" if name == "h2c" else "h1,h2"]
    args += ["--http2-engine", engine]
    with roadrunner(APP, *args, "--no-access-log", cwd=project_root) as server:
        address = f"127.0.0.1:{server.port}"
        ca = Path(tls_files["cafile"]).read_bytes() if name == "tls" else None
        if ca is None:
            channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        else:
            credentials = grpc.ssl_channel_credentials(root_certificates=ca)
            channel = grpc.secure_channel(address, credentials, options=CHANNEL_OPTIONS)
        with channel:
            scheme = "https" if ca else "http"
            yield Target(name, f"{scheme}://{address}", echo_pb2_grpc.EchoStub(channel),
                         tmp_path_factory.mktemp("markers"), ca)


def wait_marker(path: Path, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.005)
    raise AssertionError(f"{path.name} not written in {timeout} s")


# -- grpcio over each transport ----------------------------------------------------------------


def test_unary_with_metadata_in_and_out(target: Target) -> None:
    response, call = target.stub.Unary.with_call(
        pb.Msg(n=41, text="hi"), metadata=[("x-in", "v1")], timeout=10)
    assert (response.n, response.text) == (42, "hi")
    assert ("x-out", "v1") in [(m.key, m.value) for m in call.initial_metadata()]
    assert [(m.key, m.value) for m in call.trailing_metadata()] == [("x-trailer", "t-v1")]
    assert call.code() == grpc.StatusCode.OK


@pytest.mark.parametrize("count", [0, 50, 20_000])
def test_server_streaming_keeps_order(target: Target, count: int) -> None:
    numbers = [m.n for m in target.stub.ServerStream(pb.StreamRequest(count=count), timeout=30)]
    assert numbers == list(range(count))


def test_client_streaming(target: Target) -> None:
    response = target.stub.ClientStream(iter(pb.Msg(n=i) for i in range(100)), timeout=10)
    assert (response.n, response.text) == (100, str(sum(range(100))))


def test_bidi_lockstep(target: Target) -> None:
    requests: queue.Queue[pb.Msg | None] = queue.Queue()
    responses = target.stub.Bidi(iter(requests.get, None), timeout=10)
    for i in range(20):
        requests.put(pb.Msg(n=i))
        assert next(responses).n == 2 * i  # each answer arrives before the next request
    requests.put(None)
    assert list(responses) == []


def test_bidi_bulk_sent_before_reading(target: Target) -> None:
    all_sent = threading.Event()
    payload = b"p" * 10_000

    def requests() -> Iterator[pb.Msg]:
        for i in range(100):
            yield pb.Msg(n=i, payload=payload)
        all_sent.set()

    responses = target.stub.Bidi(requests(), timeout=20)
    assert all_sent.wait(10)
    got = [(m.n, m.payload) for m in responses]
    assert got == [(2 * i, payload) for i in range(100)]


def test_error_status_and_message(target: Target) -> None:
    with pytest.raises(grpc.RpcError) as info:
        target.stub.Fail(pb.Msg(text="thing"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "no such thing: thing"


def test_4mib_request_and_response(target: Target) -> None:
    payload = bytes(range(256)) * (4 * MiB // 256)
    assert target.stub.Unary(pb.Msg(payload=payload), timeout=20).payload == payload


def test_four_4mib_calls_concurrently(target: Target) -> None:
    payloads = [bytes([i]) * (4 * MiB) for i in range(4)]
    futures = [target.stub.Unary.future(pb.Msg(n=i, payload=p), timeout=30)
               for i, p in enumerate(payloads)]
    results = [f.result() for f in futures]
    assert [(r.n, r.payload) for r in results] == [(i + 1, p) for i, p in enumerate(payloads)]


def test_fifty_concurrent_unary_calls(target: Target) -> None:
    futures = [target.stub.Unary.future(pb.Msg(n=i), timeout=20) for i in range(50)]
    assert [f.result().n for f in futures] == [i + 1 for i in range(50)]


@pytest.mark.parametrize("interval_ms", [1, 0], ids=["paced", "busy"])
def test_cancel_mid_stream_runs_the_handler_finally(target: Target, interval_ms: int) -> None:
    """A cancel (RST_STREAM) ends the handler: its finally block runs within 100 ms. "busy"
    streams with no pause and stops reading, so the handler waits on flow control."""
    marker = target.marker(f"cancel-{interval_ms}")
    call = target.stub.ServerStream(pb.StreamRequest(
        count=10**7, size=1000, interval_ms=interval_ms, marker=str(marker)), timeout=30)
    assert [next(call).n for _ in range(10)] == list(range(10))
    time.sleep(0.3)
    assert not marker.exists()
    cancelled_at = time.time()
    call.cancel()
    ended = wait_marker(marker)
    assert ended["event"] == "finally"
    assert ended["time"] - cancelled_at < 0.1, ended["time"] - cancelled_at
    assert call.code() == grpc.StatusCode.CANCELLED


def test_deadline(target: Target) -> None:
    marker = target.marker("deadline")
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        target.stub.Sleep(pb.StreamRequest(interval_ms=5000, marker=str(marker)), timeout=0.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - start < 2
    seen = wait_marker(marker)
    # gRPC over HTTP/2: "grpc-timeout" → TimeoutValue TimeoutUnit (at most 8 digits).
    value, unit = re.fullmatch(r"(\d{1,8})([HMSmun])", seen["grpc_timeout"]).groups()  # type: ignore[union-attr]
    seconds = int(value) * {"H": 3600, "M": 60, "S": 1, "m": 1e-3, "u": 1e-6, "n": 1e-9}[unit]
    assert 0.3 < seconds <= 0.51, seen  # the client's 0.5 s, less the time to send the call
    assert abs(seen["timeout_ms"] - seconds * 1000) < 20, seen


def test_gzip_request(target: Target) -> None:
    payload = b"z" * 100_000
    response, call = target.stub.Unary.with_call(
        pb.Msg(n=1, payload=payload), compression=grpc.Compression.Gzip, timeout=10)
    assert response.payload == payload
    assert ("x-seen-encoding", "gzip") in [(m.key, m.value) for m in call.initial_metadata()]


# -- connectrpc's client: Connect and gRPC-Web over HTTP/1.1 ---------------------------------------


@pytest.fixture
def connect_client(target: Target, request: pytest.FixtureRequest) -> Iterator[EchoClientSync]:
    if target.name == "h2c":
        pytest.skip("the h2-only port does not speak HTTP/1.1")
    transport = SyncHTTPTransport(tls_ca_cert=target.ca, http_version=HTTPVersion.HTTP1)
    with EchoClientSync(target.url, protocol=request.param, http_client=SyncClient(transport),
                        timeout_ms=10_000) as client:
        yield client


@pytest.mark.parametrize("connect_client", [ProtocolType.CONNECT, ProtocolType.GRPC_WEB],
                         ids=["connect", "grpc-web"], indirect=True)
def test_connectrpc_client_over_http11(connect_client: EchoClientSync) -> None:
    assert connect_client.unary(pb.Msg(n=1, text="a")).n == 2
    stream = connect_client.server_stream(pb.StreamRequest(count=500, size=100))
    assert [m.n for m in stream] == list(range(500))
    assert connect_client.client_stream(iter(pb.Msg(n=i) for i in range(10))).n == 10
    with pytest.raises(ConnectError) as info:
        connect_client.fail(pb.Msg(text="x"))
    assert info.value.code == Code.NOT_FOUND
    assert info.value.message == "no such thing: x"


# -- the wire ------------------------------------------------------------------------------------


def test_connectrpc_trailers_only_error_is_one_headers_frame(target: Target) -> None:
    """connectrpc answers an error found before the call starts (here a malformed grpc-timeout)
    Trailers-Only: gRPC's PROTOCOL-HTTP2.md wants it as one HEADERS frame with END_STREAM."""
    context = None
    if target.ca is not None:
        context = ssl.create_default_context(cadata=target.ca.decode())
    port = int(target.url.rsplit(":", 1)[1])
    with RawH2(port, tls=context) as client:
        headers = request_headers(b"/roadrunner.echo.Echo/Unary", b"POST", te=b"trailers",
                                  content_type=b"application/grpc", grpc_timeout=b"1x")
        client.request(1, headers, body=b"\0" * 5)
        frames = stream_frames(client, 1)
    assert [type(f) for f in frames] == [HeadersFrame], frames
    assert (b"grpc-status", b"3") in frames[0].decoded  # INVALID_ARGUMENT
