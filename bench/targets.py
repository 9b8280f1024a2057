"""The project's targets, checked against a run's medians (only those the run measured).

Each check is one line: the figure, the target and "met" or "MISSED". The targets come from the
issues: 16 (the matrix: HTTP/1.1 and memory), 14 (HTTP/2 on the nghttp2 engine), 5 (HTTP/3) and
7 (WebSocket).
"""

from __future__ import annotations

from collections.abc import Callable

from bench.cells import (
    Cell,
    Run,
    median_bytes_per_s,
    median_cpu,
    median_idle_bytes,
    median_rps,
)
from bench.scenarios import LoadScenario

OURS = "roadrunner"
HELLO_RATIO_TARGET = 1.5  # hello req/s over uvicorn's
IDLE_BYTES_TARGET = 4000  # bytes per idle HTTP/1.1 keep-alive connection
H1_TLS_TARGET = 0.9  # h1_tls req/s over granian's
H1_CPU_TARGET = 1.0  # server CPU per request over granian's, in every HTTP/1.1 scenario
# Issue 14: h2 hello over TLS and h2c, at both concurrency shapes, on the nghttp2 engine.
H2_HELLO = ("h2_hello", "h2_hello_m10", "h2c_hello", "h2c_hello_m10")
H2_HELLO_PEERS = (("hypercorn", 10.0), ("pyvoy", 1.0), ("granian", 0.5))
H2_CPU_TARGET = 1.5  # CPU per h2 hello request over roadrunner's own h1_tls request
H2_AHEAD = ("h2_echo", "h2_multistream", "h2_large_response")
H2_AHEAD_PEERS = ("pyvoy", "hypercorn")
IDLE_H2_TARGET = 2.0  # bytes per idle h2 connection over bytes per idle h1 connection
# (scenario, peer, minimum ratio, measure) from issue 5.
H3_TARGETS = (("h3_hello", "hypercorn", 2.0, "req/s"), ("h3_download", "hypercorn", 2.0, "MiB/s"))
WS_RATIO_TARGET = 1.3  # issue 7: ws_echo messages/s over the best peer's


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _ratio_line(what: str, ours: float | None, theirs: float | None, minimum: float,
                peer: str) -> list[str]:
    if not ours or not theirs:
        return []
    ratio = ours / theirs
    return [f"- {what}, roadrunner ÷ {peer}: **{ratio:.2f}x** (target ≥ {minimum}x): "
            f"{_verdict(ratio >= minimum)}"]


def _get(run: Run, server: str, scenario: str) -> Cell | None:
    return run.cells.get((server, scenario))


def h1_scenarios(run: Run) -> list[str]:
    """The run's HTTP/1.1 load scenarios, plain and over TLS (not WebSocket or configurations)."""
    return [s.name for s in run.scenarios
            if isinstance(s, LoadScenario) and s.requires <= {"h1", "h1tls"}]


def issue16(run: Run) -> list[str]:
    lines = _ratio_line("hello req/s", median_rps(_get(run, OURS, "hello")),
                        median_rps(_get(run, "uvicorn", "hello")), HELLO_RATIO_TARGET, "uvicorn")
    lines += _ratio_line("h1_tls req/s", median_rps(_get(run, OURS, "h1_tls")),
                         median_rps(_get(run, "granian", "h1_tls")), H1_TLS_TARGET, "granian")
    checked = []
    for name in h1_scenarios(run):
        ours, theirs = median_cpu(_get(run, OURS, name)), median_cpu(_get(run, "granian", name))
        if ours and theirs:
            checked.append((name, ours / theirs))
    if checked:
        missed = [f"{name} {ratio:.2f}x" for name, ratio in checked if ratio > H1_CPU_TARGET]
        lines.append(
            f"- server CPU per request ≤ granian's in every HTTP/1.1 scenario: "
            f"**{len(checked) - len(missed)} of {len(checked)}** (roadrunner ÷ granian, target "
            f"≤ {H1_CPU_TARGET}x): {_verdict(not missed)}"
            + (f"; above it: {', '.join(missed)}" if missed else ""))
    idle = median_idle_bytes(_get(run, OURS, "idle_connections"))
    if idle is not None:
        lines.append(f"- memory per idle keep-alive connection, roadrunner: **{idle:,.0f} bytes** "
                     f"(target ≤ {IDLE_BYTES_TARGET:,} bytes): {_verdict(idle <= IDLE_BYTES_TARGET)}")
    return lines


