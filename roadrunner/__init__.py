"""roadrunner: an ASGI server for HTTP/1.1, HTTP/2, HTTP/3 and WebSocket."""

from __future__ import annotations

from roadrunner.compiled import install as _install_pure_finder

# Before any compiled module is imported: ROADRUNNER_PURE=1 (or a stale build) loads their .py.
_install_pure_finder()

from roadrunner.config import Config  # noqa: E402
from roadrunner.main import run  # noqa: E402
from roadrunner.server import Server  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Config", "Server", "run", "__version__"]
