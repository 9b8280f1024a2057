"""Validation of the ASGI messages an application sends (shared by every protocol)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from roadrunner.asgi.errors import InvalidMessage

__all__ = ["CONNECTION_SPECIFIC", "InvalidMessage", "validate_headers", "validate_response_start"]

# RFC 9110 §5.1: field-name = token; §5.5: field values exclude CR, LF and NUL.
TOKEN_RE: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-zA-Z]+\Z")
INVALID_VALUE_RE: Final = re.compile(rb"[\x00\r\n]")

Headers = list[tuple[bytes, bytes]]

# RFC 9113 §8.2.2 and RFC 9114 §4.2: connection-specific fields are malformed in HTTP/2 and
# HTTP/3, in requests and responses alike; the protocols never emit them from an app's headers.
CONNECTION_SPECIFIC: Final = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)

# Header names already validated, mapped to their lower-case form; apps repeat the same few.
KNOWN_NAMES: Final[dict[bytes, bytes]] = {}
KNOWN_NAMES_LIMIT: Final = 2048
# Whole (name, value) tuples already validated, mapped to their lower-cased pair: most responses
# repeat the same Content-Type, Content-Length and friends. Cleared when full (bounded memory).
KNOWN_PAIRS: Final[dict[tuple[bytes, bytes], tuple[bytes, bytes]]] = {}
KNOWN_PAIRS_LIMIT: Final = 4096


def validate_headers(raw: Iterable[Any] | None, lower: bool = True) -> Headers:
    """Check names are tokens and values carry no CR/LF/NUL; return lower-cased (name, value)."""
    if raw is None:
        return []
    headers: Headers = []
    known = KNOWN_NAMES
    pairs = KNOWN_PAIRS
    for item in raw:
        if type(item) is tuple:
            try:
                pair = pairs.get(item)
            except TypeError:  # an unhashable member (bytearray...): the checks below answer
                pair = None
            if pair is not None:
                headers.append(pair if lower else item)
                continue
        try:
            name, value = item
        except (TypeError, ValueError):
            raise InvalidMessage(f"Invalid ASGI header {item!r}: expected a (name, value) pair.") from None
        if type(value) is not bytes and not isinstance(value, bytes):
            raise InvalidMessage(f"ASGI header names and values must be bytes, got {item!r}.")
        lowered = known.get(name) if type(name) is bytes else None
        if lowered is None:
            if not isinstance(name, bytes):
                raise InvalidMessage(f"ASGI header names and values must be bytes, got {item!r}.")
            if not TOKEN_RE.match(name):
                raise InvalidMessage(f"Invalid HTTP header name {name!r}.")
            lowered = name.lower()
            if len(known) < KNOWN_NAMES_LIMIT:
                known[name] = lowered
        if INVALID_VALUE_RE.search(value):
            raise InvalidMessage(f"Invalid HTTP header value {value!r} for {name!r}.")
        if type(item) is tuple and type(value) is bytes:
            if len(pairs) >= KNOWN_PAIRS_LIMIT:
                pairs.clear()
            pairs[item] = (lowered, value)
        headers.append((lowered if lower else name, value))
    return headers


def validate_response_start(message: dict[str, Any]) -> tuple[int, Headers, bool]:
    """Return (status, headers, trailers) of http.response.start or raise InvalidMessage."""
    status = message.get("status")
    if type(status) is not int or not 200 <= status <= 599:
        # 1xx are interim responses (RFC 9110 §15.2), not a final status an app may start with.
        raise InvalidMessage(f"Invalid HTTP status code {status!r} in response.")
    headers = validate_headers(message.get("headers"))
    return status, headers, bool(message.get("trailers", False))


def validate_response_body(message: dict[str, Any]) -> tuple[bytes, bool]:
    body = message.get("body", b"")
    if type(body) is not bytes:
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise InvalidMessage(f"'body' must be bytes, got {type(body).__name__}.")
        body = bytes(body)
    return body, bool(message.get("more_body", False))


def validate_trailers(message: dict[str, Any]) -> tuple[Headers, bool]:
    return validate_headers(message.get("headers")), bool(message.get("more_trailers", False))


def validate_early_hint(message: dict[str, Any]) -> list[bytes]:
    links = message.get("links", [])
    out = []
    for link in links:
        if not isinstance(link, bytes) or INVALID_VALUE_RE.search(link):
            raise InvalidMessage(f"Invalid early hint link {link!r}.")
        out.append(link)
    return out
