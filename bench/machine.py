"""Facts about the machine and the software under test, recorded at the top of the report."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def tool_version(argv: list[str]) -> str:
    """First line a tool prints about its version (wrk prints it on stdout with exit 1)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def machine_facts() -> dict[str, str]:
    load1, load5, _ = os.getloadavg()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "cpu": f"{_cpu_model()}, {os.cpu_count()} cores",
        "memory": _memory_gib(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "wrk": tool_version(["wrk", "--version"]),
        "load average at start (1 min, 5 min)": f"{load1:.2f}, {load5:.2f}",
    }
