"""Logging: uvicorn-compatible formatters, default config, and access-log line formatting.

roadrunner logs on `roadrunner.error` / `roadrunner.access`. A logger of these that no log
config set up hands its records to its uvicorn-named twin (`uvicorn.error` / `uvicorn.access`),
so uvicorn log configs, and app code that configures uvicorn's loggers, work unchanged.
"""

from __future__ import annotations

import http
import json
import logging
import logging.config
import sys
import urllib.parse
from copy import copy
from typing import Any, Literal

TRACE_LOG_LEVEL = 5
LOG_LEVELS: dict[str, int] = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE_LOG_LEVEL,
}

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
        # uvicorn's loggers, as uvicorn sets them up: roadrunner's records reach them (see above).
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}

_ANSI = {"red": 31, "green": 32, "yellow": 33, "blue": 34, "cyan": 36, "bright_red": 91,
         "bright_white": 97}
_LEVEL_COLORS = {
    TRACE_LOG_LEVEL: "blue",
    logging.DEBUG: "cyan",
    logging.INFO: "green",
    logging.WARNING: "yellow",
    logging.ERROR: "red",
    logging.CRITICAL: "bright_red",
}
_STATUS_COLORS = {1: "bright_white", 2: "green", 3: "yellow", 4: "red", 5: "bright_red"}


def style(text: str, fg: str | None = None, bold: bool = False) -> str:
    """ANSI styling, as uvicorn's uvicorn._ansi.style."""
    prefix = f"\x1b[{_ANSI[fg]}m" if fg is not None else ""
    if bold:
        prefix += "\x1b[1m"
    return f"{prefix}{text}\x1b[0m"


class DefaultFormatter(logging.Formatter):
    """Adds %(levelprefix)s: the level name padded like uvicorn's, coloured on a TTY; with
    colours, a record's extra "color_message" replaces its message (as uvicorn's)."""

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
        fg = _LEVEL_COLORS.get(level_no)
        return style(level_name, fg=fg) if fg else level_name

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - stdlib name
        record = copy(record)
        levelname = record.levelname
        separator = " " * (8 - len(levelname))
        if self.use_colors:
            levelname = self.color_level_name(levelname, record.levelno)
            if "color_message" in record.__dict__:
                record.msg = record.__dict__["color_message"]
                record.__dict__["message"] = record.getMessage()
        record.__dict__["levelprefix"] = levelname + ":" + separator
        return super().formatMessage(record)


class AccessFormatter(DefaultFormatter):
    """Formats access records from args (client_addr, method, full_path, http_version, status)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - stdlib name
        if not isinstance(record.args, tuple) or len(record.args) != 5:
            # Not an HTTP request line (an app's own record, say): the message as logged.
            record = copy(record)
            record.__dict__.update(client_addr="-", request_line=record.getMessage(), status_code="")
            return super().formatMessage(record)
        record = copy(record)
        client_addr, method, full_path, http_version, status_code = record.args  # type: ignore[misc]
        code = int(status_code)  # type: ignore[arg-type]
        try:
            phrase = http.HTTPStatus(code).phrase
        except ValueError:
            phrase = ""
        status = f"{code} {phrase}"  # "599 " for an unknown status, as uvicorn
        request_line = f"{method} {full_path} HTTP/{http_version}"
        if self.use_colors:
            fg = _STATUS_COLORS.get(code // 100)
            status = style(status, fg=fg) if fg else status
            request_line = style(request_line, bold=True)
        record.__dict__.update(
            {"client_addr": client_addr, "request_line": request_line, "status_code": status}
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
    """uvicorn's get_path_with_query_string: the path (root_path included) percent-encoded,
    plus the raw query string, control characters escaped (log injection guard)."""
    path = urllib.parse.quote(scope["path"])
    query = scope.get("query_string", b"")
    if query:
        path += "?" + query.decode("latin-1")
    return escape_control(path)


# roadrunner's loggers and the uvicorn-named loggers their records go to when unconfigured.
LOGGER_TWINS = (
    ("roadrunner.error", "uvicorn.error"),
    ("roadrunner.access", "uvicorn.access"),
    ("roadrunner.asgi", "uvicorn.asgi"),
)


class ForwardHandler(logging.Handler):
    """Hands a record to a uvicorn-named logger, renamed, as if logged there."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = logging.getLogger(target)
        self.routed_level = logging.NOTSET  # the level route_loggers gave the source logger

    def handle(self, record: logging.LogRecord) -> bool:
        # No lock or filters of our own: the target logger's filters and handlers apply.
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        if self.target.isEnabledFor(record.levelno):
            record = copy(record)
            record.name = self.target.name
            self.target.handle(record)


