"""Unpinned runs (the multi-worker section): the server and wrk may use every core.

The harness starts servers under `taskset -c 0` and drivers under `taskset -c 1`. Two workers
cannot share one pinned core, so these servers and this driver re-widen their affinity with a
nested `taskset -c 0-N` (sched_setaffinity(2) may grant any online CPU again).
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.scenarios import LoadScenario
from bench.wrk import WrkDriver


def all_cpus() -> str:
    """Every CPU of the machine as a taskset list ("0-1" on two cores)."""
    return f"0-{max(1, os.cpu_count() or 1) - 1}"


def unpinned(argv: list[str]) -> list[str]:
    """argv run with the whole machine as its affinity."""
    return ["taskset", "-c", all_cpus(), *argv]


class UnpinnedWrk(WrkDriver):
    """wrk, one thread, allowed on every core (it competes with the server's workers)."""

    def command(
        self, scenario: LoadScenario, base_url: str, duration: float, workdir: Path
    ) -> list[str]:
        return unpinned(super().command(scenario, base_url, duration, workdir))
