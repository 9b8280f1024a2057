"""The documentation names every CLI flag: docs stay true to the code."""

from __future__ import annotations

from pathlib import Path

import click

from roadrunner.cli import main

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_flag_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    missing = [
        opt
        for param in main.params
        if isinstance(param, click.Option) and param.name != "version"
        for opt in param.opts
        if f"`{opt}" not in text and f" {opt}`" not in text and f"/ {opt}" not in text
    ]
    assert missing == [], f"document these flags in docs/configuration.md: {missing}"


def test_readme_keeps_the_two_setup_commands() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    head = readme[: readme.index("## Usage")]
    assert "make run" in head and "make test" in head
