"""Access and default formatters."""

from __future__ import annotations

import logging

from roadrunner.logging import AccessFormatter, DefaultFormatter, escape_control


def record(msg: str, args: tuple[object, ...], level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("roadrunner.access", level, __file__, 1, msg, args, None)


def test_access_line_matches_uvicorn_format() -> None:
    formatter = AccessFormatter(fmt='%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False)
    line = formatter.format(record('%s - "%s %s HTTP/%s" %d', ("1.2.3.4:5", "GET", "/x?y=1", "1.1", 404)))
    assert line == 'INFO:     1.2.3.4:5 - "GET /x?y=1 HTTP/1.1" 404 Not Found'


def test_access_formatter_tolerates_other_records() -> None:
    formatter = AccessFormatter(fmt='%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False)
    line = formatter.format(record('%s - "WebSocket %s" %s', ("1.2.3.4:5", "/chat", "[accepted]")))
    assert "WebSocket /chat" in line


def test_colours_and_escaping() -> None:
    coloured = DefaultFormatter(fmt="%(levelprefix)s %(message)s", use_colors=True)
    assert "\x1b[32mINFO\x1b[0m" in coloured.format(record("hi", ()))
    assert escape_control("a\r\nb\x1b") == "a\\r\\nb\\x1b"
    assert escape_control("plain") == "plain"
