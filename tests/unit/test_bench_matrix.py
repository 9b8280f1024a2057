"""The bench matrix (issues 14 and 16): pyvoy and the two HTTP/2 engines in the server registry,
the new scenarios (chunked, pipelined and varied-path HTTP/1.1 load, HTTP/1.1 over TLS, idle
HTTP/2 memory), the targets, the SVG charts and the whole-file report with its includes; the
request encodings and the idle h2c client against a real roadrunner."""

from __future__ import annotations

import asyncio
import json
import socket
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import pytest

from bench import charts, idle, publish, report, run, scenarios
from bench.apps import FORM_BODY, FORM_FIELDS, item_body
from bench.apps import app as bench_app
from bench.drivers import DRIVERS
from bench.h2load import H2loadSummary, to_load_result
from bench.http1 import _dechunk, chunked, encode_request, parse_response
from bench.idle import measure_idle
from bench.results import IdleSample, LoadResult, LoadSample
from bench.scenarios import SCENARIOS, Request
from bench.servers import SERVERS, Launch
from bench.tls import bench_certificate
from bench.wrk import WrkDriver, needs_raw_requests, raw_lua_script
from tests.helpers import run_server

# -- servers -------------------------------------------------------------------------------------


def _argv(server: str, *protocols: str) -> list[str]:
    return SERVERS[server].argv(Launch("127.0.0.1", 8443, protocols=frozenset(protocols)))


def test_pyvoy_serves_what_it_was_seen_to_serve_with_one_envoy_worker() -> None:
    assert {"h1", "h1tls", "h2", "h2c", "h3", "ws"} <= SERVERS["pyvoy"].supports
    plain = _argv("pyvoy", "h1")
    assert plain[0].endswith("/pyvoy") and "bench.apps:app" in plain
    assert plain[-3:] == ["--", "--concurrency", "1"]  # Envoy's own flag, after pyvoy's
    assert "--websockets" not in plain and "--tls-cert" not in plain
    assert "--websockets" in _argv("pyvoy", "ws")
    tls = _argv("pyvoy", "h2")
    assert str(bench_certificate().certfile) in tls and "--tls-disable-http3" in tls
    assert "--tls-disable-http3" not in _argv("pyvoy", "h3")
    gzip = SERVERS["pyvoy+gzip"].argv(Launch("127.0.0.1", 1, protocols=frozenset({"gzip"})))
    assert gzip.index("--content-encodings") < gzip.index("--")  # a pyvoy flag, not Envoy's


def test_every_http2_scenario_runs_on_both_engines() -> None:
    nghttp2, h2 = _argv("roadrunner", "h2c"), _argv("roadrunner+h2-engine", "h2c")
    assert nghttp2[nghttp2.index("--http2-engine") + 1] == "nghttp2"
    assert h2[h2.index("--http2-engine") + 1] == "h2"
    assert "--http2-engine" not in _argv("roadrunner", "h1")
    for scenario in SCENARIOS.values():
        if scenario.requires & {"h2", "h2c"}:
            for server in ("roadrunner", "roadrunner+h2-engine", "pyvoy", "hypercorn", "granian"):
                assert scenario.requires <= SERVERS[server].supports, (server, scenario.name)


def test_h1_over_tls_gives_every_peer_its_certificate() -> None:
    cert = str(bench_certificate().certfile)
    assert Launch("h", 1, protocols=frozenset({"h1tls"})).tls
    for server in ("roadrunner", "uvicorn", "hypercorn", "granian", "pyvoy", "gunicorn-uvicorn",
                   "gunicorn-asgi"):
        argv = _argv(server, "h1tls")
        assert cert in argv, server
        assert "--protocols" not in argv  # roadrunner's default with TLS: h1, h2 by ALPN
        assert cert not in _argv(server, "h1")


# -- scenarios and their request encodings -------------------------------------------------------


def test_issue_16_scenarios_exist_under_their_names_or_aliases() -> None:
    wanted = ["hello", "json", "echo", "headers_heavy", "large_response", "multi_request_body",
              "post_4kb_form", "large_post_streaming", "pipelined_h1", "websocket_msg",
              "gzip_response", "multi_stream_h2", "streaming_response", "varied_paths", "h1_tls",
              "h2_hello", "h2_hello_m10", "h2c_hello", "h2c_hello_m10", "idle_connections",
              "idle_connections_h2"]
    _, chosen = run.select([",".join(wanted)])
    assert len(chosen) == len(wanted)
    shapes = {name: (SCENARIOS[name].connections, SCENARIOS[name].streams)  # type: ignore[union-attr]
              for name in ("h2_hello", "h2_hello_m10", "h2c_hello", "h2c_hello_m10", "h1_tls")}
    assert shapes == {"h2_hello": (64, 1), "h2_hello_m10": (16, 10), "h2c_hello": (64, 1),
                      "h2c_hello_m10": (16, 10), "h1_tls": (64, 1)}


