"""The WebSocket, middleware and multi-worker benchmark pieces: frame codec, handshake, driver
output, gzip check, unpinned commands, variants and report lines; the echo client and the gzip
check against a real roadrunner serving the benchmark apps."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from bench import report, scenarios, unpinned, ws
from bench.apps import JSON_16K_BODY
from bench.apps import app as bench_app
from bench.drivers import DRIVERS
from bench.http1 import Response
from bench.middleware import GzipWrkDriver, decode_gzip
from bench.middleware import app as starlette_gzip_app
from bench.results import LoadResult, LoadSample
from bench.scenarios import SCENARIOS, Request
from bench.servers import SERVERS, Launch
from tests.helpers import run_server

# -- the RFC 6455 client codec -------------------------------------------------------------------


def test_accept_key_matches_the_rfc_example() -> None:
    # RFC 6455 §1.3
    assert ws.accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_encode_frame_matches_the_rfc_masked_hello() -> None:
    # RFC 6455 §5.7: a single-frame masked text message "Hello"
    frame = ws.encode_frame(ws.OP_TEXT, b"Hello", bytes([0x37, 0xFA, 0x21, 0x3D]))
    assert frame == bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])


@pytest.mark.parametrize(("size", "head"), [(125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_encode_frame_length_forms_and_mask_round_trip(size: int, head: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    key = b"\x01\x02\x03\x04"
    frame = ws.encode_frame(ws.OP_BINARY, payload, key)
    assert len(frame) == head + 4 + size and frame[1] & 0x80  # masked (§5.1)
    assert ws.mask(frame[head + 4:], key) == payload
    assert ws.mask(b"", key) == b""


def test_parse_frame_lengths_partial_input_and_offsets() -> None:
    hello = bytes([0x81, 0x05]) + b"Hello"
    assert ws.parse_frame(hello) == (ws.Frame(True, ws.OP_TEXT, b"Hello"), 7)
    assert ws.parse_frame(hello[:4]) is None and ws.parse_frame(hello[:1]) is None
    medium = bytes([0x02, 126]) + (300).to_bytes(2, "big") + b"m" * 300
    large = bytes([0x82, 127]) + (70000).to_bytes(8, "big") + b"l" * 70000
    buffer = hello + medium + large
    frame, end = ws.parse_frame(buffer, 7) or (None, 0)
    assert frame == ws.Frame(False, ws.OP_BINARY, b"m" * 300) and end == 7 + 304
    assert ws.parse_frame(buffer, end) == (ws.Frame(True, ws.OP_BINARY, b"l" * 70000), len(buffer))
    assert ws.parse_frame(medium[:3]) is None and ws.parse_frame(large[:9]) is None


def test_parse_frame_rejects_what_a_server_must_not_send() -> None:
    with pytest.raises(ws.ProtocolError, match="masked"):
        ws.parse_frame(bytes([0x81, 0x81, 1, 2, 3, 4, 5]))
    with pytest.raises(ws.ProtocolError, match="control"):
        ws.parse_frame(bytes([0x09, 0x00]))  # fragmented ping (§5.5)
    with pytest.raises(ws.ProtocolError, match="control"):
        ws.parse_frame(bytes([0x89, 126, 0, 126]) + b"p" * 126)  # control payload over 125


def _handshake_response(key: bytes, status: bytes = b"101 Switching Protocols",
                        accept: bytes | None = None) -> bytes:
    accept = ws.accept_key(key) if accept is None else accept
    return (b"HTTP/1.1 " + status + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")


def test_handshake_request_and_response_validation() -> None:
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    request = ws.handshake_request("127.0.0.1:1", "/ws", key)
    assert request.startswith(b"GET /ws HTTP/1.1\r\n") and b"Sec-WebSocket-Version: 13" in request
    good = _handshake_response(key)
    assert ws.parse_handshake(good[:-2], key) is None
    assert ws.parse_handshake(good + b"\x81\x00", key) == len(good)
    with pytest.raises(ws.ProtocolError, match="403"):
        ws.parse_handshake(_handshake_response(key, b"403 Forbidden"), key)
    with pytest.raises(ws.ProtocolError, match="Accept"):
        ws.parse_handshake(_handshake_response(key, accept=b"wrong"), key)
    with pytest.raises(ws.ProtocolError, match="Upgrade"):
        ws.parse_handshake(good.replace(b"Upgrade: websocket", b"Upgrade: h2c"), key)
    with pytest.raises(ws.ProtocolError, match="Connection"):
        ws.parse_handshake(good.replace(b"Connection: Upgrade", b"Connection: close"), key)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert ws.percentile(values, 0.5) == 50.0 and ws.percentile(values, 0.99) == 99.0
    assert ws.percentile([3.0], 0.99) == 3.0 and ws.percentile([], 0.5) == 0.0


# -- the ws driver -------------------------------------------------------------------------------


def test_ws_driver_command_and_output(tmp_path: Path) -> None:
    scenario = SCENARIOS["ws_echo"]
    assert isinstance(scenario, scenarios.LoadScenario)
    argv = DRIVERS["ws"].command(scenario, "http://127.0.0.1:9", 2.0, tmp_path)
    assert argv[1:5] == ["-m", "bench.ws", "--url", "ws://127.0.0.1:9/ws"]
    assert argv[argv.index("--connections") + 1] == "16"
    message = Path(argv[argv.index("--message-file") + 1]).read_bytes()
    assert message == scenario.request.body and len(message) == 1024 and message.isascii()
    line = json.dumps({"requests": 10, "duration_s": 2.0, "requests_per_s": 5.0, "p50_s": 0.1,
                       "p99_s": 0.2, "socket_errors": 1, "bad_responses": 2})
    assert DRIVERS["ws"].parse("noise\n" + line + "\n") == LoadResult(10, 2.0, 5.0, 0.1, 0.2, 1, 2)
    with pytest.raises(ValueError, match="no result"):
        DRIVERS["ws"].parse("Traceback ...")


def test_ws_main_rejects_a_non_ws_url() -> None:
    with pytest.raises(SystemExit):
        ws.main(["--url", "http://127.0.0.1:1/ws"])


def test_echo_client_against_roadrunner(capsys: pytest.CaptureFixture[str]) -> None:
    message = SCENARIOS["ws_echo"].request.body
    with run_server(bench_app) as server:
        result = ws.run_sync("127.0.0.1", server.port, "/ws", message, 4, 10.0, limit=5)
        assert (result.requests, result.socket_errors, result.bad_responses) == (20, 0, 0)
        assert 0 < result.p50_s <= result.p99_s and result.client_cpu_seconds is not None
        echoed = ws.WsDriver.fetch("127.0.0.1", server.port, Request(path="/ws", body=b"hi"))
        assert echoed == Response(200, (), b"hi", 2)
        with pytest.raises(ConnectionError):  # the bench app refuses other paths (1008)
            ws.WsDriver.fetch("127.0.0.1", server.port, Request(path="/other", body=b"x"), 5.0)
        url = f"ws://127.0.0.1:{server.port}/ws"
        assert ws.main(["--url", url, "--connections", "2", "--messages", "3", "--size", "7"]) == 0
    printed = ws.parse_output(capsys.readouterr().out)
    assert printed.requests == 6 and printed.bad_responses == 0


def test_echo_client_counts_a_refused_handshake_as_a_failed_connection() -> None:
    with run_server(bench_app) as server:
        result = ws.run_sync("127.0.0.1", server.port, "/nope", b"x", 2, 10.0, limit=1)
    assert (result.requests, result.socket_errors) == (0, 2)


# -- gzip_response -------------------------------------------------------------------------------


def test_decode_gzip_requires_gzip() -> None:
    body = gzip.compress(b"{}")
    encoded = Response(200, ((b"content-encoding", b"gzip"),), body, 10)
    assert decode_gzip(encoded).body == b"{}"
    with pytest.raises(ValueError, match="none"):
        decode_gzip(Response(200, (), b"{}", 2))


def test_gzip_check_against_both_sides_served_by_roadrunner() -> None:
    scenario = SCENARIOS["gzip_response"]
    assert isinstance(scenario, scenarios.LoadScenario)
    assert 16 * 1024 <= len(JSON_16K_BODY) < 17 * 1024
    with run_server(bench_app, compress=True) as server:
        answer = GzipWrkDriver.fetch("127.0.0.1", server.port, scenario.request)
        assert answer.status == 200 and answer.body == scenario.expect_body
    with run_server(starlette_gzip_app) as server:  # the peer's app: Starlette GZipMiddleware
        answer = GzipWrkDriver.fetch("127.0.0.1", server.port, scenario.request)
        assert answer.body == JSON_16K_BODY
    with run_server(bench_app) as server, pytest.raises(ValueError, match="gzip"):
        GzipWrkDriver.fetch("127.0.0.1", server.port, scenario.request)


# -- unpinned runs and server variants ------------------------------------------------------------


def test_unpinned_commands_widen_the_affinity(tmp_path: Path) -> None:
    assert unpinned.all_cpus().startswith("0-")
    scenario = SCENARIOS["workers_hello"]
    assert isinstance(scenario, scenarios.LoadScenario)
    argv = DRIVERS["wrk-unpinned"].command(scenario, "http://127.0.0.1:9", 2.0, tmp_path)
    assert argv[:3] == ["taskset", "-c", unpinned.all_cpus()] and argv[3] == "wrk"
    launch = Launch("127.0.0.1", 9)
    granian = SERVERS["granian-2w"].argv(launch)
    assert granian[:3] == ["taskset", "-c", unpinned.all_cpus()]
    assert granian[granian.index("--workers") + 1] == "2" and granian.count("--workers") == 1
    roadrunner = SERVERS["roadrunner-1w"].argv(launch)
    assert roadrunner[-2:] == ["--workers", "1"] and roadrunner[0] == "taskset"


def test_variants_run_only_their_own_scenarios() -> None:
    launch = Launch("127.0.0.1", 9)
    assert SERVERS["uvicorn-wsproto"].argv(launch)[-2:] == ["--ws", "wsproto"]
    assert "bench.middleware:app" in SERVERS["uvicorn+gzip"].argv(launch)
    everything = SERVERS["roadrunner+all-mw"].argv(launch)
    for flag in ("--cors-allow-origin", "--security-headers", "--etag", "--compress",
                 "--rate-limit"):
        assert flag in everything
    for name, spec in SERVERS.items():
        if spec.variant:
            runnable = [s.name for s in SCENARIOS.values() if s.requires <= spec.supports]
            assert runnable and "hello" not in runnable, name
    for name in ("ws_echo", "hello_mw", "gzip_response", "workers_hello"):
        scenario = SCENARIOS[name]
        assert isinstance(scenario, scenarios.LoadScenario)
        assert scenario.requires <= SERVERS[scenario.baseline].supports


# -- the report ----------------------------------------------------------------------------------


def _sample(rps: float) -> LoadSample:
    return LoadSample(LoadResult(int(rps * 6), 6.0, rps, 0.001, 0.002), 0.2, 30 << 20)


def _run(names: list[str], chosen: list[str]) -> report.Run:
    return report.Run("python -m bench.run", {"repeat": 1, "duration": 6, "warmup": 2,
                                              "idle_connections": None},
                      {"cpu": "test"}, [SERVERS[n] for n in names],
                      [SCENARIOS[n] for n in chosen])


def test_report_ws_target_baselines_and_hidden_variants() -> None:
    result = _run(["roadrunner", "uvicorn", "granian", "uvicorn-wsproto", "roadrunner+etag"],
                  ["ws_echo", "hello_mw"])
    for server, rps in (("roadrunner", 26.0), ("uvicorn", 20.0), ("granian", 40.0),
                        ("uvicorn-wsproto", 10.0)):
        result.cell(server, "ws_echo").samples.append(_sample(rps))
    result.cell("roadrunner", "hello_mw").samples.append(_sample(100.0))
    result.cell("roadrunner+etag", "hello_mw").samples.append(_sample(80.0))
    text = report.render_markdown(result)
    assert "roadrunner ÷ best peer (granian): **0.65x** (target ≥ 1.3x): MISSED" in text
    assert "roadrunner ÷ best pure-Python peer (uvicorn): **1.30x** (target ≥ 1.3x): met" in text
    assert "| ÷ roadrunner |" in text and "| roadrunner+etag | 80 | 0.80x |" in text
    assert "| roadrunner+etag | n/a |" not in text  # a variant is not listed under ws_echo
    assert "| uvicorn | n/a |" not in text  # hello_mw picks a configuration: no n/a rows
    # A protocol the server lacks is still shown as n/a.
    assert "| uvicorn | n/a |" in report.render_markdown(_run(["uvicorn"], ["h2_hello"]))
    assert "bench/ws.py" in text and "1,024-byte text message" in text


def test_report_gzip_and_unpinned_lines() -> None:
    result = _run(["roadrunner+compress", "uvicorn+gzip", "roadrunner-2w"],
                  ["gzip_response", "workers_hello"])
    result.cell("roadrunner+compress", "gzip_response").samples.append(_sample(60.0))
    result.cell("uvicorn+gzip", "gzip_response").samples.append(_sample(50.0))
    result.cell("roadrunner-2w", "workers_hello").samples.append(_sample(50.0))
    text = report.render_markdown(result)
    assert "GZipMiddleware: **1.20x** (no numeric target)" in text
    assert "`Accept-Encoding: gzip`" in text and "Nothing is pinned here" in text
