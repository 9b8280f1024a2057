"""Write a run out: docs/benchmarks.md (whole) with its charts and includes, and the raw JSON;
or read runs back from their JSON, to render the report again without measuring.

    python -m bench.run --from-json docs/bench/benchmarks.json        # re-render the docs
    python -m bench.run --from-json docs/bench/benchmarks.json \
        --from-json bench/results/partial.json --output docs/benchmarks.md  # fold in a re-run
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.cells import Run
from bench.charts import render as render_chart
from bench.charts import run_charts
from bench.report import render_json, render_markdown
from bench.results import IdleSample, LoadResult, LoadSample
from bench.scenarios import SCENARIOS
from bench.servers import SERVERS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs/benchmarks.md"
INCLUDES = ROOT / "docs/bench"
# Included in docs/benchmarks.md as they are: hand-written notes on the run, the regression gate
# (hand-written), the soak (written by bench/soak.py), the slow clients (bench/slowclients.py's
# figures, hand-written).
INCLUDE_FILES = {"notes": "notes.md", "gate": "regression-gate.md", "soak": "soak.md",
                 "slow": "slow-clients.md"}


def includes(directory: Path | None = None) -> dict[str, str]:
    """The include files that exist (in docs/bench/ unless told)."""
    directory = directory or INCLUDES
    found = {}
    for key, name in INCLUDE_FILES.items():
        path = directory / name
        if path.exists():
            found[key] = path.read_text()
    return found


def chart_directory(output: Path) -> Path:
    """docs/bench/ for the docs; beside any other report, in <stem>-charts/."""
    return output.parent / "bench" if output.resolve() == DOCS.resolve() \
        else output.parent / f"{output.stem}-charts"


def publish(run: Run, output: Path) -> list[Path]:
    """Write the Markdown report and its SVG charts; the paths written. For docs/benchmarks.md
    the includes are read and the run's JSON is kept beside the charts (docs/bench/benchmarks.json,
    committed), so a later partial run can be folded into the published one with --from-json."""
    output.parent.mkdir(parents=True, exist_ok=True)
    charts_dir = chart_directory(output)
    charts_dir.mkdir(parents=True, exist_ok=True)
    written, links = [], []
    for name, chart in run_charts(run):
        path = charts_dir / name
        path.write_text(render_chart(chart))
        written.append(path)
        links.append((chart.title, os.path.relpath(path, output.parent)))
    found = {}
    if output.resolve() == DOCS.resolve():
        found = includes()
        write_json(run, INCLUDES / "benchmarks.json")
        written.append(INCLUDES / "benchmarks.json")
    output.write_text(render_markdown(run, found, links))
    return [output, *written]


def write_json(run: Run, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_json(run))


def _sample(data: dict[str, Any]) -> LoadSample | IdleSample:
    if "load" in data:
        return LoadSample(LoadResult(**data["load"]), data["cpu_seconds_per_10k"],
                          data["rss_bytes"])
    return IdleSample(**data)


def load_json(paths: Sequence[Path]) -> Run:
    """One Run from the JSON of one or more runs (later files add cells and replace a cell
    measured again)."""
    documents = [json.loads(path.read_text()) for path in paths]
    first = documents[0]
    # A folded document's command is its commands joined: split, and each command said once
    # (a run measured again replaces the cells of the same command).
    commands = list(dict.fromkeys(c for d in documents for c in d["command"].split("`; `")))
    run = Run("; ".join(f"`{c}`" if len(commands) > 1 else c for c in commands),
              first["settings"], dict(first["machine"]), [], [])
    if len(commands) > 1:
        run.command = run.command.strip("`")  # the report wraps it in backticks once
        for i, document in enumerate(documents[1:], 2):
            for key, value in document["machine"].items():
                if key.startswith(("date", "load average")):
                    run.machine[f"{key} (part {i})"] = value
    servers: list[str] = []
    scenarios: list[str] = []
    for document in documents:
        for entry in document["cells"]:
            cell = run.cell(entry["server"], entry["scenario"])
            cell.samples[:] = [_sample(s) for s in entry["samples"]]
            cell.errors[:] = entry["errors"]
        recorded = [(document.get("servers", []), servers),
                    (document.get("scenarios", []), scenarios),
                    ([e["server"] for e in document["cells"]], servers),
                    ([e["scenario"] for e in document["cells"]], scenarios)]
        for names, into in recorded:
            into.extend(name for name in names if name not in into)
    # In the order the runs listed them; names the registry no longer has are dropped.
    run.servers = [SERVERS[name] for name in servers if name in SERVERS]
    run.scenarios = [SCENARIOS[name] for name in scenarios if name in SCENARIOS]
    return run