def test_chunked_encoding_round_trips() -> None:
    body = bytes(range(256)) * 10
    encoded = chunked(body, 4)
    assert encoded.startswith(b"280\r\n") and encoded.endswith(b"0\r\n\r\n")
    assert _dechunk(encoded) == (body, len(encoded))
    request = Request(method="POST", path="/upload", body=body, chunks=4)
    raw = encode_request(request, "h:1")
    assert b"Transfer-Encoding: chunked\r\n" in raw and b"Content-Length" not in raw
    assert encode_request(request, "h:1", "/other").startswith(b"POST /other HTTP/1.1\r\n")


def test_raw_wrk_scripts_for_pipelining_chunks_and_paths(tmp_path: Path) -> None:
    pipelined, varied = SCENARIOS["pipelined_h1"], SCENARIOS["varied_paths"]
    assert isinstance(pipelined, scenarios.LoadScenario)
    assert isinstance(varied, scenarios.LoadScenario)
    assert needs_raw_requests(pipelined) and needs_raw_requests(varied)
    assert not needs_raw_requests(SCENARIOS["hello"])  # type: ignore[arg-type]
    script = raw_lua_script(pipelined, "127.0.0.1:9")
    assert script.count("GET /hello HTTP/1.1") == 16 and "request = function()" in script
    script = raw_lua_script(varied, "127.0.0.1:9")
    assert script.count("GET /items/") == len(varied.paths) == 100
    argv = WrkDriver().command(SCENARIOS["multi_request_body"], "http://127.0.0.1:9", 3,  # type: ignore[arg-type]
                               tmp_path)
    assert "chunked" in Path(argv[argv.index("-s") + 1]).read_text()


def test_h2load_h1_driver_and_an_unreadable_status() -> None:
    driver = DRIVERS["h2load-h1"]
    argv = driver.command(SCENARIOS["h1_tls"], "http://127.0.0.1:9", 3, Path("/tmp"))  # type: ignore[arg-type]
    assert "--h1" in argv and argv[-1] == "https://127.0.0.1:9/hello" and "-N3s" in argv
    h1 = ("http/1.1",)
    summary = H2loadSummary(1.0, 100.0, 100, 100, 100, 0, 0, 0, 0, 0, "http/1.1")
    assert to_load_result(summary, [0.001], h1).requests == 100
    with pytest.raises(ValueError, match="HTTP/2"):
        to_load_result(summary, [0.001])
    blind = H2loadSummary(1.0, 0.0, 100, 100, 0, 100, 0, 0, 0, 0, "http/1.1")
    with pytest.raises(ValueError, match="empty reason"):
        to_load_result(blind, [0.001], h1)


def _call(path: str, body: bytes = b"") -> bytes:
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "http.request", "body": body[:100], "more_body": True},
                {"type": "http.request", "body": body[100:], "more_body": False}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(bench_app({"type": "http", "path": path, "headers": []}, receive, send))
    assert sent[0]["status"] == 200
    return b"".join(m.get("body", b"") for m in sent[1:])


def test_bench_app_upload_form_and_items() -> None:
    assert _call("/upload", b"u" * 1000) == b"1000"
    assert len(FORM_BODY) == 4096 and _call("/form", FORM_BODY) == str(FORM_FIELDS).encode()
    assert _call("/items/42") == item_body(42) == b"item 42"


def test_new_scenarios_answer_their_checks_on_a_real_server() -> None:
    names = ["multi_request_body", "post_4kb_form", "large_post_streaming", "pipelined_h1",
             "streaming_response", "varied_paths"]
    with run_server(bench_app) as server:
        for name in names:
            scenario = SCENARIOS[name]
            assert isinstance(scenario, scenarios.LoadScenario)
            run.check_response(scenario, server.port)
        # The raw bytes a pipelining wrk script sends: 16 requests, 16 responses, in order.
        raw = encode_request(Request(path="/hello"), f"127.0.0.1:{server.port}") * 16
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(raw)
            buffer, answered = b"", 0
            while answered < 16:
                buffer += sock.recv(65536)
                while (response := parse_response(buffer)) is not None:
                    assert response.body == b"Hello, world!"
                    buffer, answered = buffer[response.size:], answered + 1


