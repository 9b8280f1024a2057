"""`python -m bench.run`: roadrunner against its peers, side by side, in one run.

    python -m bench.run                  # full run (make bench), rewrites docs/benchmarks.md
    python -m bench.run --quick          # smoke run: short, one repetition
    python -m bench.run --only roadrunner,uvicorn --only hello
    python -m bench.run --from-json docs/bench/benchmarks.json      # render again, no load
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.drivers import DRIVERS
from bench.http1 import fetch
from bench.idle import measure_idle
from bench.machine import machine_facts
from bench.process import ServerProcess, free_port
from bench.procstat import cpu_seconds_per_10k, tree_usage
from bench.publish import load_json, publish, write_json
from bench.report import Run
from bench.results import IdleSample, LoadSample
from bench.scenarios import ALIASES, SCENARIOS, IdleScenario, LoadScenario, Scenario
from bench.servers import SERVERS, Launch, ServerSpec
from bench.stats import median

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SERVER_CPU = 0
CLIENT_CPU = 1
# The full matrix (make bench): about 160 load runs per repetition, so short runs keep the whole
# of it near 40 minutes; CPU per request, the figure to trust here, needs no long run. Idle
# memory is near deterministic (runs within 1 % in earlier reports) and takes longest: once.
REPEAT = 3
IDLE_REPEAT = 1
# A load generator still running this long after its duration has hung (h2load waiting on a
# connection the server keeps open): the run fails instead of holding the matrix up.
DRIVER_GRACE = 20.0
DURATION = 2.0
WARMUP = 1.0


class CheckFailed(Exception):
    """The server's answer to the scenario's request is not the expected one."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 s runs, 1 s warm-up, 1 repetition, 1,000 idle "
                             "connections")
    parser.add_argument("--only", action="append", default=[], metavar="NAME[,NAME]",
                        help="limit to these servers and/or scenarios (repeatable); "
                             f"servers: {', '.join(SERVERS)}; scenarios: {', '.join(SCENARIOS)}")
    parser.add_argument("--repeat", type=int, help=f"repetitions per measurement [{REPEAT}]")
    parser.add_argument("--idle-repeat", type=int,
                        help=f"repetitions of each idle-memory scenario [{IDLE_REPEAT}]")
    parser.add_argument("--duration", type=float,
                        help=f"measured seconds per run [{DURATION:g}]")
    parser.add_argument("--warmup", type=float,
                        help=f"unmeasured warm-up seconds per run [{WARMUP:g}]")
    parser.add_argument("--idle-connections", type=int,
                        help="connections for the idle scenario [the scenario's own, 5,000]")
    parser.add_argument("--output", type=Path,
                        help="Markdown report [docs/benchmarks.md for a full run, "
                             "bench/results/partial.md with --quick or --only]")
    parser.add_argument("--from-json", type=Path, action="append", default=[], metavar="JSON",
                        help="measure nothing: render the report from these runs' JSON "
                             "(repeatable: later files add or replace cells) [-> docs]")
    args = parser.parse_args(argv)
    quick = args.quick
    args.repeat = args.repeat or (1 if quick else REPEAT)
    args.idle_repeat = min(args.idle_repeat or (1 if quick else IDLE_REPEAT), args.repeat)
    args.duration = args.duration or (2.0 if quick else DURATION)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else WARMUP)
    if args.idle_connections is None and quick:
        args.idle_connections = 1000
    if args.output is None:
        partial = quick or args.only
        args.output = ROOT / ("bench/results/partial.md" if partial else "docs/benchmarks.md")
    return args


def select(only: Sequence[str]) -> tuple[list[ServerSpec], list[Scenario]]:
    """Resolve --only names against both registries; an empty side means all of it."""
    names = [ALIASES.get(n.strip(), n.strip()) for item in only for n in item.split(",")
             if n.strip()]
    unknown = [n for n in names if n not in SERVERS and n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown server or scenario: {', '.join(unknown)} "
                         f"(servers: {', '.join(SERVERS)}; scenarios: {', '.join(SCENARIOS)})")
    servers = [SERVERS[n] for n in SERVERS if n in names] or list(SERVERS.values())
    scenarios = [SCENARIOS[n] for n in SCENARIOS if n in names] or list(SCENARIOS.values())
    return servers, scenarios


