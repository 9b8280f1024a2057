"""Importing the application: "module:attribute" strings, ASGI2 detection and adapter."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from typing import Any

logger = logging.getLogger("roadrunner.error")


class AppImportError(Exception):
    """The application could not be imported."""


def import_from_string(import_str: Any) -> Any:
    """Import "module:attribute" (attribute may be dotted)."""
    if not isinstance(import_str, str):
        return import_str
    module_str, _, attrs_str = import_str.partition(":")
    if not module_str or not attrs_str:
        raise AppImportError(
            f'Import string "{import_str}" must be in format "<module>:<attribute>".'
        )
    try:
        module = importlib.import_module(module_str)
    except ModuleNotFoundError as exc:
        if exc.name != module_str:
            raise
        raise AppImportError(f'Could not import module "{module_str}".') from None
    instance: Any = module
    try:
        for attr in attrs_str.split("."):
            instance = getattr(instance, attr)
    except AttributeError:
        raise AppImportError(
            f'Attribute "{attrs_str}" not found in module "{module_str}".'
        ) from None
    return instance


def is_asgi3(app: Any) -> bool:
    if inspect.isclass(app):
        return hasattr(app, "__await__")
    if inspect.isfunction(app) or inspect.ismethod(app):
        return asyncio.iscoroutinefunction(app)
    call = getattr(app, "__call__", None)  # noqa: B004
    return asyncio.iscoroutinefunction(call)


class ASGI2Middleware:
    """Adapts an ASGI2 (double-callable) application to ASGI3."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        instance = self.app(scope)
        await instance(receive, send)


def load_app(app: Any) -> Any:
    """Import the app: one line for a missing module or attribute, else the traceback."""
    try:
        return import_from_string(app)
    except AppImportError as exc:
        logger.error("Error loading ASGI app. %s", exc)
        raise
    except Exception as exc:
        # The app's own import failed: where it failed is what the user needs to see.
        logger.error("Error loading ASGI app.", exc_info=True)
        raise AppImportError(f"Error loading ASGI app: {exc}") from exc


def call_factory(app: Any, factory: bool, name: Any) -> Any:
    """uvicorn's detection: call the app with no arguments; a TypeError means it is not a
    factory (unless --factory said it is), anything it returns is the app."""
    if not callable(app) and isinstance(name, str):
        logger.error("Error loading ASGI app. Attribute %r is not callable.", name)
        raise AppImportError(f'Attribute "{name}" is not callable.')
    try:
        made = app()
    except TypeError as exc:
        if factory:
            logger.error("Error loading ASGI app factory: %s", exc)
            raise AppImportError(f"Error loading ASGI app factory: {exc}") from exc
        return app
    if not factory:
        logger.warning(
            "ASGI app factory detected. Using it, but please consider setting the --factory flag explicitly."
        )
    return made


def wsgi_middleware(app: Any) -> Any:
    """--interface wsgi: a2wsgi's WSGIMiddleware (uvicorn uses it too when installed)."""
    try:
        from a2wsgi import WSGIMiddleware
    except ImportError:
        logger.error("--interface wsgi needs a2wsgi: pip install a2wsgi.")
        raise AppImportError("--interface wsgi needs a2wsgi: pip install a2wsgi.") from None
    return WSGIMiddleware(app)