def test_idle_h2c_client_holds_connections_on_a_real_server() -> None:
    with run_server(bench_app, protocols="h1,h2") as server:
        rss = iter(range(10_000_000, 20_000_000, 1))  # never settles: returns after its attempts
        sample = asyncio.run(measure_idle("127.0.0.1", server.port, Request(path="/hello"), 20,
                                          lambda: next(rss), parallel=5, protocol="h2c"))
    assert (sample.connections, sample.still_open) == (20, 20)
    with pytest.raises(ValueError, match="h1 or h2c"):
        asyncio.run(measure_idle("127.0.0.1", 1, Request(), 1, lambda: 0, protocol="h3"))


# -- targets, charts and the report --------------------------------------------------------------


def _load(rps: float, cpu: float = 0.5) -> LoadSample:
    return LoadSample(LoadResult(int(rps * 3), 3.0, rps, 0.001, 0.004), cpu, 30 << 20)


def _matrix() -> report.Run:
    names = ["roadrunner", "uvicorn", "granian", "hypercorn", "pyvoy"]
    chosen = ["hello", "h1_tls", "h2_hello", "h2_echo", "idle_connections",
              "idle_connections_h2"]
    result = report.Run("cmd", {"repeat": 1, "duration": 3.0, "warmup": 1,
                                "idle_connections": None}, {}, [SERVERS[n] for n in names],
                        [SCENARIOS[n] for n in chosen])
    for server, rps, cpu in (("roadrunner", 160, 0.4), ("uvicorn", 100, 0.8),
                             ("granian", 200, 0.3), ("hypercorn", 20, 4.0), ("pyvoy", 90, 0.9)):
        result.cell(server, "hello").samples.append(_load(rps, cpu))
        result.cell(server, "h1_tls").samples.append(_load(rps * 0.8, cpu * 1.2))
        result.cell(server, "h2_hello").samples.append(_load(rps * 0.7, cpu * 1.3))
        result.cell(server, "h2_echo").samples.append(_load(rps * 0.5, cpu * 2))
    result.cell("roadrunner", "idle_connections").samples.append(
        IdleSample(1000, 10_000_000, 13_000_000, 1000))
    result.cell("roadrunner", "idle_connections_h2").samples.append(
        IdleSample(1000, 10_000_000, 19_000_000, 1000))
    return result


def test_targets_of_issues_14_and_16() -> None:
    text = report.render_markdown(_matrix())
    assert "hello req/s, roadrunner ÷ uvicorn: **1.60x** (target ≥ 1.5x): met" in text
    assert "h1_tls req/s, roadrunner ÷ granian: **0.80x** (target ≥ 0.9x): MISSED" in text
    assert ("every HTTP/1.1 scenario: **0 of 2** (roadrunner ÷ granian, target ≤ 1.0x): MISSED; "
            "above it: hello 1.33x, h1_tls 1.33x") in text
    assert "**3,000 bytes** (target ≤ 4,000 bytes): met" in text
    assert "h2_hello req/s, roadrunner ÷ hypercorn: **8.00x** (target ≥ 10.0x): MISSED" in text
    assert "h2_hello req/s, roadrunner ÷ pyvoy: **1.78x** (target ≥ 1.0x): met" in text
    assert "h2_hello req/s, roadrunner ÷ granian: **0.80x** (target ≥ 0.5x): met" in text
    assert "h2_hello server CPU per request ÷ roadrunner's h1_tls: **1.08x**" in text
    assert "h2_echo req/s, roadrunner ÷ pyvoy: **1.78x** (target: ahead, > 1x): met" in text
    assert "per idle h1 connection, roadrunner: **3.00x** (9,000 against 3,000 bytes" in text
    assert "target ≤ 2.0x): MISSED" in text
    assert "| pyvoy | 90 | 0.90x |" in text  # the table's ratio column: ÷ uvicorn
    assert "| h2_multistream (issue 16: multi_stream_h2) |" not in text  # not in this run


