from __future__ import annotations

import shutil

import pytest


def require_tool(name: str) -> str:
    """The path of a third-party client, or skip with a clear reason where it is absent."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        pytest.skip(f"{name} is not installed (make interop installs it)")
    return path
