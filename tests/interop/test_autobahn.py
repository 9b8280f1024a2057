"""Autobahn|Testsuite fuzzingclient (CI subset) against roadrunner over HTTP/1.1.

Runs tests/interop/autobahn/run.py: sections 1-10 and the compression cases 12.1, 13.1,
13.3, 13.5 and 13.7. No case may FAIL; section 1-10 must be at least 291 OK (the rest are
NON-STRICT / INFORMATIONAL by the suite's own grading).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "tests" / "interop" / "autobahn" / "run.py"
WSTEST = ROOT / ".autobahn" / "venv2" / "bin" / "wstest"


@pytest.mark.timeout(3600)
def test_autobahn_ci_subset(tmp_path: Path) -> None:
    if not WSTEST.exists():
        pytest.skip("wstest is not installed (make interop runs tests/interop/autobahn/setup.sh)")
    result = subprocess.run(
        [sys.executable, str(RUNNER), "--reports", str(ROOT / "reports" / "autobahn")],
        cwd=ROOT, capture_output=True, text=True, timeout=3500,
    )
    print(result.stdout)
    summary = re.search(r"FAILED=(\d+) \| OK in 1-10: (\d+)", result.stdout)
    assert summary is not None, result.stdout + result.stderr[-3000:]
    failed, ok = int(summary.group(1)), int(summary.group(2))
    assert failed == 0, result.stdout
    assert ok >= 291, result.stdout
    assert result.returncode == 0