def is_configured(logger: logging.Logger) -> bool:
    """Did a log config (or code) set up this logger or a parent below the root?"""
    current: logging.Logger | None = logger
    while current is not None and current is not logging.root:
        if current.handlers or current.level or current.filters or not current.propagate:
            return True
        current = current.parent
    return False


def unroute_loggers() -> None:
    """Undo route_loggers (before a log config is applied again), leaving what others set."""
    for own, _ in LOGGER_TWINS:
        logger = logging.getLogger(own)
        for handler in [h for h in logger.handlers if isinstance(h, ForwardHandler)]:
            logger.removeHandler(handler)
            if logger.level == handler.routed_level:
                logger.setLevel(logging.NOTSET)
            logger.propagate = True


def unconfigured_loggers() -> list[str]:
    return [own for own, _ in LOGGER_TWINS if not is_configured(logging.getLogger(own))]


def route_loggers(names: list[str]) -> None:
    """Forward these roadrunner loggers to their uvicorn twins, at the twin's level."""
    for own, twin in LOGGER_TWINS:
        if own in names:
            logger = logging.getLogger(own)
            handler = ForwardHandler(twin)
            handler.routed_level = logging.getLogger(twin).getEffectiveLevel()
            logger.handlers = [handler]
            logger.propagate = False
            logger.setLevel(handler.routed_level)


def configure_logging(
    log_config: dict[str, Any] | str | None,
    log_level: str | int | None,
    use_colors: bool | None,
    access_log: bool,
) -> None:
    """Apply --log-config (dict, .json, .yaml or .ini), --log-level and --access-log; then
    roadrunner's loggers that the config left alone log through uvicorn's (see above)."""
    logging.addLevelName(TRACE_LOG_LEVEL, "TRACE")
    unroute_loggers()
    if log_config is not None:
        if isinstance(log_config, dict):
            config = json.loads(json.dumps(log_config))
            if use_colors in (True, False):
                config["formatters"]["default"]["use_colors"] = use_colors
                config["formatters"]["access"]["use_colors"] = use_colors
            logging.config.dictConfig(config)
        elif isinstance(log_config, str) and log_config.endswith(".json"):
            with open(log_config) as file:
                logging.config.dictConfig(json.load(file))
        elif isinstance(log_config, str) and log_config.endswith((".yaml", ".yml")):
            import yaml

            with open(log_config) as file:
                logging.config.dictConfig(yaml.safe_load(file))
        else:
            logging.config.fileConfig(log_config, disable_existing_loggers=False)
    unconfigured = unconfigured_loggers()
    if log_level is not None:
        level = (
            LOG_LEVELS[log_level.lower()] if isinstance(log_level, str)
            else log_level
        )
        # uvicorn's names, as uvicorn; roadrunner's only where a config set them up (the
        # others take their twin's level, and an explicit level would claim them next time).
        own = [name for name, _ in LOGGER_TWINS if name not in unconfigured]
        for name in ("uvicorn.error", "uvicorn.access", "uvicorn.asgi", *own):
            logging.getLogger(name).setLevel(level)
    if access_log is False:
        # As uvicorn: --no-access-log also silences the uvicorn.access logger.
        logging.getLogger("uvicorn.access").handlers = []
        logging.getLogger("uvicorn.access").propagate = False
    route_loggers(unconfigured)
