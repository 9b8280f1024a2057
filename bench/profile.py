"""`python -m bench.profile`: where a server spends its time under one scenario's load.

Runs the server under py-spy (`pip install py-spy`) on the server core, applies the scenario
with its driver on the client core, and prints the top functions by own time and by file.

    python -m bench.profile --server roadrunner --scenario hello --duration 8
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from bench.process import ServerProcess, free_port
from bench.run import CLIENT_CPU, HOST, ROOT, SERVER_CPU, check_response, run_driver
from bench.scenarios import SCENARIOS, LoadScenario
from bench.servers import SERVERS, Launch


def aggregate(collapsed: Iterable[str]) -> tuple[Counter[str], Counter[str], int]:
    """From py-spy's raw (collapsed-stack) lines: samples per function (own time), per file
    (own time), and the total."""
    functions: Counter[str] = Counter()
    files: Counter[str] = Counter()
    total = 0
    for line in collapsed:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        leaf = stack.split(";")[-1]
        functions[leaf] += samples
        location = leaf[leaf.rfind("(") + 1:leaf.rfind(")")] if "(" in leaf else leaf
        files[location.rsplit(":", 1)[0]] += samples
    return functions, files, total


def format_top(counts: Counter[str], total: int, limit: int) -> list[str]:
    return [f"{100 * n / total:5.1f}%  {name}" for name, n in counts.most_common(limit)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="roadrunner", choices=list(SERVERS))
    parser.add_argument("--scenario", default="hello",
                        choices=[n for n, s in SCENARIOS.items() if isinstance(s, LoadScenario)])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise SystemExit("py-spy not found: pip install py-spy")
    scenario = SCENARIOS[args.scenario]
    assert isinstance(scenario, LoadScenario)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        workdir = Path(tmp)
        raw = workdir / "stacks.txt"
        wrapper = ["taskset", "-c", str(CLIENT_CPU), py_spy, "record", "--format", "raw",
                   "--rate", str(args.rate), "--nonblocking", "--output", str(raw), "--"]
        launch = Launch(HOST, free_port(HOST))
        server = ServerProcess(SERVERS[args.server], launch, SERVER_CPU,
                               workdir / "server.log", ROOT, wrapper)
        with server:
            check_response(scenario, launch.port)
            output = run_driver(scenario, launch.port, args.duration, workdir)
        print(output)
        if not raw.exists():
            raise SystemExit(f"py-spy wrote no profile:\n{server.log_tail()}")
        functions, files, total = aggregate(raw.read_text().splitlines())
    print(f"{total} samples of {args.server} under {args.scenario}; own time by function:")
    print("\n".join(format_top(functions, total, args.top)))
    print("own time by file:")
    print("\n".join(format_top(files, total, 12)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
