"""CPU time and RSS of a server's process tree, read from /proc (see proc(5))."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/PID/stat the harness uses (CPU times in clock ticks)."""

    pid: int
    ppid: int
    utime: int
    stime: int
    rss_pages: int


@dataclass(frozen=True)
class TreeUsage:
    """CPU seconds (user + system) and resident bytes summed over a process tree."""

    pids: tuple[int, ...]
    cpu_seconds: float
    rss_bytes: int


def parse_stat(text: str) -> ProcStat:
    """Parse one /proc/PID/stat line.

    The command name (field 2) is in parentheses and may itself hold spaces or ')', so the
    fields are counted from the last ')'. proc(5): ppid is field 4, utime 14, stime 15, rss 24.
    """
    head, _, tail = text.rpartition(")")
    if not head:
        raise ValueError(f"not a /proc/PID/stat line: {text[:60]!r}")
    pid = int(head.split("(", 1)[0])
    fields = tail.split()  # fields[0] is field 3 (state)
    return ProcStat(
        pid=pid,
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        rss_pages=int(fields[21]),
    )


def read_stat(pid: int, proc: Path = Path("/proc")) -> ProcStat | None:
    """The stat of one process, or None if it has gone."""
    try:
        return parse_stat((proc / str(pid) / "stat").read_text())
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None


def all_stats(proc: Path = Path("/proc")) -> dict[int, ProcStat]:
    """Every process visible in /proc."""
    stats: dict[int, ProcStat] = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name), proc)
            if stat is not None:
                stats[stat.pid] = stat
    return stats


def tree_of(root: int, stats: dict[int, ProcStat]) -> list[ProcStat]:
    """The root process and all its descendants (gunicorn's and granian's workers)."""
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    if root not in stats:
        return []
    found: list[ProcStat] = []
    pending = [root]
    while pending:
        pid = pending.pop()
        found.append(stats[pid])
        pending.extend(children.get(pid, []))
    return found


def summarize(tree: list[ProcStat]) -> TreeUsage:
    """Sum CPU (utime + stime, in seconds) and RSS (bytes) over a process tree."""
    ticks = sum(stat.utime + stat.stime for stat in tree)
    pages = sum(stat.rss_pages for stat in tree)
    return TreeUsage(
        pids=tuple(sorted(stat.pid for stat in tree)),
        cpu_seconds=ticks / CLOCK_TICKS,
        rss_bytes=pages * PAGE_SIZE,
    )


def tree_usage(root: int, proc: Path = Path("/proc")) -> TreeUsage:
    """CPU seconds and RSS of the live process tree under root."""
    return summarize(tree_of(root, all_stats(proc)))


def cpu_seconds_per_10k(before: TreeUsage, after: TreeUsage, requests: int) -> float:
    """Server CPU seconds spent per 10,000 requests between two readings."""
    if requests <= 0:
        raise ValueError("no requests were completed")
    return (after.cpu_seconds - before.cpu_seconds) * 10_000 / requests


def open_fds(pid: int, proc: Path = Path("/proc")) -> int:
    """How many file descriptors a process holds: the entries of /proc/PID/fd (proc(5))."""
    return sum(1 for _ in (proc / str(pid) / "fd").iterdir())
