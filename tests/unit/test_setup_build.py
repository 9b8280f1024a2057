"""setup.py's optional build: a failed compile installs without the module, with a warning that
says why (no compiler at all, or the compiler failed: libnghttp2-dev's headers missing)."""

from __future__ import annotations

import runpy
import shutil
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from setuptools import Distribution, Extension
from setuptools.errors import CompileError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def setup_py(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """setup.py's namespace: not run as __main__, it does not call setup() (pip's backend does)."""
    # setup.py reads roadrunner/compiled.py relative to the current directory, as pip runs it.
    monkeypatch.chdir(ROOT)
    return runpy.run_path(str(ROOT / "setup.py"), run_name="roadrunner_setup")


def build(setup_py: dict[str, Any], tmp_path: Path, source: str, name: str) -> None:
    """Runs setup.py's build_ext on one extension built from `source`, in tmp_path."""
    src = tmp_path / "ext.c"
    src.write_text(source)
    dist = Distribution({"name": "roadrunner-test", "ext_modules": [Extension(name, [str(src)])]})
    command = setup_py["OptionalBuildExt"](dist)
    command.build_lib = str(tmp_path / "lib")
    command.build_temp = str(tmp_path / "temp")
    command.ensure_finalized()
    command.run()
    assert command.failed == {name}
    assert not list((tmp_path / "lib").rglob("*.so"))


def test_no_compiler_names_the_missing_compiler(
    setup_py: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    missing = str(tmp_path / "no-such-cc")
    monkeypatch.setenv("CC", missing)  # sysconfig's CC, as setuptools spawns it
    build(setup_py, tmp_path, "int x;\n", setup_py["NGHTTP2"])
    warning = [line for line in capfd.readouterr().err.splitlines() if line.startswith("WARNING")]
    assert len(warning) == 1
    assert "nghttp2 HTTP/2 engine was not built (the C compiler could not be run:" in warning[0]
    assert missing in warning[0]
    assert "see the compiler's message above" not in warning[0]  # there is none


@pytest.mark.skipif(
    shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]) is None,
    reason="no C compiler",
)
def test_missing_header_points_at_the_compiler_message(
    setup_py: dict[str, Any], tmp_path: Path, capfd: pytest.CaptureFixture[str],
) -> None:
    # As without libnghttp2-dev: the #include fails, the compiler says so first.
    build(setup_py, tmp_path, '#include "roadrunner-test-missing/nghttp2.h"\n', setup_py["NGHTTP2"])
    err = capfd.readouterr().err
    assert "roadrunner-test-missing/nghttp2.h" in err  # the compiler's own message
    warning = [line for line in err.splitlines() if line.startswith("WARNING")]
    assert len(warning) == 1
    assert "nghttp2 HTTP/2 engine was not built (" in warning[0]
    assert "message above)" in warning[0]
    assert "-Wall" not in warning[0]  # one short line: not the whole command


def test_a_failed_compiler_run_is_reported_by_its_status(setup_py: dict[str, Any]) -> None:
    # setuptools >= 77 (the build requirement) raises CompileError(CalledProcessError), whose
    # text is the whole command line; older ones a DistutilsExecError naming the compiler.
    command = ["gcc", "-Wall", "-c", "roadrunner/protocols/http2/_nghttp2.c"]
    try:
        try:
            raise subprocess.CalledProcessError(1, command)
        except subprocess.CalledProcessError as exc:
            raise CompileError(exc)  # noqa: B904 (as setuptools raises it: the cause is __context__)
    except CompileError as exc:
        reason = setup_py["failure_reason"](exc)
    assert reason == "the compiler exited with status 1, see its message above"


def test_a_failed_mypyc_module_says_why(
    setup_py: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    missing = str(tmp_path / "no-such-cc")
    monkeypatch.setenv("CC", missing)
    build(setup_py, tmp_path, "int x;\n", "roadrunner.asgi.scope")
    warning = [line for line in capfd.readouterr().err.splitlines() if line.startswith("WARNING")]
    assert len(warning) == 1
    assert "mypyc-compiled modules were not built (the C compiler could not be run:" in warning[0]
    assert missing in warning[0]

