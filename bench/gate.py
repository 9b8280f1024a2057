"""The regression gate over `bench/callgrind.py`'s counts: `make bench-check`, `make bench-baseline`.

The baseline (bench/baseline/callgrind.json) holds instructions per request for each gate scenario
and what the counts depend on besides the code: the Python version, the valgrind version, the
libraries on the measured path, the build (mypyc-compiled or pure, as roadrunner.compiled reports
it; ROADRUNNER_PURE=1 measures the pure modules) and each scenario's settings. A check on another
Python minor, another valgrind or another build is skipped, not failed: those counts are not
comparable.
"""

from __future__ import annotations

import datetime
import json
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "bench" / "baseline" / "callgrind.json"
THRESHOLD = 3.0  # percent: a scenario dearer than its baseline by more than this fails
# Libraries on the measured path: another version moves the counts without a roadrunner change.
PACKAGES = ("uvloop", "httptools", "h2", "hpack", "hyperframe")
RECORD_HINT = "make bench-baseline (a reviewed commit of its own)"


def valgrind_version() -> str | None:
    try:
        result = subprocess.run(["valgrind", "--version"], capture_output=True, text=True)
    except FileNotFoundError:
        return None
    return result.stdout.strip() or None


def roadrunner_build() -> str:
    """ "compiled" or "pure": what the measured server loads (the same install and environment)."""
    from roadrunner.compiled import build

    return build()


def environment() -> dict[str, Any]:
    """What this machine would measure with: Python, valgrind, library versions and the build."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = "not installed"
    return {"python": platform.python_version(), "valgrind": valgrind_version(),
            "build": roadrunner_build(), "packages": packages}


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def refusal(baseline: Mapping[str, Any], env: Mapping[str, Any]) -> str | None:
    """Why this environment's counts cannot be compared with the baseline's, or None."""
    reasons = []
    if _minor(baseline["python"]) != _minor(env["python"]):
        reasons.append(f"Python {env['python']}, the baseline was recorded on {baseline['python']}")
    if baseline["valgrind"] != env["valgrind"]:
        reasons.append(f"{env['valgrind']}, the baseline was recorded with {baseline['valgrind']}")
    # A baseline from before the mypyc build existed measured the pure modules.
    recorded_build, build = baseline.get("build", "pure"), env.get("build", "pure")
    if recorded_build != build:
        reasons.append(f"a {build} build, the baseline was recorded on a {recorded_build} one")
    for name, version in baseline.get("packages", {}).items():
        if env["packages"].get(name) != version:
            reasons.append(f"{name} {env['packages'].get(name)}, the baseline's is {version}")
    return "; ".join(reasons) or None


@dataclass(frozen=True)
class Row:
    """One scenario: its baseline and current instructions per request."""

    scenario: str
    baseline: float
    now: float

    @property
    def change(self) -> float:
        """Percent change against the baseline (positive: dearer)."""
        return (self.now - self.baseline) / self.baseline * 100.0

    def failed(self, threshold: float = THRESHOLD) -> bool:
        return self.change > threshold

    def verdict(self, threshold: float = THRESHOLD) -> str:
        if self.failed(threshold):
            return f"FAIL: dearer than the +{threshold:.1f}% allowed"
        if self.change < -threshold:
            return "cheaper: if intended, record a new baseline"
        return "ok"


def settings_changed(baseline: Mapping[str, Any], settings: Mapping[str, str]) -> list[str]:
    """Gate scenarios whose baseline is missing or was recorded with other settings."""
    recorded = baseline.get("scenarios", {})
    return [name for name, wanted in settings.items()
            if name not in recorded or recorded[name]["settings"] != wanted]


def compare(baseline: Mapping[str, Any], figures: Mapping[str, float]) -> list[Row]:
    scenarios = baseline["scenarios"]
    return [Row(name, scenarios[name]["instructions_per_request"], now)
            for name, now in figures.items()]


def format_table(rows: list[Row], threshold: float = THRESHOLD) -> str:
    header = ("scenario", "baseline", "now", "change", "")
    cells = [header] + [(row.scenario, f"{row.baseline:,.0f}", f"{row.now:,.0f}",
                         f"{row.change:+.1f}%", row.verdict(threshold)) for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(4)]
    lines = []
    for line in cells:
        name, *numbers, verdict = line
        text = "  ".join([name.ljust(widths[0])] +
                         [cell.rjust(width) for cell, width in zip(numbers, widths[1:], strict=True)])
        lines.append(f"{text}  {verdict}".rstrip())
    return "\n".join(lines)


def summary(rows: list[Row], threshold: float = THRESHOLD) -> tuple[str, int]:
    """The closing message and the exit code: 1 when any scenario is too dear."""
    failed = [row.scenario for row in rows if row.failed(threshold)]
    if failed:
        return (f"bench-check FAILED: {', '.join(failed)} more than {threshold:.1f}% dearer than "
                f"the baseline. If the cost is intended, record a new baseline: {RECORD_HINT}.", 1)
    if any(row.change < -threshold for row in rows):
        return (f"bench-check passed; cheaper than the baseline: lock the gain in with "
                f"{RECORD_HINT}.", 0)
    return "bench-check passed.", 0


def spread(values: list[float]) -> float:
    """(max - min) / median, in percent."""
    return (max(values) - min(values)) / statistics.median(values) * 100.0


def git_commit() -> str:
    """HEAD, with "-dirty" when roadrunner/ or bench/ (but the baseline) has uncommitted changes."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "roadrunner", "bench",
                            ":(exclude)bench/baseline"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return head + ("-dirty" if dirty else "") if head else "unknown"


