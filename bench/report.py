"""Render a run as Markdown (docs/benchmarks.md) and as JSON (every sample)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict

from bench.cells import Cell, Run, median_bytes_per_s, median_idle_bytes, median_rps
from bench.scenarios import ALIASES, CONFIGURATION_TAGS, IdleScenario, LoadScenario, Scenario
from bench.stats import median, spread
from bench.targets import targets

__all__ = ["Cell", "Run", "median_bytes_per_s", "median_idle_bytes", "median_rps",
           "render_json", "render_markdown"]
def _ms(seconds: float) -> str:
    # wrk reads 0 for percentiles it did not record (with pipelining, above about 75 %).
    return f"{seconds * 1000:.2f}" if seconds > 0 else "–"


def _mib(size: float) -> str:
    return f"{size / 1024 / 1024:.1f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _errors(cell: Cell) -> str:
    parts = []
    socket_errors = sum(s.load.socket_errors for s in cell.load_samples())
    bad = sum(s.load.bad_responses for s in cell.load_samples())
    if socket_errors:
        parts.append(f"{socket_errors} socket errors")
    if bad:
        parts.append(f"{bad} non-2xx")
    parts += cell.errors
    return "; ".join(parts) or "0"


def _load_section(run: Run, scenario: LoadScenario) -> list[str]:
    baseline = median_rps(run.cells.get((scenario.baseline, scenario.name)))
    header = ["server", "req/s (median)", f"÷ {scenario.baseline}", "runs (req/s)", "p50 ms",
              "p99 ms", "CPU µs / req", "RSS MiB", "errors"]
    rows = []
    for spec in run.servers:
        cell = run.cells.get((spec.name, scenario.name))
        if not scenario.requires <= spec.supports:
            if not spec.variant and not scenario.requires & CONFIGURATION_TAGS:
                rows.append([spec.name, "n/a"] + [""] * (len(header) - 2))
            continue
        if cell is None:
            continue
        samples = cell.load_samples()
        if not samples:
            rows.append([spec.name, "failed"] + [""] * (len(header) - 3) + [_errors(cell)])
            continue
        rps = [s.load.requests_per_s for s in samples]
        ratio = f"{median(rps) / baseline:.2f}x" if baseline else ""
        rows.append([
            spec.name, f"{median(rps):,.0f}", ratio,
            " / ".join(f"{r:,.0f}" for r in rps) + f" (±{spread(rps) * 50:.0f}%)",
            _ms(median([s.load.p50_s for s in samples])),
            _ms(median([s.load.p99_s for s in samples])),
            f"{median([s.cpu_seconds_per_10k for s in samples]) * 100:.1f}",
            _mib(median([s.rss_bytes for s in samples])),
            _errors(cell),
        ])
    longer = (f" Measured for {scenario.min_duration:g} s per run (longer than the other "
              "scenarios), so that every server completes some." if scenario.min_duration >
              run.settings["duration"] else "")
    return [f"### {scenario.name}: {scenario.title}", "",
            _load_client(scenario) + longer, *_client_notes(run, scenario), "",
            *_table(header, rows), ""]


def _load_client(scenario: LoadScenario) -> str:
    """Which load generator ran, with how many connections (and streams per connection)."""
    if scenario.driver == "wrk":
        how = f"wrk: 1 thread, {scenario.connections} connections"
        if scenario.pipeline > 1:
            how += (f", {scenario.pipeline} requests written back to back per connection (a "
                    "script; wrk waits for all their responses before it writes again, and times "
                    "only part of them: its latencies are not per request)")
        if scenario.request.chunks:
            how += (f", the body sent `Transfer-Encoding: chunked` in {scenario.request.chunks} "
                    "chunks (a script)")
        if scenario.paths:
            how += f", each connection cycling through {len(scenario.paths)} paths (a script)"
        return how + "."
    if scenario.driver == "ws":
        return (f"bench/ws.py (asyncio on uvloop, one process): {scenario.connections} WebSocket "
                f"connections, each sending a {len(scenario.request.body):,}-byte text message and "
                "awaiting its echo in a loop; req/s is echoed messages per second and CPU-s / 10k "
                "req is per 10k messages. uvicorn's default (`--ws auto`) is websockets-sansio.")
    if scenario.driver == "wrk-gzip":
        return (f"wrk: 1 thread, {scenario.connections} connections, `Accept-Encoding: gzip`; the "
                "pre-run check requires `Content-Encoding: gzip` and decodes the body.")
    if scenario.driver == "wrk-unpinned":
        return (f"wrk: 1 thread, {scenario.connections} connections. **Nothing is pinned here**: "
                "servers and wrk may use both cores (`taskset -c 0-1`) and wrk competes with the "
                "workers; CPU-s / 10k req is the server's whole process tree, master included.")
    if scenario.driver == "h2load-h1":
        return (f"h2load --h1: 1 thread, {scenario.connections} connections, HTTP/1.1 over TLS "
                "1.3 (http/1.1 by ALPN; the server offers h2 as well), one request at a time per "
                "connection; errors are h2load's failed requests.")
    if scenario.driver.startswith("h2load"):
        how = "cleartext h2c, prior knowledge" if scenario.driver == "h2load-h2c" \
            else "TLS 1.3, h2 by ALPN"
        return (f"h2load: 1 thread, {scenario.connections} connections x {scenario.streams} "
                f"concurrent streams ({how}); errors are h2load's failed requests.")
    return (f"{scenario.driver} (bench/h3client.py, aioquic): {scenario.connections} QUIC "
            f"connection(s) x {scenario.streams} concurrent streams.")


def _client_notes(run: Run, scenario: LoadScenario) -> list[str]:
    """Body throughput and a Python client's own CPU, where the driver measured them."""
    notes = []
    for spec in run.servers:
        cell = run.cells.get((spec.name, scenario.name))
        samples = cell.load_samples() if cell else []
        rates = [s.load.bytes_per_s for s in samples if s.load.bytes_per_s is not None]
        cpus = [s.load.client_cpu_seconds for s in samples
                if s.load.client_cpu_seconds is not None]
        parts = []
        if rates and scenario.expect_body_length:
            parts.append(f"{median(rates) / 2**20:.2f} MiB/s body throughput (median; runs "
                         + " / ".join(f"{r / 2**20:.2f}" for r in rates) + ")")
        if cpus:
            parts.append("client CPU " + " / ".join(f"{c:.1f}" for c in cpus)
                         + f" s per {max(run.settings['duration'], scenario.min_duration):g} s run")
        if parts:
            notes.append(f"- {spec.name}: " + "; ".join(parts))
    return ["", *notes] if notes else []


