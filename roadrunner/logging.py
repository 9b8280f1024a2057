"""Logging: uvicorn-compatible formatters, default config, and access-log line formatting."""

from __future__ import annotations

import http
import logging
import sys
from copy import copy
from typing import Any, Literal

TRACE_LOG_LEVEL = 5

LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {
            "()": "roadrunner.logging.DefaultFormatter",
            "fmt": "%(levelprefix)s %(message)s",
            "use_colors": None,
        },
        "access": {
            "()": "roadrunner.logging.AccessFormatter",
            "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
        },
    },
    "handlers": {
        "default": {
            "formatter": "default",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
        },
        "access": {
            "formatter": "access",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
        },
    },
    "loggers": {
        "roadrunner": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "roadrunner.error": {"level": "INFO"},
        "roadrunner.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}

_LEVEL_COLORS = {
    TRACE_LOG_LEVEL: "\x1b[34m",
    logging.DEBUG: "\x1b[36m",
    logging.INFO: "\x1b[32m",
    logging.WARNING: "\x1b[33m",
    logging.ERROR: "\x1b[31m",
    logging.CRITICAL: "\x1b[91m",
}
_RESET = "\x1b[0m"


class DefaultFormatter(logging.Formatter):
    """Adds %(levelprefix)s: the level name padded like uvicorn's, coloured on a TTY."""

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        use_colors: bool | None = None,
    ) -> None:
        self.use_colors = sys.stdout.isatty() if use_colors is None else use_colors
        super().__init__(fmt=fmt, datefmt=datefmt, style=style)

    def color_level_name(self, level_name: str, level_no: int) -> str:
        return f"{_LEVEL_COLORS.get(level_no, '')}{level_name}{_RESET}"

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - stdlib name
        record = copy(record)
        levelname = record.levelname
        separator = " " * (8 - len(levelname))
        if self.use_colors:
            levelname = self.color_level_name(levelname, record.levelno)
        record.__dict__["levelprefix"] = levelname + ":" + separator
        return super().formatMessage(record)


class AccessFormatter(DefaultFormatter):
    """Formats access records from args (client_addr, method, full_path, http_version, status)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - stdlib name
        if not isinstance(record.args, tuple) or len(record.args) != 5:
            # Not an HTTP request line (a WebSocket event, say): the message as logged.
            record = copy(record)
            record.__dict__.update(client_addr="-", request_line=record.getMessage(), status_code="")
            return super().formatMessage(record)
        record = copy(record)
        client_addr, method, full_path, http_version, status_code = record.args  # type: ignore[misc]
        try:
            phrase = http.HTTPStatus(int(status_code)).phrase  # type: ignore[arg-type]
        except ValueError:
            phrase = ""
        record.__dict__.update(
            {
                "client_addr": client_addr,
                "request_line": f"{method} {full_path} HTTP/{http_version}",
                "status_code": f"{status_code} {phrase}".rstrip(),
            }
        )
        return super().formatMessage(record)


def escape_control(text: str) -> str:
    """Escape control characters so a client cannot forge log lines (log injection)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def format_client(client: tuple[str, int] | None) -> str:
    if not client:
        return "-"
    return f"{client[0]}:{client[1]}"


def request_target(scope: dict[str, Any]) -> str:
    """Path plus query string as the client sent it, control characters escaped."""
    path = scope.get("root_path", "") + scope["path"]
    query = scope.get("query_string", b"")
    if query:
        path += "?" + query.decode("latin-1")
    return escape_control(path)
