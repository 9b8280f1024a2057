"""roadrunner.run(): the Python API behind the CLI (uvicorn.run's signature)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from roadrunner.config import AppImportError, Config, ConfigError
from roadrunner.server import STARTUP_FAILURE, Server

logger = logging.getLogger("roadrunner.error")


def run(app: Any, **kwargs: Any) -> None:
    """Serve `app` (an ASGI app or an "module:attribute" string) until told to stop."""
    app_dir = kwargs.get("app_dir")
    if app_dir is not None:
        sys.path.insert(0, app_dir)
    try:
        config = Config(app, **kwargs)
    except ConfigError as exc:
        logger.error("%s", exc)
        sys.exit(STARTUP_FAILURE)
    if (config.reload or config.workers > 1) and not isinstance(app, str):
        logger.warning("You must pass the application as an import string to enable 'reload' or 'workers'.")
        sys.exit(1)
    if config.use_subprocess:
        # A master process supervises the workers; it imports the app only with --preload.
        from roadrunner.supervisor import run_supervised

        try:
            code = run_supervised(config)
        finally:
            if config.uds and os.path.exists(config.uds):
                os.remove(config.uds)
        sys.exit(code)
    if config.limit_worker_memory:
        logger.warning("--limit-worker-memory needs a master process (--workers 2 or more); ignored.")
    if config.pid:
        with open(config.pid, "w") as file:
            file.write(f"{os.getpid()}\n")
    try:
        server = Server(config=config)
        try:
            server.run()
        except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C during shutdown
            pass
    except (ConfigError, AppImportError) as exc:
        if not isinstance(exc, AppImportError):
            logger.error("%s", exc)
        sys.exit(STARTUP_FAILURE)
    finally:
        if config.uds and os.path.exists(config.uds):
            os.remove(config.uds)
        if config.pid and os.path.exists(config.pid):
            os.remove(config.pid)
    if not server.started:
        sys.exit(STARTUP_FAILURE)