def test_charts_are_svg_with_a_bar_per_server_and_scenario() -> None:
    made = dict(charts.run_charts(_matrix()))
    assert set(made) == {"rps-h1.svg", "cpu-h1.svg", "rps-h2-h3.svg", "cpu-h2-h3.svg"}
    rps = made["rps-h1.svg"]
    assert [g.scenario for g in rps.groups] == ["hello", "h1_tls"]  # one baseline: in the title
    assert "÷ the scenario's baseline (uvicorn)" in rps.title
    assert [round(b.value, 2) for b in rps.groups[0].bars] == [1.6, 1.0, 2.0, 0.2, 0.9]
    cpu = made["cpu-h2-h3.svg"]
    assert cpu.groups[0].bars[0].label == "52.0 µs"  # 0.52 CPU-s / 10k
    document = ElementTree.fromstring(charts.render(rps))
    bars = [e for e in document.iter("{http://www.w3.org/2000/svg}rect")
            if e.find("{http://www.w3.org/2000/svg}title") is not None]
    assert len(bars) == 10
    assert charts.colours(["uvicorn"])["uvicorn"] == charts.colours(["pyvoy", "uvicorn"])["uvicorn"]
    assert charts.log_range([0.2, 2.0], include_one=True) == (0.1, 5.0)
    assert charts.ticks(0.1, 5.0) == [0.1, 0.2, 0.5, 1.0, 2.0, 5.0]


def test_publish_writes_the_whole_docs_with_includes_and_json_round_trips(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = tmp_path / "docs"
    (docs / "bench").mkdir(parents=True)
    (docs / "bench" / "notes.md").write_text("## Notes on this run\n\nnotes text\n")
    (docs / "bench" / "regression-gate.md").write_text("## Regression gate\n\ngate text\n")
    (docs / "bench" / "soak.md").write_text("## Soak\n\nsoak table\n")
    monkeypatch.setattr(publish, "DOCS", docs / "benchmarks.md")
    monkeypatch.setattr(publish, "INCLUDES", docs / "bench")
    matrix = _matrix()
    written = publish.publish(matrix, docs / "benchmarks.md")
    text = (docs / "benchmarks.md").read_text()
    assert written[0] == docs / "benchmarks.md" and (docs / "bench" / "rps-h1.svg").exists()
    assert "![HTTP/1.1 and WebSocket: req/s" in text and "(bench/rps-h1.svg)" in text
    order = [text.index(part) for part in ("## Targets", "notes text", "## Scenarios",
                                           "## Results: HTTP/1.1", "gate text", "soak table")]
    assert order == sorted(order)
    kept = publish.load_json([docs / "bench" / "benchmarks.json"])  # the published run's JSON
    assert report.render_markdown(kept) == report.render_markdown(matrix)
    partial = publish.publish(matrix, tmp_path / "partial.md")  # no includes, charts beside it
    assert "gate text" not in (tmp_path / "partial.md").read_text()
    assert not (tmp_path / "partial-charts" / "benchmarks.json").exists()
    assert partial[1].parent == tmp_path / "partial-charts"
    raw = tmp_path / "run.json"
    publish.write_json(matrix, raw)
    again = publish.load_json([raw])
    assert [s.name for s in again.servers] == [s.name for s in matrix.servers]
    assert report.render_markdown(again) == report.render_markdown(matrix)
    extra = json.loads(raw.read_text())
    extra["cells"] = [c for c in extra["cells"] if c["server"] == "pyvoy"]
    extra["cells"][0]["samples"][0]["load"]["requests_per_s"] = 1.0
    other = tmp_path / "other.json"
    other.write_text(json.dumps(extra))
    merged = publish.load_json([raw, other])  # the later run replaces the cells it measured
    assert report.median_rps(merged.cells[("pyvoy", "hello")]) == 1.0
    assert report.median_rps(merged.cells[("uvicorn", "hello")]) == 100.0
    extra["command"] = "bench.run --only pyvoy"
    other.write_text(json.dumps(extra))
    folded = tmp_path / "folded.json"
    publish.write_json(publish.load_json([raw, other]), folded)
    # Folded again with a new run of the same command: each command is said once.
    refolded = publish.load_json([folded, other])
    assert refolded.command.split("`; `") == [matrix.command, "bench.run --only pyvoy"]


def test_idle_client_fails_the_run_when_a_connection_never_answers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idle, "OPEN_TIMEOUT", 0.3)

    async def scenario() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # accepts and reads, never answers (until the client leaves)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ConnectionError, match="3 of 3 connections failed"):
                await measure_idle("127.0.0.1", port, Request(path="/hello"), 3, lambda: 0,
                                   parallel=3, protocol="h2c")
        finally:
            server.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_throughput_scenario_stays_out_of_the_charts() -> None:
    result = _matrix()
    result.scenarios.append(SCENARIOS["h3_download"])
    result.cell("roadrunner", "h3_download").samples.append(_load(0.5, 5000.0))
    made = dict(charts.run_charts(result))
    assert "h3_download" not in [g.scenario for g in made["cpu-h2-h3.svg"].groups]
