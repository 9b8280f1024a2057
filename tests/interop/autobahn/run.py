"""Run Autobahn|Testsuite's fuzzingclient against roadrunner (HTTP/1.1) and summarise it.

    python tests/interop/autobahn/run.py [--full] [--cases 1.*,2.*] [--reports DIR]

Starts roadrunner with the echo app on a free port, runs `wstest -m fuzzingclient` from the
virtualenv that setup.sh creates, prints one summary line of behaviour counts and exits 1 when
any case FAILED (2 when the run itself could not happen). The CI subset is every case of
sections 1-10 plus the compression cases 12.1, 13.1, 13.3, 13.5 and 13.7; --full runs all.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
CI_CASES = [f"{n}.*" for n in range(1, 11)] + ["12.1.*", "13.1.*", "13.3.*", "13.5.*", "13.7.*"]
FULL_CASES = ["*"]
BEHAVIOURS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
AGENT = "roadrunner"


def wstest_path() -> Path:
    directory = Path(os.environ.get("AUTOBAHN_DIR", ROOT / ".autobahn"))
    return directory / "venv2" / "bin" / "wstest"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"roadrunner exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("roadrunner did not start listening")


def summarise(index_file: Path) -> tuple[collections.Counter[str], list[str], dict[str, int]]:
    """Count behaviours over all cases, list the failed ones, and count OK per section 1-10."""
    index = json.loads(index_file.read_text())
    results = index[AGENT]
    counts: collections.Counter[str] = collections.Counter()
    failed: list[str] = []
    ok_sections: dict[str, int] = collections.Counter()
    for case, result in results.items():
        behaviour = result["behavior"]
        close = result.get("behaviorClose", "OK")
        if close == "FAILED":
            behaviour = "FAILED"
        counts[behaviour] += 1
        if behaviour == "FAILED":
            failed.append(case)
        if behaviour == "OK" and int(case.split(".")[0]) <= 10:
            ok_sections["1-10"] += 1
    return counts, sorted(failed, key=lambda c: [int(p) for p in c.split(".")]), ok_sections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="run every Autobahn case")
    parser.add_argument("--cases", help="comma list of case patterns (overrides the mode)")
    parser.add_argument("--reports", default=str(ROOT / "reports" / "autobahn"))
    parser.add_argument("--http", default="httptools", help="roadrunner --http for the run")
    args = parser.parse_args(argv)

    wstest = wstest_path()
    if not wstest.exists():
        print(f"autobahn: {wstest} missing; run tests/interop/autobahn/setup.sh", file=sys.stderr)
        return 2
    cases = args.cases.split(",") if args.cases else FULL_CASES if args.full else CI_CASES
    reports = Path(args.reports).resolve()
    reports.mkdir(parents=True, exist_ok=True)
    port = free_port()
    spec = {
        "outdir": str(reports),
        "servers": [{"agent": AGENT, "url": f"ws://127.0.0.1:{port}"}],
        "cases": cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    spec_file = reports / "fuzzingclient.json"
    spec_file.write_text(json.dumps(spec, indent=2))
    server = subprocess.Popen(
        [sys.executable, "-m", "roadrunner", "echo:app", "--app-dir", str(HERE),
         "--host", "127.0.0.1", "--port", str(port), "--http", args.http,
         "--log-level", "warning", "--no-access-log", "--lifespan", "off"],
        cwd=ROOT,
    )
    try:
        wait_listening(port, server)
        started = time.monotonic()
        run = subprocess.run(
            [str(wstest), "-m", "fuzzingclient", "-s", str(spec_file)],
            cwd=reports, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        elapsed = time.monotonic() - started
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    index_file = reports / "index.json"
    if run.returncode != 0 or not index_file.exists():
        sys.stderr.write(run.stderr.decode(errors="replace")[-4000:])
        print(f"autobahn: wstest failed with exit code {run.returncode}", file=sys.stderr)
        return 2
    counts, failed, ok_sections = summarise(index_file)
    line = " ".join(f"{name}={counts.get(name, 0)}" for name in BEHAVIOURS)
    total = sum(counts.values())
    mode = "custom" if args.cases else "full" if args.full else "ci"
    print(f"autobahn ({mode}, {total} cases, {elapsed:.0f} s): {line}"
          f" | OK in 1-10: {ok_sections.get('1-10', 0)}")
    if failed:
        print("autobahn FAILED cases: " + ", ".join(failed))
    print(f"autobahn report: {reports / 'index.html'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
