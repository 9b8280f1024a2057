"""The HTTP/2 and HTTP/3 benchmark helpers: h2load parsing, the h3 client's summary, TLS
launches, the protocol targets in the report."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

import pytest

from bench import h2load, h3, h3client, report, scenarios
from bench.apps import DOWNLOAD_BODY_SIZE, STREAM_CHUNK, STREAM_CHUNKS
from bench.apps import app as bench_app
from bench.drivers import DRIVERS
from bench.results import LoadResult, LoadSample
from bench.servers import SERVERS, Launch
from bench.tls import bench_certificate, write_self_signed

H2LOAD_OUTPUT = """\
starting benchmark...
spawning thread #0: 64 total client(s). Timing-based test with 0s of warm-up time and 6s of main duration for measurements.
TLS Protocol: TLSv1.3
Cipher: TLS_AES_128_GCM_SHA256
Server Temp Key: X25519 253 bits
Application protocol: h2

finished in 6.00s, 3254.17 req/s, 125.10KB/s
requests: 19525 total, 19589 started, 19530 done, 19500 succeeded, 30 failed, 5 errored, 2 timeout
status codes: 19500 2xx, 0 3xx, 7 4xx, 3 5xx
traffic: 750.60KB (768614) total, 171.61KB (175725) headers (space savings 91.74%), 253.84KB (259935) data
                     min         max         mean         sd        +/- sd
