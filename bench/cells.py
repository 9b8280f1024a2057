"""A run's measurements: one Cell of samples per (server, scenario), and their medians."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.results import IdleSample, LoadSample
from bench.scenarios import Scenario
from bench.servers import ServerSpec
from bench.stats import median


@dataclass
class Cell:
    """Every repetition of one scenario against one server."""

    samples: list[LoadSample | IdleSample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def load_samples(self) -> list[LoadSample]:
        return [s for s in self.samples if isinstance(s, LoadSample)]

    def idle_samples(self) -> list[IdleSample]:
        return [s for s in self.samples if isinstance(s, IdleSample)]


@dataclass
class Run:
    """A whole benchmark run: what was run, where, and what came out."""

    command: str
    settings: dict[str, Any]
    machine: dict[str, str]
    servers: list[ServerSpec]
    scenarios: list[Scenario]
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)

    def cell(self, server: str, scenario: str) -> Cell:
        return self.cells.setdefault((server, scenario), Cell())


def median_rps(cell: Cell | None) -> float | None:
    samples = cell.load_samples() if cell else []
    return median([s.load.requests_per_s for s in samples]) if samples else None


def median_cpu(cell: Cell | None) -> float | None:
    """Median server CPU-s per 10k requests."""
    samples = cell.load_samples() if cell else []
    return median([s.cpu_seconds_per_10k for s in samples]) if samples else None


def median_idle_bytes(cell: Cell | None) -> float | None:
    samples = cell.idle_samples() if cell else []
    return median([s.bytes_per_connection for s in samples]) if samples else None


def median_bytes_per_s(cell: Cell | None) -> float | None:
    rates = [s.load.bytes_per_s for s in (cell.load_samples() if cell else [])
             if s.load.bytes_per_s is not None]
    return median(rates) if rates else None