def issue14(run: Run) -> list[str]:
    lines = []
    for name in H2_HELLO:
        ours = median_rps(_get(run, OURS, name))
        for peer, minimum in H2_HELLO_PEERS:
            lines += _ratio_line(f"{name} req/s", ours, median_rps(_get(run, peer, name)),
                                 minimum, peer)
    h1_tls = median_cpu(_get(run, OURS, "h1_tls"))
    for name in H2_HELLO:
        cpu = median_cpu(_get(run, OURS, name))
        if cpu and h1_tls:
            ratio = cpu / h1_tls
            lines.append(f"- {name} server CPU per request ÷ roadrunner's h1_tls: **{ratio:.2f}x** "
                         f"({cpu * 100:.1f} against {h1_tls * 100:.1f} µs; target ≤ "
                         f"{H2_CPU_TARGET}x): {_verdict(ratio <= H2_CPU_TARGET)}")
    for name in H2_AHEAD:
        ours = median_rps(_get(run, OURS, name))
        for peer in H2_AHEAD_PEERS:
            theirs = median_rps(_get(run, peer, name))
            if ours and theirs:
                ratio = ours / theirs
                lines.append(f"- {name} req/s, roadrunner ÷ {peer}: **{ratio:.2f}x** (target: "
                             f"ahead, > 1x): {_verdict(ratio > 1.0)}")
    h1 = median_idle_bytes(_get(run, OURS, "idle_connections"))
    h2 = median_idle_bytes(_get(run, OURS, "idle_connections_h2"))
    if h1 and h2 is not None:
        ratio = h2 / h1
        lines.append(f"- memory per idle h2c connection ÷ per idle h1 connection, roadrunner: "
                     f"**{ratio:.2f}x** ({h2:,.0f} against {h1:,.0f} bytes; target ≤ "
                     f"{IDLE_H2_TARGET}x): {_verdict(ratio <= IDLE_H2_TARGET)}")
    return lines


def earlier(run: Run) -> list[str]:
    """HTTP/3 (issue 5), WebSocket (issue 7) and the gzip comparison (no numeric target)."""
    lines = []
    for name, peer, minimum, measure in H3_TARGETS:
        pick: Callable[[Cell | None], float | None] = \
            median_bytes_per_s if measure == "MiB/s" else median_rps
        lines += _ratio_line(f"{name} {measure}", pick(_get(run, OURS, name)),
                             pick(_get(run, peer, name)), minimum, peer)
    ours = median_rps(_get(run, OURS, "ws_echo"))
    peers = {server: rps for (server, name), cell in run.cells.items()
             if name == "ws_echo" and server != OURS and (rps := median_rps(cell))}
    pools = [("best peer", peers),
             ("best pure-Python peer",
              {n: r for n, r in peers.items() if "granian" not in n and "pyvoy" not in n})]
    for label, pool in pools:
        if ours and pool:
            best = max(pool, key=lambda name: pool[name])
            ratio = ours / pool[best]
            lines.append(f"- ws_echo messages/s, roadrunner ÷ {label} ({best}): **{ratio:.2f}x** "
                         f"(target ≥ {WS_RATIO_TARGET}x): {_verdict(ratio >= WS_RATIO_TARGET)}")
    ours = median_rps(_get(run, "roadrunner+compress", "gzip_response"))
    for (server, name), cell in sorted(run.cells.items()):
        theirs = median_rps(cell)
        if name == "gzip_response" and server != "roadrunner+compress" and ours and theirs:
            how = ("uvicorn + Starlette GZipMiddleware" if server == "uvicorn+gzip" else server)
            lines.append(f"- gzip_response req/s, roadrunner --compress ÷ {how}: "
                         f"**{ours / theirs:.2f}x** (no numeric target)")
    return lines


def targets(run: Run) -> list[tuple[str, list[str]]]:
    """(heading, lines) per issue, only those with a figure in this run."""
    groups = [("Issue 16: the HTTP/1.1 matrix and memory", issue16(run)),
              ("Issue 14: HTTP/2 (roadrunner on the nghttp2 engine)", issue14(run)),
              ("Earlier targets: HTTP/3 (issue 5), WebSocket (issue 7), compression",
               earlier(run))]
    return [(heading, lines) for heading, lines in groups if lines]
