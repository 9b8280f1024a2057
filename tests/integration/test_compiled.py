"""The mypyc build (roadrunner/compiled.py): which modules load, ROADRUNNER_PURE=1, stale builds."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest

from roadrunner.compiled import MODULES, PURE_ENV, stale_modules
from tests.integration.process_helpers import roadrunner, write_app

ROOT = Path(__file__).resolve().parents[2]
# What a fresh interpreter loads for each compiled module: its file and the build it reports.
REPORT = """
import importlib, json, sys, warnings
warnings.simplefilter("always")
FAKE_BUILD
import roadrunner.compiled as compiled
files = {name: importlib.import_module(name).__file__ for name in compiled.MODULES}
print(json.dumps({"files": files, "build": compiled.build()}))
"""
# A build record whose digests match no source: as after editing a module built in place.
STALE_BUILD = """
import types
fake = types.ModuleType("roadrunner._compiled_sources")
fake.SOURCES = {}
sys.modules[fake.__name__] = fake
"""


def built() -> bool:
    """Whether this checkout's mypyc modules are built (setup.py records their sources)."""
    return (ROOT / "roadrunner" / "_compiled_sources.py").exists()


needs_build = pytest.mark.skipif(not built(), reason="the mypyc modules are not built")


def could_build() -> str | None:
    """Why this checkout could not have compiled the mypyc modules, or None when it could."""
    if os.environ.get("ROADRUNNER_NO_EXTENSIONS"):
        return "ROADRUNNER_NO_EXTENSIONS is set"
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler}) on PATH"
    if importlib.util.find_spec("mypyc") is None:
        return "mypy (mypyc) is not installed"
    return None


def test_the_modules_are_compiled_where_they_can_be() -> None:
    # A build that fell back to pure Python with a compiler at hand is a failure, not a note
    # (pip -q hides setup.py's warning): mypy found errors the venv's does not, say.
    reason = could_build()
    if reason is not None:
        pytest.skip(reason)
    assert built(), "a C compiler and mypyc are here, but setup.py did not compile the modules"


def report(env: dict[str, str], fake_build: str = "") -> tuple[dict[str, str], str, str]:
    result = subprocess.run(
        [sys.executable, "-c", REPORT.replace("FAKE_BUILD", fake_build)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    data = json.loads(result.stdout)
    return data["files"], data["build"], result.stderr


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != PURE_ENV}


def test_pure_switch_loads_every_python_source() -> None:
    files, build, _ = report({**clean_env(), PURE_ENV: "1"})
    assert set(files) == set(MODULES)
    for name, file in files.items():
        assert file.endswith(".py"), (name, file)
        assert Path(file) == ROOT.joinpath(*name.split(".")).with_suffix(".py")
    assert build == "pure"


@needs_build
def test_the_compiled_build_is_what_loads_by_default() -> None:
    files, build, stderr = report(clean_env())
    for name, file in files.items():
        assert file.endswith(".so"), (name, file)
    assert build == "compiled"
    assert "RuntimeWarning" not in stderr


@needs_build
def test_a_stale_build_falls_back_to_pure_with_a_warning() -> None:
    files, build, stderr = report(clean_env(), STALE_BUILD)
    assert all(file.endswith(".py") for file in files.values()), files
    assert build == "pure"
    assert "built from another version of the source" in stderr


def test_stale_modules_compares_source_digests(tmp_path: Path) -> None:
    digests = {}
    for name in MODULES:
        source = tmp_path.joinpath(*name.split(".")).with_suffix(".py")
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(f"# {name}\n")
        digests[name] = hashlib.sha256(source.read_bytes()).hexdigest()
    assert stale_modules(digests, str(tmp_path)) == []
    edited = tmp_path.joinpath(*MODULES[1].split(".")).with_suffix(".py")
    edited.write_text("# edited\n")
    assert stale_modules(digests, str(tmp_path)) == [MODULES[1]]


@pytest.mark.parametrize("pure", ["1", ""])
def test_startup_line_says_compiled_or_pure(tmp_path: Path, pure: str) -> None:
    if not pure and not built():
        pytest.skip("the mypyc modules are not built")
    app = write_app(tmp_path)
    with roadrunner(app, cwd=tmp_path, env={PURE_ENV: pure}) as process:
        match = process.wait_for(r"running on http://127\.0\.0\.1:(\d+) \[h1; (\w+)\]")[0]
        assert match.group(2) == ("pure" if pure else "compiled")
        response = httpx.get(f"http://127.0.0.1:{match.group(1)}/", timeout=5)
        assert response.status_code == 200