def raise_open_files(needed: int) -> None:
    """Raise the soft RLIMIT_NOFILE (inherited by the servers) for the idle scenario."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < needed:
        print(f"warning: open-file limit is {soft}, below the {needed} wanted", file=sys.stderr)


def check_response(scenario: LoadScenario, port: int) -> None:
    """One request before loading: the server must answer this scenario correctly."""
    # A driver with its own protocol (h2, h3) checks with a client that speaks it.
    fetcher = getattr(DRIVERS[scenario.driver], "fetch", fetch)
    response = fetcher(HOST, port, scenario.request, timeout=10)
    if response.status != 200:
        raise CheckFailed(f"status {response.status}")
    if scenario.expect_body is not None and response.body != scenario.expect_body:
        raise CheckFailed(f"unexpected body {response.body[:40]!r}")
    length = scenario.expect_body_length
    if length is not None and len(response.body) != length:
        raise CheckFailed(f"body of {len(response.body)} bytes, expected {length}")


def run_driver(scenario: LoadScenario, port: int, duration: float, workdir: Path) -> str:
    driver = DRIVERS[scenario.driver]
    argv = driver.command(scenario, f"http://{HOST}:{port}", duration, workdir)
    done = subprocess.run(["taskset", "-c", str(CLIENT_CPU), *argv], capture_output=True,
                          text=True, timeout=duration + DRIVER_GRACE)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def measure_load(server: ServerProcess, scenario: LoadScenario, args: argparse.Namespace,
                 workdir: Path) -> LoadSample:
    port = server.launch.port
    check_response(scenario, port)
    if args.warmup > 0:
        run_driver(scenario, port, args.warmup, workdir)
    before = tree_usage(server.pid)
    output = run_driver(scenario, port, max(args.duration, scenario.min_duration), workdir)
    after = tree_usage(server.pid)
    load = DRIVERS[scenario.driver].parse(output)
    return LoadSample(load, cpu_seconds_per_10k(before, after, load.requests), after.rss_bytes)


def measure_idle_connections(server: ServerProcess, scenario: IdleScenario,
                             args: argparse.Namespace) -> IdleSample:
    count = args.idle_connections or scenario.connections
    return asyncio.run(measure_idle(HOST, server.launch.port, scenario.request, count,
                                    lambda: tree_usage(server.pid).rss_bytes,
                                    protocol=scenario.protocol))


def describe(sample: LoadSample | IdleSample) -> str:
    if isinstance(sample, LoadSample):
        return (f"{sample.load.requests_per_s:>10,.0f} req/s  p50 {sample.load.p50_s * 1e3:.2f} ms"
                f"  p99 {sample.load.p99_s * 1e3:.2f} ms  {sample.cpu_seconds_per_10k:.3f} "
                f"CPU-s/10k  errors {sample.load.socket_errors + sample.load.bad_responses}")
    return (f"{sample.bytes_per_connection:>10,.0f} bytes/conn  "
            f"({sample.still_open:,}/{sample.connections:,} still open)")


def measure(spec: ServerSpec, scenario: Scenario, args: argparse.Namespace,
            workdir: Path) -> LoadSample | IdleSample:
    launch = Launch(HOST, free_port(HOST), protocols=scenario.requires)
    log = workdir / f"{spec.name}-{scenario.name}.log"
    with ServerProcess(spec, launch, SERVER_CPU, log, ROOT) as server:
        if isinstance(scenario, LoadScenario):
            return measure_load(server, scenario, args, workdir)
        return measure_idle_connections(server, scenario, args)


def command_line(argv: Sequence[str] | None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    python = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) \
        else sys.executable
    return shlex.join([python, "-m", "bench.run", *args])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        return render_only(args)
    servers, scenarios = select(args.only)
    missing = [spec.name for spec in servers if spec.version() == "not installed"]
    if missing:  # pyvoy has no wheel before Python 3.11, for one
        print(f"not installed, left out: {', '.join(missing)}", file=sys.stderr)
        servers = [spec for spec in servers if spec.name not in missing]
    for tool in ["taskset", *{DRIVERS[s.driver].executable for s in scenarios
                              if isinstance(s, LoadScenario)}]:
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found (wrk: apt-get install -y wrk)")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("the harness needs 2 cores: one for the server, one for the client")
    idle_max = max([args.idle_connections or s.connections for s in scenarios
                    if isinstance(s, IdleScenario)], default=0)
    raise_open_files(2 * idle_max + 1024)
    os.sched_setaffinity(0, {CLIENT_CPU})  # the harness's own client work stays off the server core

    run = Run(command_line(argv), {"repeat": args.repeat, "idle_repeat": args.idle_repeat,
                                   "duration": args.duration, "warmup": args.warmup,
                                   "idle_connections": args.idle_connections},
              machine_facts(), servers, scenarios)
    loads: list[float] = []
    started = time.monotonic()
    raw = ROOT / "bench/results" / (args.output.stem + ".json")
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        for rep in range(args.repeat):
            order = servers[rep % len(servers):] + servers[:rep % len(servers)]
            for scenario in scenarios:
                if isinstance(scenario, IdleScenario) and rep >= args.idle_repeat:
                    continue
                for spec in order:
                    if not scenario.requires <= spec.supports:
                        continue
                    loads.append(os.getloadavg()[0])
                    cell = run.cell(spec.name, scenario.name)
                    label = f"[{rep + 1}/{args.repeat}] {scenario.name:<16} {spec.name:<17}"
                    try:
                        sample = measure(spec, scenario, args, workdir)
                    except (CheckFailed, RuntimeError, OSError, ValueError,
                            subprocess.TimeoutExpired) as exc:
                        cell.errors.append(f"run {rep + 1}: {exc}".splitlines()[0])
                        print(f"{label} FAILED: {exc}", flush=True)
                        continue
                    cell.samples.append(sample)
                    print(f"{label} {describe(sample)}", flush=True)
                    write_json(run, raw)  # after every run: a stopped matrix keeps its figures
    load1, load5, _ = os.getloadavg()
    run.machine["load average at end (1 min, 5 min)"] = f"{load1:.2f}, {load5:.2f}"
    if loads:
        run.machine["load average (1 min) before each run: min / median / max"] = \
            f"{min(loads):.2f} / {median(loads):.2f} / {max(loads):.2f}"
    run.machine["wall time"] = f"{(time.monotonic() - started) / 60:.1f} min"
    write_json(run, raw)
    written = publish(run, args.output)
    print(f"wrote {', '.join(str(p) for p in written)} and {raw}")
    return 0


def render_only(args: argparse.Namespace) -> int:
    """--from-json: the report from recorded runs, nothing measured."""
    run = load_json(args.from_json)
    written = publish(run, args.output)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