def baseline_document(figures: Mapping[str, float], settings: Mapping[str, str],
                      env: Mapping[str, Any], commit: str) -> dict[str, Any]:
    return {
        "comment": "Instructions per request under callgrind (bench/gate.py). Re-record with "
                   "`make bench-baseline`, in a reviewed commit of its own.",
        "recorded": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit, **env,
        "scenarios": {name: {"instructions_per_request": round(figures[name]),
                             "settings": settings[name]} for name in figures},
    }


def run(mode: str, settings: Mapping[str, str], measure: Callable[[str], float],
        repeat: int = 1, path: Path = BASELINE, env: Mapping[str, Any] | None = None,
        out: Callable[[str], None] = print) -> int:
    """`mode` "check" or "record" over the scenarios named in `settings`; the exit code."""
    env = environment() if env is None else env
    if env["valgrind"] is None:
        out("bench-check: valgrind is not installed (make bench-check installs it)")
        return 1
    if mode == "check":
        if not path.exists():
            out(f"bench-check: no baseline at {path}; record one with {RECORD_HINT}")
            return 1
        baseline = json.loads(path.read_text())
        reason = refusal(baseline, env)
        if reason is not None:
            out(f"bench-check SKIPPED: counts are not comparable ({reason}). "
                f"Run it where the baseline was recorded, or record one here.")
            return 0
        changed = settings_changed(baseline, settings)
        if changed:
            out(f"bench-check: the baseline has no figure for {', '.join(changed)} with the "
                f"current settings; record one with {RECORD_HINT}")
            return 1
    figures = {}
    for name in settings:
        started = time.monotonic()
        runs = [measure(name) for _ in range(repeat)]
        figures[name] = statistics.median(runs)
        detail = (f"runs {' / '.join(f'{v:,.0f}' for v in runs)}, spread {spread(runs):.2f}%, "
                  if repeat > 1 else "")
        out(f"{name}: {figures[name]:,.0f} instructions per request "
            f"({detail}{(time.monotonic() - started) / repeat:.0f} s per run)")
    if mode == "record":
        document = baseline_document(figures, settings, env, git_commit())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2) + "\n")
        out(f"baseline written to {path}")
        return 0
    rows = compare(baseline, figures)
    out(f"\nroadrunner, instructions per request against {path.name} (recorded "
        f"{baseline['recorded']} at {baseline['commit'][:12]}, Python {baseline['python']}, "
        f"{baseline['valgrind']}, {baseline.get('build', 'pure')} build):")
    out(format_table(rows))
    message, code = summary(rows)
    out(message)
    return code
