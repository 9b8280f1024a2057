"""bench/gate.py: the baseline comparison, the table, the version check and record/check runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import gate
from bench.gate import Row, compare, format_table, refusal, settings_changed, spread, summary

ENV: dict[str, Any] = {"python": "3.11.7", "valgrind": "valgrind-3.19.0", "build": "compiled",
                       "packages": {"h2": "4.4.1", "uvloop": "0.23.0"}}
SETTINGS = {"h1_hello": "h1 GET /hello, 2000 requests", "h2c_hello": "h2c GET /hello, 400"}


def _baseline(**figures: float) -> dict[str, Any]:
    return {**ENV, "recorded": "2026-12-01 10:00 UTC", "commit": "0123456789abcdef",
            "scenarios": {name: {"instructions_per_request": value, "settings": SETTINGS[name]}
                          for name, value in figures.items()}}


def test_change_is_percent_against_the_baseline_and_only_dearer_than_3_percent_fails() -> None:
    assert Row("a", 100_000, 103_000).change == pytest.approx(3.0)
    assert not Row("a", 100_000, 103_000).failed()  # exactly 3%: allowed
    assert Row("a", 100_000, 103_001).failed()
    assert not Row("a", 100_000, 50_000).failed()  # cheaper passes
    assert Row("a", 100_000, 96_000).verdict().startswith("cheaper")
    assert Row("a", 100_000, 98_000).verdict() == "ok"
    assert Row("a", 100_000, 105_000).verdict() == "FAIL: dearer than the +3.0% allowed"


def test_compare_pairs_each_figure_with_its_baseline() -> None:
    rows = compare(_baseline(h1_hello=88_000, h2c_hello=1_000_000), {"h1_hello": 90_640.0})
    assert rows == [Row("h1_hello", 88_000, 90_640.0)]
    assert rows[0].change == pytest.approx(3.0)


def test_table_lines_up_baseline_now_and_change() -> None:
    table = format_table([Row("h1_hello", 88_000, 88_440), Row("h2c_hello", 1_000_000, 1_050_000)])
    assert table.splitlines() == [
        "scenario    baseline        now  change",
        "h1_hello      88,000     88,440   +0.5%  ok",
        "h2c_hello  1,000,000  1,050,000   +5.0%  FAIL: dearer than the +3.0% allowed",
    ]


def test_summary_fails_on_a_dearer_scenario_and_hints_at_recording_when_cheaper() -> None:
    message, code = summary([Row("h1_hello", 100, 100), Row("h1_echo", 100, 104)])
    assert code == 1 and "h1_echo" in message and "make bench-baseline" in message
    message, code = summary([Row("h1_hello", 100, 90)])
    assert code == 0 and "cheaper" in message and "make bench-baseline" in message
    assert summary([Row("h1_hello", 100, 101)]) == ("bench-check passed.", 0)


def test_refusal_on_another_python_minor_valgrind_or_library_but_not_a_python_patch() -> None:
    baseline = _baseline(h1_hello=1)
    assert refusal(baseline, ENV) is None
    assert refusal(baseline, {**ENV, "python": "3.11.9"}) is None
    assert "Python 3.12.1" in str(refusal(baseline, {**ENV, "python": "3.12.1"}))
    assert "valgrind-3.22.0" in str(refusal(baseline, {**ENV, "valgrind": "valgrind-3.22.0"}))
    other = {**ENV, "packages": {"h2": "4.3.0", "uvloop": "0.23.0"}}
    assert refusal(baseline, other) == "h2 4.3.0, the baseline's is 4.4.1"


def test_refusal_on_another_build_a_baseline_without_one_being_pure() -> None:
    baseline = _baseline(h1_hello=1)
    assert refusal(baseline, {**ENV, "build": "pure"}) == (
        "a pure build, the baseline was recorded on a compiled one")
    old = {key: value for key, value in baseline.items() if key != "build"}
    assert refusal(old, {**ENV, "build": "pure"}) is None
    assert "a compiled build" in str(refusal(old, ENV))


def test_settings_changed_names_missing_and_re_sized_scenarios() -> None:
    baseline = _baseline(h1_hello=1)
    assert settings_changed(baseline, {"h1_hello": SETTINGS["h1_hello"]}) == []
    assert settings_changed(baseline, SETTINGS) == ["h2c_hello"]
    assert settings_changed(baseline, {"h1_hello": "h1 GET /hello, 4000 requests"}) == ["h1_hello"]


def test_spread_is_range_over_median() -> None:
    assert spread([100.0, 101.0, 99.0]) == pytest.approx(2.0)
    assert spread([5.0]) == 0.0


def _run(mode: str, path: Path, figures: dict[str, float], env: dict[str, Any] = ENV,
         repeat: int = 1) -> tuple[int, str, list[str]]:
    lines: list[str] = []
    measured: list[str] = []

    def measure(name: str) -> float:
        measured.append(name)
        return figures[name]

    code = gate.run(mode, SETTINGS, measure, repeat=repeat, path=path, env=env, out=lines.append)
    return code, "\n".join(lines), measured


def test_record_then_check_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gate, "git_commit", lambda: "feedface")
    path = tmp_path / "baseline" / "callgrind.json"
    code, _, measured = _run("record", path, {"h1_hello": 88_000.4, "h2c_hello": 1e6}, repeat=3)
    assert code == 0 and measured == ["h1_hello"] * 3 + ["h2c_hello"] * 3
    document = json.loads(path.read_text())
    assert document["commit"] == "feedface" and document["python"] == "3.11.7"
    assert document["valgrind"] == "valgrind-3.19.0" and document["packages"]["h2"] == "4.4.1"
    assert document["scenarios"]["h1_hello"] == {"instructions_per_request": 88_000,
                                                 "settings": SETTINGS["h1_hello"]}
    code, text, _ = _run("check", path, {"h1_hello": 88_100.0, "h2c_hello": 1e6})
    assert code == 0 and "bench-check passed." in text
    code, text, _ = _run("check", path, {"h1_hello": 88_000.0, "h2c_hello": 1.04e6})
    assert code == 1 and "h2c_hello" in text.splitlines()[-1] and "+4.0%" in text


def test_check_skips_without_measuring_on_another_python(tmp_path: Path) -> None:
    path = tmp_path / "callgrind.json"
    path.write_text(json.dumps(_baseline(h1_hello=1, h2c_hello=1)))
    code, text, measured = _run("check", path, {}, env={**ENV, "python": "3.13.0"})
    assert code == 0 and measured == []
    assert text.startswith("bench-check SKIPPED") and "Python 3.13.0" in text


def test_check_fails_without_a_baseline_or_valgrind(tmp_path: Path) -> None:
    code, text, measured = _run("check", tmp_path / "none.json", {})
    assert code == 1 and "no baseline" in text and measured == []
    code, text, _ = _run("check", tmp_path / "none.json", {}, env={**ENV, "valgrind": None})
    assert code == 1 and "valgrind is not installed" in text


def test_check_fails_when_the_baseline_was_recorded_with_other_settings(tmp_path: Path) -> None:
    path = tmp_path / "callgrind.json"
    path.write_text(json.dumps(_baseline(h1_hello=1)))
    code, text, measured = _run("check", path, {})
    assert code == 1 and "h2c_hello" in text and measured == []



def test_the_committed_baseline_covers_the_gate_scenarios_with_their_settings() -> None:
    from bench.callgrind import GATE

    baseline = json.loads(gate.BASELINE.read_text())
    assert settings_changed(baseline, {name: s.settings for name, s in GATE.items()}) == []
    assert {"python", "valgrind", "commit", "packages", "build"} <= set(baseline)
