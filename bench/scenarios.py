"""The scenario registry: what load each measurement applies.

Add a scenario by adding an entry here (and, for a new kind of client, a driver in
bench/drivers.py): an h2 scenario is `LoadScenario(..., driver="h2load", requires=...)`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from bench.apps import (
    DOWNLOAD_BODY_SIZE,
    FORM_BODY,
    FORM_FIELDS,
    HELLO_BODY,
    ITEM_PATHS,
    JSON_16K_BODY,
    JSON_DOCUMENT,
    LARGE_BODY_SIZE,
    STREAM_CHUNK,
    STREAM_CHUNKS,
    item_body,
)

UPLOAD_CHUNKED_SIZE = 64 * 1024
UPLOAD_CHUNKS = 16


@dataclass(frozen=True)
class Request:
    """One HTTP request, as every connection of a load generator repeats it."""

    method: str = "GET"
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    # Send the body with Transfer-Encoding: chunked in this many equal chunks (RFC 9112 §7.1)
    # instead of with Content-Length; 0 for Content-Length.
    chunks: int = 0


@dataclass(frozen=True)
class LoadScenario:
    """Throughput and latency under a closed-loop load generator (wrk by default)."""

    name: str
    title: str
    request: Request
    expect_body_length: int | None = None
    expect_body: bytes | None = None
    driver: str = "wrk"
    connections: int = 64
    requires: frozenset[str] = field(default_factory=lambda: frozenset({"h1"}))
    streams: int = 1  # concurrent requests per connection (h2load -m, the h3 client's streams)
    baseline: str = "uvicorn"  # the server the report's ratio column divides by
    pipeline: int = 1  # HTTP/1.1 requests written back to back per connection (wrk script)
    # Paths the connections cycle through, request after request (request.path is the first,
    # the one the pre-run check sends); empty for the request's path only.
    paths: tuple[str, ...] = ()
    min_duration: float = 0.0  # measured seconds at least, whatever --duration says
    # In the charts of req/s and CPU per request (a throughput scenario, whose figure is MiB/s and
    # whose "request" is a 10 MiB download, would only stretch their axes).
    chart: bool = True


@dataclass(frozen=True)
class IdleScenario:
    """Memory per idle keep-alive connection: open N, make one request on each, hold them."""

    name: str
    title: str
    connections: int
    request: Request = Request(path="/hello")
    requires: frozenset[str] = field(default_factory=lambda: frozenset({"h1"}))
    protocol: str = "h1"  # the idle client's protocol: "h1", or "h2c" (prior knowledge)


Scenario = LoadScenario | IdleScenario

ECHO_BODY = bytes(range(32, 127)) * 43 + b"x" * (4096 - 95 * 43)  # 4 KiB, printable
HEAVY_HEADERS = tuple((f"x-bench-header-{i:02d}", f"value-{i:02d}-" + "v" * 24) for i in range(30))

SCENARIOS: dict[str, Scenario] = {}
# Other names for a scenario (issue 16 names them so), accepted by `bench.run --only`.
ALIASES = {"websocket_msg": "ws_echo", "multi_stream_h2": "h2_multistream"}


def register(scenario: Scenario) -> Scenario:
    """Add a scenario to the registry (names are unique)."""
    if scenario.name in SCENARIOS:
        raise ValueError(f"duplicate scenario {scenario.name!r}")
    SCENARIOS[scenario.name] = scenario
    return scenario


register(LoadScenario(
    name="hello", title="GET /hello, 13-byte text body",
    request=Request(path="/hello"), expect_body=HELLO_BODY,
))
register(LoadScenario(
    name="json", title="GET /json, small JSON body (json.dumps per request)",
    request=Request(path="/json"), expect_body=json.dumps(JSON_DOCUMENT).encode(),
))
register(LoadScenario(
    name="echo", title="POST /echo, 4 KiB body echoed back",
    request=Request(method="POST", path="/echo", body=ECHO_BODY,
                    headers=(("content-type", "application/octet-stream"),)),
    expect_body=ECHO_BODY,
))
register(LoadScenario(
    name="large_response", title="GET /large, 1 MiB body",
    request=Request(path="/large"), expect_body_length=LARGE_BODY_SIZE, connections=16,
))
register(LoadScenario(
    name="headers_heavy", title="GET /headers with 30 extra request headers",
    request=Request(path="/headers", headers=HEAVY_HEADERS),
    # The app answers with its header count: the 30 extra plus Host (the probe sends no others).
    expect_body=b"31",
))
register(LoadScenario(
    name="multi_request_body",
    title=f"POST /upload, {UPLOAD_CHUNKED_SIZE // 1024} KiB body sent chunked in "
          f"{UPLOAD_CHUNKS} chunks (many http.request messages), byte count answered",
    request=Request(method="POST", path="/upload", body=b"u" * UPLOAD_CHUNKED_SIZE,
                    headers=(("content-type", "application/octet-stream"),),
                    chunks=UPLOAD_CHUNKS),
    expect_body=str(UPLOAD_CHUNKED_SIZE).encode(),
))
register(LoadScenario(
    name="post_4kb_form",
    title=f"POST /form, {len(FORM_BODY):,}-byte urlencoded form ({FORM_FIELDS} fields), "
          "field count answered",
    request=Request(method="POST", path="/form", body=FORM_BODY,
                    headers=(("content-type", "application/x-www-form-urlencoded"),)),
    expect_body=str(FORM_FIELDS).encode(),
))
register(LoadScenario(
    name="large_post_streaming",
    title="POST /upload, 1 MiB body (Content-Length) read message by message, byte count "
          "answered",
    request=Request(method="POST", path="/upload", body=b"u" * LARGE_BODY_SIZE,
                    headers=(("content-type", "application/octet-stream"),)),
    expect_body=str(LARGE_BODY_SIZE).encode(), connections=16,
))
register(LoadScenario(
    name="pipelined_h1", title="GET /hello, 16 requests pipelined per connection (HTTP/1.1)",
    request=Request(path="/hello"), expect_body=HELLO_BODY, pipeline=16,
))
register(LoadScenario(
    name="streaming_response",
    title=f"GET /stream, {STREAM_CHUNKS} x {len(STREAM_CHUNK) // 1024} KiB body messages "
          "(chunked, no Content-Length)",
    request=Request(path="/stream"), expect_body=STREAM_CHUNK * STREAM_CHUNKS,
))
register(LoadScenario(
    name="varied_paths",
    title=f"GET /items/0 .. /items/{ITEM_PATHS - 1}, a different path on each request",
    request=Request(path="/items/0"), expect_body=item_body(0),
    paths=tuple(f"/items/{i}" for i in range(ITEM_PATHS)),
))
register(LoadScenario(
    name="h1_tls", title="HTTP/1.1 over TLS: GET /hello (h2load --h1, 64 connections)",
    request=Request(path="/hello"), expect_body=HELLO_BODY, driver="h2load-h1",
    requires=frozenset({"h1tls"}),
))
register(IdleScenario(
    name="idle_connections", title="5,000 idle keep-alive connections (one request each)",
    connections=5000,
))
register(IdleScenario(
    name="idle_connections_h2",
    title="5,000 idle HTTP/2 cleartext connections (prior knowledge, one request each)",
    connections=5000, requires=frozenset({"h2c"}), protocol="h2c",
))

# HTTP/2: h2load (one thread), over TLS with h2 chosen by ALPN unless the name says h2c.
H2 = frozenset({"h2"})
H2C = frozenset({"h2c"})
# Ratios in the HTTP/2 and HTTP/3 tables are to hypercorn, the Python peer serving all of them.
H2_BASELINE = "hypercorn"
register(LoadScenario(
    name="h2_hello", title="HTTP/2 over TLS: GET /hello, 64 connections x 1 stream",
    request=Request(path="/hello"), expect_body=HELLO_BODY, driver="h2load", requires=H2,
    baseline=H2_BASELINE,
))
register(LoadScenario(
    name="h2_hello_m10", title="HTTP/2 over TLS: GET /hello, 16 connections x 10 streams",
    request=Request(path="/hello"), expect_body=HELLO_BODY, driver="h2load", requires=H2,
    connections=16, streams=10, baseline=H2_BASELINE,
))
register(LoadScenario(
    name="h2c_hello",
    title="HTTP/2 cleartext (prior knowledge): GET /hello, 64 connections x 1 stream",
    request=Request(path="/hello"), expect_body=HELLO_BODY, driver="h2load-h2c",
    requires=H2C, baseline=H2_BASELINE,
))
register(LoadScenario(
    name="h2c_hello_m10",
    title="HTTP/2 cleartext (prior knowledge): GET /hello, 16 connections x 10 streams",
    request=Request(path="/hello"), expect_body=HELLO_BODY, driver="h2load-h2c",
    requires=H2C, connections=16, streams=10, baseline=H2_BASELINE,
))
register(LoadScenario(
    name="h2_echo", title="HTTP/2 over TLS: POST /echo, 4 KiB body echoed back",
    request=Request(method="POST", path="/echo", body=ECHO_BODY,
                    headers=(("content-type", "application/octet-stream"),)),
    expect_body=ECHO_BODY, driver="h2load", requires=H2, baseline=H2_BASELINE,
))
register(LoadScenario(
    name="h2_multistream", title="HTTP/2 over TLS: GET /hello, 8 connections x 16 concurrent streams",
    request=Request(path="/hello"), expect_body=HELLO_BODY, driver="h2load", requires=H2,
    connections=8, streams=16, baseline=H2_BASELINE,
))
register(LoadScenario(
    name="h2_streaming", title="HTTP/2 over TLS: GET /stream, 4 x 4 KiB body messages",
    request=Request(path="/stream"), expect_body=STREAM_CHUNK * STREAM_CHUNKS, driver="h2load",
    requires=H2, baseline=H2_BASELINE,
))
register(LoadScenario(
    name="h2_large_response", title="HTTP/2 over TLS: GET /large, 1 MiB body",
    request=Request(path="/large"), expect_body_length=LARGE_BODY_SIZE, driver="h2load",
    requires=H2, connections=16, baseline=H2_BASELINE,
))

# HTTP/3: bench/h3client.py (aioquic), the same client for every server.
H3 = frozenset({"h3"})
register(LoadScenario(
    name="h3_hello", title="HTTP/3: GET /hello, 4 connections x 16 concurrent streams",
    request=Request(path="/hello"), expect_body=HELLO_BODY, driver="h3", requires=H3,
    connections=4, streams=16, baseline=H2_BASELINE,
))
register(LoadScenario(
    name="h3_download", title="HTTP/3: GET /download, 10 MiB body (throughput)",
    request=Request(path="/download"), expect_body_length=DOWNLOAD_BODY_SIZE, driver="h3",
    requires=H3, connections=1, streams=1, baseline=H2_BASELINE,
    # A slow server (hypercorn: ~3 MiB/s here) needs seconds for one 10 MiB download.
    min_duration=8.0,
    chart=False,
))

# Tags that pick a server configuration rather than a protocol: a server without one is left out
# of that scenario's table instead of being listed as "n/a".
CONFIGURATION_TAGS = frozenset({"mw", "gzip", "workers"})

# WebSocket (bench/ws.py): each connection sends a message and awaits its echo, in a loop.
WS_MESSAGE = (bytes(range(32, 127)) * 11)[:1024]  # 1 KiB of printable ASCII, a valid text frame
register(LoadScenario(
    name="ws_echo", title="WebSocket /ws: 1 KiB text message echoed, 16 connections",
    request=Request(path="/ws", body=WS_MESSAGE), expect_body=WS_MESSAGE, driver="ws",
    connections=16, requires=frozenset({"ws"}),
))

# roadrunner's CLI middleware on the hello path, as ratios to bare roadrunner. The request carries
# an Origin (CORS answers it) and Accept-Encoding: gzip (the body is below --compress-min-size).
register(LoadScenario(
    name="hello_mw", title="GET /hello through roadrunner's CLI middleware, one flag at a time",
    request=Request(path="/hello", headers=(("origin", "https://app.example"),
                                            ("accept-encoding", "gzip"))),
    expect_body=HELLO_BODY, requires=frozenset({"mw"}), baseline="roadrunner",
))
register(LoadScenario(
    name="gzip_response",
    title=f"GET /json16k, {len(JSON_16K_BODY):,}-byte JSON body gzip-compressed per request",
    request=Request(path="/json16k", headers=(("accept-encoding", "gzip"),)),
    expect_body=JSON_16K_BODY, driver="wrk-gzip", requires=frozenset({"gzip"}),
    baseline="uvicorn+gzip",
))

# 1 and 2 workers: two workers cannot share one pinned core, so servers and wrk run unpinned.
register(LoadScenario(
    name="workers_hello", title="GET /hello with 1 and 2 worker processes, nothing pinned",
    request=Request(path="/hello"), expect_body=HELLO_BODY, driver="wrk-unpinned",
    requires=frozenset({"workers"}), baseline="uvicorn-1w",
))
