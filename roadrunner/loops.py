"""--loop: uvicorn 0.54's event loop choices and loop-factory import strings, and a runner."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from roadrunner.config import ConfigError
from roadrunner.importer import AppImportError, import_from_string


def get_loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """--loop as uvicorn 0.54: none (asyncio's default), auto, asyncio, uvloop, zuvloop, or a
    "module:attribute" loop factory."""
    if loop in ("none", "asyncio"):
        return None if loop == "none" else asyncio.SelectorEventLoop
    if loop in ("auto", "uvloop", "zuvloop"):
        try:
            module = importlib.import_module(loop.replace("auto", "uvloop"))
        except ImportError:
            if loop == "auto":
                return asyncio.SelectorEventLoop
            raise ConfigError(f"--loop {loop} requested but {loop} is not installed.") from None
        return module.new_event_loop  # type: ignore[no-any-return]
    try:
        return import_from_string(loop)  # type: ignore[no-any-return]
    except AppImportError as exc:
        raise ConfigError(f"Error loading custom loop setup function. {exc}") from None


def setup_event_loop(loop: str) -> None:
    """The event loop policy for callers that run their own loop (the gunicorn worker)."""
    factory = get_loop_factory(loop)
    if factory is None or factory is asyncio.SelectorEventLoop:
        return
    make = factory

    class Policy(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            return make()

    asyncio.set_event_loop_policy(Policy())


def asyncio_run(
    main: Coroutine[Any, Any, None], loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
) -> None:
    """asyncio.run with Python 3.12's loop_factory on 3.10 and 3.11 too."""
    if sys.version_info >= (3, 12):
        asyncio.run(main, loop_factory=loop_factory)
    elif sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(main)
    elif loop_factory is None:
        asyncio.run(main)
    else:  # Python 3.10: asyncio.run's steps, on the factory's loop
        loop = loop_factory()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main)
        finally:
            try:
                _cancel_all_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
