"""Bar charts of a run as SVG, written by a few lines of our own (no plotting dependency).

One chart per metric and protocol group: req/s as a ratio to each scenario's baseline (bars
grow from the 1x line, right for faster, left for slower, on a log scale), and server CPU
microseconds per request (log scale). Every scenario is a group of rows, one bar per server, the
same colour for a server in every chart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from bench.cells import Run, median_cpu, median_rps
from bench.scenarios import LoadScenario
from bench.servers import SERVERS

# Colour-blind-safe palette (Okabe-Ito), then greys; roadrunner first, so always the same blue.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442",
           "#000000", "#999999", "#666666", "#BBBBBB", "#333333")
WIDTH = 960
LABEL_WIDTH = 210  # scenario names
LEGEND_WIDTH = 190
BAR = 11
BAR_GAP = 2
GROUP_GAP = 12
TOP = 56
BOTTOM = 40


@dataclass(frozen=True)
class Bar:
    server: str
    value: float  # > 0
    label: str  # printed at the bar's end


@dataclass(frozen=True)
class Group:
    scenario: str
    bars: tuple[Bar, ...]
    baseline: str = ""  # the server the ratios divide by (ratio charts)


@dataclass(frozen=True)
class Chart:
    title: str
    subtitle: str
    unit: str  # axis label
    groups: tuple[Group, ...]
    servers: tuple[str, ...]  # legend order and colours
    from_one: bool = False  # ratio chart: bars grow from 1 instead of from the axis' left end


def colours(servers: Sequence[str]) -> dict[str, str]:
    """A server's colour by its place in the registry: the same in every chart and run."""
    order = {name: i for i, name in enumerate(SERVERS)}
    return {name: PALETTE[order.get(name, len(order)) % len(PALETTE)] for name in servers}


def log_range(values: Sequence[float], include_one: bool) -> tuple[float, float]:
    """A log axis from a power-of-ten-ish step below the least value to one above the most."""
    low, high = min(values), max(values)
    if include_one:
        low, high = min(low, 1.0), max(high, 1.0)
    return _step_below(low), _step_above(high)


def _steps() -> list[float]:
    return [m * 10.0 ** e for e in range(-4, 7) for m in (1, 2, 5)]


def _step_below(value: float) -> float:
    return max([s for s in _steps() if s <= value * 0.999], default=_steps()[0])


def _step_above(value: float) -> float:
    return min([s for s in _steps() if s >= value * 1.001], default=_steps()[-1])


def ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks inside [low, high]; only the powers of ten when the range is wide."""
    wide = high / low > 1e3
    return [s for s in _steps()
            if low <= s <= high and (not wide or abs(math.log10(s) - round(math.log10(s))) < 1e-9)]


def _fmt(value: float) -> str:
    return f"{value:g}" if value < 1000 else f"{value:,.0f}"


def render(chart: Chart) -> str:
    """The chart as a standalone SVG document."""
    rows = sum(len(g.bars) for g in chart.groups)
    plot_height = rows * (BAR + BAR_GAP) + len(chart.groups) * GROUP_GAP
    height = TOP + plot_height + BOTTOM
    x0, x1 = LABEL_WIDTH, WIDTH - LEGEND_WIDTH - 40
    values = [b.value for g in chart.groups for b in g.bars]
    if not values:
        values = [1.0]
    low, high = log_range(values, chart.from_one)

    def x(value: float) -> float:
        return x0 + (x1 - x0) * (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))

    colour = colours(chart.servers)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
           f'<text x="10" y="20" font-size="15" font-weight="bold">{escape(chart.title)}</text>',
           f'<text x="10" y="38" fill="#444">{escape(chart.subtitle)}</text>']
    bottom = TOP + plot_height
    for tick in ticks(low, high):
        tx = x(tick)
        strong = chart.from_one and tick == 1.0
        out.append(f'<line x1="{tx:.1f}" y1="{TOP - 4}" x2="{tx:.1f}" y2="{bottom}" '
                   f'stroke="{"#333" if strong else "#ddd"}" '
                   f'stroke-width="{1.5 if strong else 1}"/>')
        out.append(f'<text x="{tx:.1f}" y="{bottom + 14}" text-anchor="middle" '
                   f'fill="#444">{_fmt(tick)}</text>')
    out.append(f'<text x="{(x0 + x1) / 2:.0f}" y="{bottom + 30}" text-anchor="middle" '
               f'fill="#222">{escape(chart.unit)}</text>')
    y = TOP
    origin = x(1.0) if chart.from_one else x0
    for group in chart.groups:
        group_height = len(group.bars) * (BAR + BAR_GAP)
        out.append(f'<text x="{x0 - 8}" y="{y + group_height / 2 + 4:.1f}" text-anchor="end" '
                   f'font-weight="bold">{escape(group.scenario)}</text>')
        for bar in group.bars:
            end = x(min(max(bar.value, low), high))
            left, right = sorted((origin, end))
            out.append(f'<rect x="{left:.1f}" y="{y}" width="{max(right - left, 1):.1f}" '
                       f'height="{BAR}" fill="{colour.get(bar.server, "#999")}">'
                       f'<title>{escape(bar.server)}: {escape(bar.label)}</title></rect>')
            anchor, tx = ("end", left - 3) if end < origin else ("start", right + 3)
            out.append(f'<text x="{tx:.1f}" y="{y + BAR - 2}" text-anchor="{anchor}" '
                       f'font-size="9" fill="#222">{escape(bar.label)}</text>')
            y += BAR + BAR_GAP
        y += GROUP_GAP
        out.append(f'<line x1="{x0}" y1="{y - GROUP_GAP / 2:.1f}" x2="{x1}" '
                   f'y2="{y - GROUP_GAP / 2:.1f}" stroke="#f0f0f0"/>')
    lx = WIDTH - LEGEND_WIDTH + 10
    for i, server in enumerate(chart.servers):
        ly = TOP + i * 16
        out.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colour[server]}"/>')
        out.append(f'<text x="{lx + 18}" y="{ly + 10}">{escape(server)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# -- a run's charts ------------------------------------------------------------------------------

# (file stem, title, the results groups it covers)
CHART_GROUPS = (
    ("h1", "HTTP/1.1 and WebSocket", ("HTTP/1.1", "WebSocket")),
    ("h2-h3", "HTTP/2 and HTTP/3", ("HTTP/2", "HTTP/3")),
)


def run_charts(run: Run) -> list[tuple[str, Chart]]:
    """(file name, chart) for each metric and group the run has figures for (throughput
    scenarios, `chart=False`, are in the tables only)."""
    from bench.report import group_of  # the report's grouping, one source

    made = []
    for stem, title, groups in CHART_GROUPS:
        scenarios = [s for s in run.scenarios
                     if isinstance(s, LoadScenario) and s.chart and group_of(s) in groups]
        ratio_groups, cpu_groups, seen = [], [], []
        baselines = set()
        for scenario in scenarios:
            base = median_rps(run.cells.get((scenario.baseline, scenario.name)))
            ratios, cpus = [], []
            for spec in run.servers:
                cell = run.cells.get((spec.name, scenario.name))
                rps, cpu = median_rps(cell), median_cpu(cell)
                if rps is None or cpu is None:
                    continue
                if spec.name not in seen:
                    seen.append(spec.name)
                if base and rps > 0:
                    ratios.append(Bar(spec.name, rps / base, f"{rps / base:.2f}x"))
                if cpu > 0:
                    cpus.append(Bar(spec.name, cpu * 100, f"{cpu * 100:,.1f} µs"))
            if ratios:
                baselines.add(scenario.baseline)
                ratio_groups.append(Group(scenario.name, tuple(ratios), scenario.baseline))
            if cpus:
                cpu_groups.append(Group(scenario.name, tuple(cpus)))
        servers = tuple(seen)
        if len(baselines) > 1:  # name each group's baseline where the chart has several
            ratio_groups = [Group(f"{g.scenario} (÷ {g.baseline})", g.bars, g.baseline)
                            for g in ratio_groups]
        if ratio_groups:
            made.append((f"rps-{stem}.svg", Chart(
                f"{title}: req/s ÷ the scenario's baseline ({', '.join(sorted(baselines))})",
                "median req/s over repetitions; right of the 1x line is faster than the "
                "baseline; log scale", "req/s ÷ baseline", tuple(ratio_groups), servers,
                from_one=True)))
        if cpu_groups:
            made.append((f"cpu-{stem}.svg", Chart(
                f"{title}: server CPU per request",
                "median server CPU (user + system) per completed request; shorter is cheaper; "
                "log scale", "CPU µs per request", tuple(cpu_groups), servers)))
    return made
