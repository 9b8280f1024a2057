"""The modules mypyc compiles, and the switch that loads their Python source instead.

setup.py compiles `MODULES` from their own typed source with mypyc when it can (mypy and a C
compiler at build time; docs/architecture.md, "Compiled modules"); the .py files stay the one
source and the fallback. Python's import system prefers an extension module to the .py beside
it, so `PureFinder`, put first on `sys.meta_path`, hands out the .py of every one of them:
- with `ROADRUNNER_PURE=1` (the documented switch: coverage, debugging, comparing the builds);
- when the extensions were built from another version of their source (an editable checkout
  edited after `make`), with a warning. Compiled modules of one mypyc group call each other
  natively, so it is all of them or none.

This module imports nothing of roadrunner: setup.py reads `MODULES` from it before building.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from types import ModuleType

# Compiled as one mypyc group: its shared library is the top-level module GROUP + "__mypyc".
MODULES = (
    "roadrunner.asgi.scope",
    "roadrunner.asgi.stream",
    "roadrunner.asgi.validation",
    "roadrunner.protocols.http1.connection",
    "roadrunner.protocols.http1.h11_parser",
    "roadrunner.protocols.http1.httptools_parser",
    "roadrunner.protocols.http1.rules",
    "roadrunner.protocols.http1.writer",
    "roadrunner.protocols.http2.connection",
    "roadrunner.protocols.http2.lifetime",
    "roadrunner.protocols.http2.rules",
    "roadrunner.protocols.http2.stream",
    "roadrunner.protocols.timer",
    "roadrunner.server_state",
)
GROUP = "roadrunner"
PURE_ENV = "ROADRUNNER_PURE"
# Written by setup.py after a successful mypyc build: the SHA-256 of each module's source.
BUILD_INFO = "roadrunner._compiled_sources"
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def source_path(module: str, root: str = PACKAGE_ROOT) -> str:
    return os.path.join(root, *module.split(".")) + ".py"


def source_digest(path: str) -> str:
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()


def stale_modules(built: Mapping[str, str], root: str = PACKAGE_ROOT) -> list[str]:
    """The modules whose source is no longer the one their extension was built from."""
    stale = []
    for module in MODULES:
        try:
            current = source_digest(source_path(module, root))
        except OSError:
            continue  # no source beside the extension: nothing to fall back to
        if built.get(module) != current:
            stale.append(module)
    return stale


class PureFinder(importlib.abc.MetaPathFinder):
    """Finds the .py source of the compiled modules, ahead of the extension beside it."""

    def __init__(self, modules: Sequence[str] = MODULES) -> None:
        self.modules = frozenset(modules)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.modules or not path:
            return None
        filename = fullname.rpartition(".")[2] + ".py"
        for entry in path:
            source = os.path.join(entry, filename)
            if os.path.isfile(source):
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def pure_requested(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(PURE_ENV, "") not in ("", "0")


def install(environ: Mapping[str, str] = os.environ) -> PureFinder | None:
    """Called first thing by roadrunner/__init__.py: put PureFinder in front when pure it is."""
    reason = None
    if pure_requested(environ):
        reason = f"{PURE_ENV} is set"
    else:
        try:
            built: Mapping[str, str] = importlib.import_module(BUILD_INFO).SOURCES
        except ImportError:
            return None  # never built with mypyc: the .py files are all there is
        stale = stale_modules(built)
        if stale:
            reason = "stale"
            warnings.warn(
                f"roadrunner: the compiled {', '.join(stale)} were built from another version of "
                "the source; running every compiled module as pure Python (rebuild: make, or "
                "pip install -e .)",
                RuntimeWarning,
                stacklevel=2,
            )
    if reason is None:
        return None
    for finder in sys.meta_path:
        if isinstance(finder, PureFinder):
            return finder
    finder = PureFinder()
    sys.meta_path.insert(0, finder)
    return finder


def build() -> str:
    """ "compiled" when the mypyc modules run as extensions, else "pure" (the startup line)."""
    kinds = set()
    for module in MODULES:
        spec = importlib.util.find_spec(module)
        kinds.add(isinstance(getattr(spec, "loader", None), importlib.machinery.ExtensionFileLoader))
    return "compiled" if kinds == {True} else "pure" if kinds == {False} else "partly compiled"