def _idle_section(run: Run, scenario: IdleScenario) -> list[str]:
    header = ["server", "connections", "RSS before MiB", "RSS after MiB",
              "bytes / connection (median)", "runs (bytes / conn)", "still open", "errors"]
    rows = []
    for spec in run.servers:
        cell = run.cells.get((spec.name, scenario.name))
        if cell is None:
            if not scenario.requires <= spec.supports and not spec.variant:
                rows.append([spec.name, "n/a"] + [""] * (len(header) - 2))
            continue
        samples = cell.idle_samples()
        if not samples:
            rows.append([spec.name, "failed"] + [""] * (len(header) - 3) + [_errors(cell)])
            continue
        per_conn = [s.bytes_per_connection for s in samples]
        rows.append([
            spec.name, f"{samples[0].connections:,}",
            _mib(median([s.rss_before for s in samples])),
            _mib(median([s.rss_after for s in samples])),
            f"{median(per_conn):,.0f}", " / ".join(f"{b:,.0f}" for b in per_conn),
            " / ".join(f"{s.still_open:,}" for s in samples), _errors(cell),
        ])
    count = run.settings.get("idle_connections") or scenario.connections
    how = ("HTTP/2 cleartext connections (prior knowledge; the client's frames by the h2 "
           "library)" if scenario.protocol == "h2c" else "HTTP/1.1 keep-alive connections")
    return [f"### {scenario.name}: {scenario.title}", "",
            f"{count:,} {how} opened by an asyncio client (100 at a time), one `GET "
            f"{scenario.request.path}` on each, then held; RSS of the server process tree is read "
            "before and after (each once two readings 0.25 s apart agree within 0.5 %). "
            "\"still open\" counts connections that answered a second request afterwards.", "",
            *_table(header, rows), ""]


GROUPS = ("HTTP/1.1", "WebSocket", "HTTP/2", "HTTP/3", "Memory per idle connection",
          "Middleware, compression and workers")


def group_of(scenario: Scenario) -> str:
    """The results section a scenario is listed in."""
    if scenario.requires & CONFIGURATION_TAGS:
        return GROUPS[5]
    if isinstance(scenario, IdleScenario):
        return GROUPS[4]
    if "ws" in scenario.requires:
        return GROUPS[1]
    if "h3" in scenario.requires:
        return GROUPS[3]
    if scenario.requires & {"h2", "h2c"}:
        return GROUPS[2]
    return GROUPS[0]


def _load_of(scenario: Scenario) -> str:
    if isinstance(scenario, IdleScenario):
        return f"{scenario.connections:,} idle {scenario.protocol} connections"
    load = {"wrk": "wrk", "wrk-gzip": "wrk", "wrk-unpinned": "wrk (unpinned)",
            "h2load": "h2load (TLS)", "h2load-h2c": "h2load (h2c)",
            "h2load-h1": "h2load --h1 (TLS)", "ws": "bench/ws.py",
            "h3": "bench/h3client.py"}.get(scenario.driver, scenario.driver)
    shape = f"{scenario.connections} conn."
    if scenario.streams > 1:
        shape += f" x {scenario.streams} streams"
    if scenario.pipeline > 1:
        shape += f" x {scenario.pipeline} pipelined"
    return f"{load}, {shape}"


