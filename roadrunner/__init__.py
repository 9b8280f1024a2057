"""roadrunner: an ASGI server for HTTP/1.1, HTTP/2, HTTP/3 and WebSocket."""

from __future__ import annotations

from roadrunner.config import Config
from roadrunner.main import run
from roadrunner.server import Server

__version__ = "0.1.0"
__all__ = ["Config", "Server", "run", "__version__"]