time for request:      163us      7.95ms      1.47ms       868us    88.27%
"""


# -- h2load --------------------------------------------------------------------------------------


def test_parse_h2load_summary_keeps_failures() -> None:
    summary = h2load.parse_summary(H2LOAD_OUTPUT)
    assert summary.duration_s == 6.0 and summary.requests_per_s == 3254.17
    assert (summary.started, summary.done, summary.succeeded) == (19589, 19530, 19500)
    assert (summary.failed, summary.errored, summary.timeout) == (30, 5, 2)
    assert (summary.status_4xx, summary.status_5xx, summary.protocol) == (7, 3, "h2")


def test_parse_h2load_summary_rejects_output_without_result() -> None:
    with pytest.raises(ValueError, match="no result"):
        h2load.parse_summary("starting benchmark...\nNo protocol negotiated. Aborted.\n")


def test_h2load_log_latencies_and_percentiles() -> None:
    lines = [f"1700000000{i:06d}\t200\t{(i + 1) * 1000}\n" for i in range(100)] + ["\n"]
    latencies = h2load.log_latencies(reversed(lines))
    assert latencies[0] == 0.001 and latencies[-1] == 0.1 and len(latencies) == 100
    assert h2load.percentile(latencies, 0.5) == 0.05
    assert h2load.percentile(latencies, 0.99) == 0.099
    with pytest.raises(ValueError):
        h2load.percentile([], 0.5)


def test_h2load_result_counts_failed_and_error_statuses() -> None:
    summary = h2load.parse_summary(H2LOAD_OUTPUT)
    result = h2load.to_load_result(summary, [0.001, 0.002, 0.003])
    assert result == LoadResult(19500, 6.0, 3254.17, 0.002, 0.003, socket_errors=30,
                                bad_responses=10)
    with pytest.raises(ValueError, match="no completed"):
        h2load.to_load_result(summary, [])
    http11 = H2LOAD_OUTPUT.replace("Application protocol: h2", "Application protocol: http/1.1")
    with pytest.raises(ValueError, match="not HTTP/2"):
        h2load.to_load_result(h2load.parse_summary(http11), [0.001])


def test_h2load_command_for_tls_and_h2c(tmp_path: Path) -> None:
    echo = scenarios.SCENARIOS["h2_echo"]
    assert isinstance(echo, scenarios.LoadScenario)
    argv = DRIVERS["h2load"].command(echo, "http://127.0.0.1:8443", 5.6, tmp_path)
    assert argv[:5] == ["h2load", "-t1", "-c64", "-m1", "-D6"]
    assert argv[-1] == "https://127.0.0.1:8443/echo"
    assert (tmp_path / "h2_echo.body").read_bytes() == echo.request.body
    assert ["-d", str(tmp_path / "h2_echo.body")] == argv[argv.index("-d"):argv.index("-d") + 2]
    assert "content-type: application/octet-stream" in argv
    multi = scenarios.SCENARIOS["h2_multistream"]
    assert isinstance(multi, scenarios.LoadScenario) and multi.streams == 16
    assert "-m16" in DRIVERS["h2load"].command(multi, "http://h:1", 6, tmp_path)
    h2c = scenarios.SCENARIOS["h2c_hello"]
    assert isinstance(h2c, scenarios.LoadScenario)
    assert DRIVERS[h2c.driver].command(h2c, "http://h:1", 6, tmp_path)[-1] == "http://h:1/hello"
    with pytest.raises(ValueError, match="PUT"):
        h2load.request_flags(scenarios.Request(method="PUT"), None)


def test_h2load_parse_reads_and_removes_its_log(tmp_path: Path) -> None:
    driver = h2load.H2loadDriver(tls=True)
    with pytest.raises(ValueError, match="before command"):
        driver.parse(H2LOAD_OUTPUT)
    driver.command(scenarios.SCENARIOS["h2_hello"], "http://h:1", 1, tmp_path)  # type: ignore[arg-type]
    assert driver.log_file is not None
    driver.log_file.write_text("1\t200\t2000\n2\t200\t1000\n")
    result = driver.parse(H2LOAD_OUTPUT)
    assert (result.p50_s, result.p99_s) == (0.001, 0.002)
    assert not driver.log_file.exists()


# -- h3 ------------------------------------------------------------------------------------------


def test_h3client_summary_and_percentile() -> None:
    tally = h3client.Tally(completed=4, failed=1, bad=1, body_bytes=52, window_bytes=60,
                           latencies=[0.004, 0.001, 0.003, 0.002])
    summary = h3client.summary(tally, 2.0, 1.5)
    assert summary["requests_per_s"] == 2.0 and summary["bytes_per_s"] == 30.0
    assert (summary["p50_s"], summary["p99_s"]) == (0.002, 0.004)
    assert h3client.percentile([], 0.5) == 0.0
    result = h3.parse_output("warning\n" + json.dumps(summary) + "\n")
    assert result == LoadResult(4, 2.0, 2.0, 0.002, 0.004, socket_errors=1, bad_responses=1,
                                bytes_per_s=30.0, client_cpu_seconds=1.5)


def test_h3_parse_rejects_empty_runs() -> None:
    with pytest.raises(ValueError, match="no result"):
        h3.parse_output("Traceback ...")
    empty = h3client.summary(h3client.Tally(errors=["connection: refused"]), 1.0, 0.1)
    with pytest.raises(ValueError, match="refused"):
        h3.parse_output(json.dumps(empty))


def test_h3_command_and_client_arguments(tmp_path: Path) -> None:
    scenario = scenarios.SCENARIOS["h3_hello"]
    assert isinstance(scenario, scenarios.LoadScenario)
    argv = h3.H3Driver().command(scenario, "http://127.0.0.1:4433", 6.0, tmp_path)
    spec, _ = h3client.parse_args(argv[3:])
    assert (spec.host, spec.port, spec.path) == ("127.0.0.1", 4433, "/hello")
    assert (spec.connections, spec.streams, spec.duration) == (4, 16, 6.0)
    post = scenarios.LoadScenario("p", "p", scenarios.Request(
        "POST", "/echo", (("x-a", "b"),), b"body"), driver="h3")
    spec, _ = h3client.parse_args(h3.H3Driver().command(post, "http://h:1", 1, tmp_path)[3:])
    assert (spec.method, spec.headers, spec.body) == ("POST", (("x-a", "b"),), b"body")
    with pytest.raises(SystemExit):
        h3client.parse_args(["--port", "1", "--streams", "0"])


# -- TLS launches --------------------------------------------------------------------------------


def test_self_signed_certificate_loads(tmp_path: Path) -> None:
    files = write_self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.certfile, files.keyfile)
    assert files.keyfile.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert bench_certificate() is bench_certificate()


def test_server_flags_follow_the_scenario_protocols() -> None:
    def argv(server: str, *protocols: str) -> list[str]:
        return SERVERS[server].argv(Launch("127.0.0.1", 8443, protocols=frozenset(protocols)))

    cert = str(bench_certificate().certfile)
    assert "--protocols" not in argv("roadrunner", "h1") and not Launch("h", 1).tls
    h2 = argv("roadrunner", "h2")
    assert h2[h2.index("--protocols") + 1] == "h1,h2" and cert in h2
    h2c = argv("roadrunner", "h2c")
    assert h2c[h2c.index("--protocols") + 1] == "h1,h2" and "--ssl-certfile" not in h2c
    assert argv("roadrunner", "h3")[argv("roadrunner", "h3").index("--protocols") + 1] \
        == "h1,h2,h3"
    hyper = argv("hypercorn", "h3")
    assert hyper[hyper.index("--quic-bind") + 1] == "127.0.0.1:8443" and "--certfile" in hyper
    assert "--quic-bind" not in argv("hypercorn", "h2")
    assert "--ssl-certificate" in argv("granian", "h2")
    assert "--ssl-certificate" not in argv("granian", "h2c")
    for scenario in scenarios.SCENARIOS.values():
        if scenario.requires & {"h2", "h2c", "h3"}:
            assert scenario.requires <= SERVERS["roadrunner"].supports
            assert scenario.requires <= SERVERS["hypercorn"].supports


# -- the app and the report ----------------------------------------------------------------------


def _call(path: str) -> tuple[list[dict[str, Any]], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(bench_app({"type": "http", "path": path, "headers": []}, receive, send))
    return sent, b"".join(m.get("body", b"") for m in sent[1:])


def test_bench_app_stream_and_download() -> None:
    sent, body = _call("/stream")
    assert body == STREAM_CHUNK * STREAM_CHUNKS and len(sent) == 1 + STREAM_CHUNKS
    assert [m["more_body"] for m in sent[1:]] == [True, True, True, False]
    sent, body = _call("/download")
    assert len(body) == DOWNLOAD_BODY_SIZE and sent[-1]["more_body"] is False
    assert (b"content-length", str(DOWNLOAD_BODY_SIZE).encode()) in sent[0]["headers"]


def _sample(rps: float, bytes_per_s: float | None = None) -> LoadSample:
    load = LoadResult(int(rps * 6), 6.0, rps, 0.001, 0.004, bytes_per_s=bytes_per_s,
                      client_cpu_seconds=5.5 if bytes_per_s else None)
    return LoadSample(load, 1.0, 30 << 20)


def test_report_protocol_targets_and_client_notes() -> None:
    servers = [SERVERS["roadrunner"], SERVERS["hypercorn"], SERVERS["granian"]]
    chosen = [scenarios.SCENARIOS[n] for n in ("h2_hello", "h3_download")]
    run = report.Run("cmd", {"repeat": 1, "duration": 6.0, "warmup": 2, "idle_connections": None},
                     {}, servers, chosen)
    run.cell("roadrunner", "h2_hello").samples.append(_sample(9000))
    run.cell("hypercorn", "h2_hello").samples.append(_sample(1000))
    run.cell("granian", "h2_hello").samples.append(_sample(20000))
    run.cell("roadrunner", "h3_download").samples.append(_sample(0.5, 6 * 2**20))
    run.cell("hypercorn", "h3_download").samples.append(_sample(0.3, 2 * 2**20))
    text = report.render_markdown(run)
    assert "h2_hello req/s, roadrunner ÷ hypercorn: **9.00x** (target ≥ 10.0x): MISSED" in text
    assert "h2_hello req/s, roadrunner ÷ granian: **0.45x** (target ≥ 0.5x): MISSED" in text
    assert "h3_download MiB/s, roadrunner ÷ hypercorn: **3.00x** (target ≥ 2.0x): met" in text
    assert "h2load: 1 thread, 64 connections x 1 concurrent streams (TLS 1.3" in text
    assert "- roadrunner: 6.00 MiB/s body throughput" in text and "client CPU 5.5 s" in text
    assert "| granian | n/a |" in text  # granian serves no HTTP/3