def _index(run: Run) -> list[str]:
    """One row per scenario: its name (and issue 16's, where that differs), what it sends, the
    load, and the servers that completed it."""
    other = {target: alias for alias, target in ALIASES.items()}
    rows = []
    for scenario in run.scenarios:
        measured = [spec.name for spec in run.servers
                    if (cell := run.cells.get((spec.name, scenario.name))) and cell.samples]
        name = scenario.name + (f" (issue 16: {other[scenario.name]})"
                                if scenario.name in other else "")
        rows.append([name, scenario.title, _load_of(scenario), ", ".join(measured) or "none"])
    return _table(["scenario", "what", "load", "servers measured"], rows)


def _how(run: Run) -> list[str]:
    s = run.settings
    lines = ["## How this was measured", "", f"- Command: `{run.command}`"]
    lines += [f"- {key}: {value}" for key, value in run.machine.items()]
    idle_repeat = s.get("idle_repeat") or s["repeat"]
    lines += [
        f"- Settings: {s['repeat']} repetition(s) of every load scenario ({idle_repeat} of each "
        f"idle-memory scenario), {s['warmup']} s warm-up then {s['duration']} s measured per run; "
        "a fresh server process for every run; servers rotated between repetitions; tables show "
        "the median over repetitions.",
        "- Each server runs one worker pinned to core 0 (`taskset -c 0`); the load generator and "
        "the harness run on core 1 (`taskset -c 1`), except in workers_hello (below). Only "
        "127.0.0.1 is loaded.",
        "- Every server serves the same plain ASGI app (`bench/apps.py`), access log off, listen "
        "backlog 4096, keep-alive timeout 600 s. TLS scenarios use a self-signed P-256 "
        "certificate made for the run (`bench/tls.py`). Before loading, each server must answer "
        "the scenario's request correctly over the protocol under test.",
        "- Load generators: wrk (HTTP/1.1), h2load from nghttp2 (HTTP/2, and HTTP/1.1 over TLS "
        "with `--h1`), `bench/ws.py` (WebSocket), `bench/h3client.py` (HTTP/3, aioquic), each "
        "with one thread or process. req/s, p50 and p99 are the load generator's.",
        "- **CPU µs / req** is the server process tree's utime + stime (from /proc/PID/stat) "
        "during the measured run divided by the requests completed: the robust figure on this "
        "shared machine (other work competes for the cores, so req/s moves more). RSS is the "
        "server process tree's resident set right after the measured run.",
    ]
    return lines


def render_markdown(run: Run, includes: Mapping[str, str] | None = None,
                    charts: Sequence[tuple[str, str]] = ()) -> str:
    """The whole report. includes: hand-written or separately generated Markdown ("notes"
    after the targets; "gate" and "soak" after the results), each with its own heading;
    charts: (alt text, relative path) of the SVG files made for this run."""
    includes = includes or {}
    lines = ["# Benchmarks", "",
             "Generated by `make bench` (`python -m bench.run`), which rewrites this whole file: "
             "do not edit it. The hand-written parts live in `docs/bench/` (`notes.md`, "
             "`regression-gate.md`) and `bench/soak.py` writes `docs/bench/soak.md`; each run "
             "includes them as they are. Findings of earlier runs: "
             "[docs/bench/history.md](bench/history.md).", ""]
    lines += _how(run)
    lines += ["", "## Servers", ""]
    lines += [f"- **{spec.name}** {spec.version()}: {spec.description}" for spec in run.servers]
    target_groups = targets(run)
    if target_groups:
        lines += ["", "## Targets", ""]
        for heading, target_lines in target_groups:
            lines += [f"{heading}:", "", *target_lines, ""]
    if includes.get("notes"):
        lines += ["", includes["notes"].strip(), ""]
    if charts:
        lines += ["", "## Charts", "",
                  "Generated with the tables (`bench/charts.py`); configuration comparisons "
                  "(middleware, compression, workers) and h3_download (a throughput figure, "
                  "MiB/s) are in the tables only.", ""]
        lines += [f"![{alt}]({path})" + "\n" for alt, path in charts]
    lines += ["", "## Scenarios", "", *_index(run), ""]
    for group in GROUPS:
        chosen = [s for s in run.scenarios if group_of(s) == group]
        if not chosen:
            continue
        lines += ["", f"## Results: {group}", ""]
        for scenario in chosen:
            if isinstance(scenario, LoadScenario):
                lines += _load_section(run, scenario)
            else:
                lines += _idle_section(run, scenario)
    for key in ("gate", "soak", "slow"):
        if includes.get(key):
            lines += ["", includes[key].strip(), ""]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip() + "\n"


def render_json(run: Run) -> str:
    cells = [
        {"server": server, "scenario": scenario, "errors": cell.errors,
         "samples": [asdict(sample) for sample in cell.samples]}
        for (server, scenario), cell in run.cells.items()
    ]
    document = {"command": run.command, "settings": run.settings, "machine": run.machine,
                "versions": {spec.name: spec.version() for spec in run.servers},
                "servers": [spec.name for spec in run.servers],
                "scenarios": [scenario.name for scenario in run.scenarios], "cells": cells}
    return json.dumps(document, indent=2) + "\n"
