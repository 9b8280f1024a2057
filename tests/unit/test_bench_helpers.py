"""The benchmark harness's pure helpers: wrk parsing, statistics, /proc accounting, reporting."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import procstat, report, run, scenarios, stats, wrk
from bench.apps import app as bench_app
from bench.http1 import encode_request, parse_response
from bench.results import IdleSample, LoadResult, LoadSample
from bench.servers import SERVERS

WRK_OUTPUT = """\
Running 8s test @ http://127.0.0.1:45739/hello
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.23ms    0.99ms   8.07ms   76.41%
    Req/Sec    26.76k     4.83k   30.13k    90.00%
  Latency Distribution
     50%  850.00us
     75%    2.58ms
     90%    3.16ms
     99%    1.20s
  213464 requests in 8.01s, 29.92MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 17
Requests/sec:  26646.97
Transfer/sec:      3.72MB
"""


# -- wrk ---------------------------------------------------------------------------------------


def test_parse_wrk_output() -> None:
    result = wrk.parse_output(WRK_OUTPUT)
    assert result.requests == 213464
    assert result.duration_s == pytest.approx(8.01)
    assert result.requests_per_s == pytest.approx(26646.97)
    assert result.p50_s == pytest.approx(850e-6)
    assert result.p99_s == pytest.approx(1.2)
    assert result.socket_errors == 6
    assert result.bad_responses == 17


def test_parse_wrk_output_without_errors_counts_none() -> None:
    text = "\n".join(line for line in WRK_OUTPUT.splitlines()
                     if "errors" not in line and "Non-2xx" not in line)
    result = wrk.parse_output(text)
    assert (result.socket_errors, result.bad_responses) == (0, 0)


def test_parse_wrk_output_rejects_missing_results() -> None:
    with pytest.raises(ValueError, match="no result"):
        wrk.parse_output("unable to connect to 127.0.0.1:1 Connection refused")
    no_latency = "\n".join(line for line in WRK_OUTPUT.splitlines() if "%" not in line)
    with pytest.raises(ValueError, match="latency"):
        wrk.parse_output(no_latency)


@pytest.mark.parametrize(("number", "unit", "seconds"), [
    ("850.00", "us", 850e-6), ("1.5", "ms", 1.5e-3), ("2.00", "s", 2.0), ("1.00", "m", 60.0),
])
def test_to_seconds(number: str, unit: str, seconds: float) -> None:
    assert wrk.to_seconds(number, unit) == pytest.approx(seconds)


def test_lua_string_escapes_everything_lua_would_misread() -> None:
    assert wrk.lua_string(b'a"b\\c\n\xc8') == '"a\\034b\\092c\\010\\200"'


def test_lua_script_sets_method_headers_and_body(tmp_path: Path) -> None:
    scenario = scenarios.SCENARIOS["echo"]
    assert isinstance(scenario, scenarios.LoadScenario)
    script = wrk.lua_script(scenario.request)
    assert 'wrk.method = "POST"' in script
    assert 'wrk.headers["content-type"] = "application/octet-stream"' in script
    assert script.count("wrk.body") == 1
    argv = wrk.WrkDriver().command(scenario, "http://127.0.0.1:1", 8, tmp_path)
    assert argv[-1] == "http://127.0.0.1:1/echo"
    assert "--latency" in argv and "-d8s" in argv
    assert (tmp_path / "echo.lua").read_text() == script


# -- statistics ----------------------------------------------------------------------------------


def test_median_odd_even_and_empty() -> None:
    assert stats.median([3.0, 1.0, 2.0]) == 2.0
    assert stats.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError):
        stats.median([])


def test_spread() -> None:
    assert stats.spread([90.0, 100.0, 110.0]) == pytest.approx(0.2)
    assert stats.spread([0.0, 0.0]) == 0.0


# -- /proc accounting ------------------------------------------------------------------------------


def _stat_line(pid: int, comm: str, ppid: int, utime: int, stime: int, rss: int) -> str:
    # proc(5) field order: pid (comm) state ppid ... utime(14) stime(15) ... rss(24) ...
    fields = ["S", str(ppid)] + ["0"] * 9 + [str(utime), str(stime)] + ["0"] * 8 + [str(rss)]
    return f"{pid} ({comm}) " + " ".join(fields + ["0"] * 20) + "\n"


def test_parse_stat_with_awkward_command_names() -> None:
    stat = procstat.parse_stat(_stat_line(42, "gunicorn: worker (app) x", 7, 150, 50, 1000))
    assert (stat.pid, stat.ppid, stat.utime, stat.stime, stat.rss_pages) == (42, 7, 150, 50, 1000)
    with pytest.raises(ValueError):
        procstat.parse_stat("garbage")


def test_tree_usage_sums_the_process_tree(tmp_path: Path) -> None:
    processes = [(10, 1, 100, 20, 10), (11, 10, 300, 80, 30), (12, 11, 5, 5, 5), (13, 1, 999, 9, 9)]
    for pid, ppid, utime, stime, rss in processes:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(_stat_line(pid, "py", ppid, utime, stime, rss))
    (tmp_path / "self").mkdir()  # not a pid: ignored
    (tmp_path / "99").mkdir()  # a process that exited between listing and reading: ignored
    usage = procstat.tree_usage(10, tmp_path)
    assert usage.pids == (10, 11, 12)
    assert usage.cpu_seconds == pytest.approx(510 / procstat.CLOCK_TICKS)
    assert usage.rss_bytes == 45 * procstat.PAGE_SIZE
    assert procstat.tree_usage(404, tmp_path).pids == ()


def test_tree_usage_of_this_process_includes_a_live_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        usage = procstat.tree_usage(os.getpid())
        assert os.getpid() in usage.pids and child.pid in usage.pids
        assert usage.rss_bytes > 0 and usage.cpu_seconds > 0
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)


def test_cpu_seconds_per_10k() -> None:
    before = procstat.TreeUsage((1,), 10.0, 0)
    after = procstat.TreeUsage((1,), 12.5, 0)
    assert procstat.cpu_seconds_per_10k(before, after, 50_000) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        procstat.cpu_seconds_per_10k(before, after, 0)


# -- the harness's HTTP/1.1 codec --------------------------------------------------------------


def test_encode_request_adds_host_headers_and_length() -> None:
    request = scenarios.Request("POST", "/echo", (("x-a", "1"),), b"abc")
    assert encode_request(request, "127.0.0.1:80") == (
        b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:80\r\nx-a: 1\r\nContent-Length: 3\r\n\r\nabc"
    )


def test_parse_response_content_length_and_chunked() -> None:
    fixed = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    assert parse_response(fixed[:-1]) is None
    response = parse_response(fixed + b"HTTP/1.1 ...")
    assert response is not None
    assert (response.status, response.body, response.size) == (200, b"hello", len(fixed))
    chunked = b"HTTP/1.1 404 NF\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
    for cut in (len(chunked) - 1, chunked.index(b"abc") + 1, chunked.index(b"2;")):
        assert parse_response(chunked[:cut]) is None
    response = parse_response(chunked)
    assert response is not None
    assert (response.status, response.body, response.size) == (404, b"abcde", len(chunked))


# -- registries and selection --------------------------------------------------------------------


def test_registries_reject_duplicates_and_name_known_drivers() -> None:
    with pytest.raises(ValueError):
        scenarios.register(scenarios.SCENARIOS["hello"])
    for scenario in scenarios.SCENARIOS.values():
        if isinstance(scenario, scenarios.LoadScenario):
            assert scenario.driver in run.DRIVERS
    assert {"roadrunner", "uvicorn", "hypercorn", "granian"} <= set(SERVERS)


def test_only_filters_servers_and_scenarios() -> None:
    servers, chosen = run.select(["roadrunner,uvicorn", "hello"])
    assert [s.name for s in servers] == ["roadrunner", "uvicorn"]
    assert [s.name for s in chosen] == ["hello"]
    servers, chosen = run.select(["idle_connections"])
    assert len(servers) == len(SERVERS) and [s.name for s in chosen] == ["idle_connections"]
    with pytest.raises(SystemExit, match="nginx"):
        run.select(["nginx"])


def test_quick_and_partial_runs_do_not_overwrite_the_docs() -> None:
    args = run.parse_args(["--quick"])
    assert (args.repeat, args.duration, args.idle_connections) == (1, 2.0, 1000)
    assert args.output.name == "partial.md"
    full = run.parse_args([])
    assert (full.repeat, full.duration, full.warmup) == (run.REPEAT, run.DURATION, run.WARMUP)
    assert run.parse_args(["--repeat", "3", "--idle-repeat", "1"]).idle_repeat == 1
    assert full.output.parts[-2:] == ("docs", "benchmarks.md")
    assert run.parse_args(["--only", "hello"]).output.name == "partial.md"


# -- the report ----------------------------------------------------------------------------------


def _load(rps: float) -> LoadSample:
    return LoadSample(LoadResult(int(rps * 8), 8.0, rps, 0.001, 0.004), 0.25, 30 << 20)


def test_report_medians_ratios_and_targets() -> None:
    servers = [SERVERS["roadrunner"], SERVERS["uvicorn"]]
    chosen = [scenarios.SCENARIOS["hello"], scenarios.SCENARIOS["idle_connections"]]
    result = report.Run("python -m bench.run", {"repeat": 3, "duration": 8, "warmup": 2,
                                               "idle_connections": None},
                        {"cpu": "test"}, servers, chosen)
    for rps in (150.0, 120.0, 300.0):
        result.cell("roadrunner", "hello").samples.append(_load(rps))
    for rps in (100.0, 90.0, 110.0):
        result.cell("uvicorn", "hello").samples.append(_load(rps))
    result.cell("roadrunner", "idle_connections").samples.append(
        IdleSample(1000, 10_000_000, 14_000_000, 1000))
    result.cell("uvicorn", "idle_connections").errors.append("run 1: refused")
    text = report.render_markdown(result)
    assert "**1.50x** (target ≥ 1.5x): met" in text  # medians 150 / 100
    assert "**4,000 bytes** (target ≤ 4,000 bytes): met" in text
    assert "| uvicorn | failed |" in text and "run 1: refused" in text
    result.cell("roadrunner", "hello").samples[:] = [_load(120.0)]
    assert "1.20x** (target ≥ 1.5x): MISSED" in report.render_markdown(result)
    assert '"requests_per_s": 120.0' in report.render_json(result)


# -- the benchmark app ---------------------------------------------------------------------------


def _call(scope: dict[str, Any], body: bytes = b"") -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "http.request", "body": body[:10], "more_body": True},
                {"type": "http.request", "body": body[10:], "more_body": False}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(bench_app({"type": "http", **scope}, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_bench_app_routes() -> None:
    assert _call({"path": "/hello", "headers": []}) == (200, b"Hello, world!")
    assert _call({"path": "/echo", "headers": []}, b"x" * 25) == (200, b"x" * 25)
    assert _call({"path": "/headers", "headers": [(b"a", b"1")] * 31}) == (200, b"31")
    assert len(_call({"path": "/large", "headers": []})[1]) == 1024 * 1024
    assert _call({"path": "/json", "headers": []})[1].startswith(b'{"message"')
    assert _call({"path": "/missing", "headers": []})[0] == 404


# -- the profiler's aggregation ------------------------------------------------------------------


def test_profile_aggregate_counts_own_time_by_function_and_file() -> None:
    from bench.profile import aggregate, format_top

    lines = [
        "run (a/main.py:5);write (a/http1.py:499) 30",
        "run (a/main.py:5);parse (a/http1.py:10);send (a/stream.py:7) 10",
        "run (a/main.py:5) 10",
        "not a sample line",
    ]
    functions, files, total = aggregate(lines)
    assert total == 50
    assert functions["write (a/http1.py:499)"] == 30
    assert files == {"a/http1.py": 30, "a/stream.py": 10, "a/main.py": 10}
    assert format_top(functions, total, 1) == [" 60.0%  write (a/http1.py:499)"]
