"""ETagMiddleware: strong validators derived from the body, and 304 for a matching If-None-Match.

Only GET/HEAD 200 responses are considered (RFC 9110 §13.2.1: a 304 answers a request that
would otherwise have been a 200). A body is buffered up to `max_size`; past that it streams
through untouched. An ETag the app set is kept and compared without buffering anything.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from roadrunner.middleware.headers import Headers, get_header

DEFAULT_MAX_SIZE = 1024 * 1024
# RFC 9110 §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc may include ",".
ENTITY_TAG = re.compile(rb'(?:W/)?"[^"]*"')
# RFC 9110 §15.4.5: a 304 carries the validators and cache metadata the 200 would have had.
NOT_MODIFIED_KEEP = frozenset(
    {b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary",
     b"last-modified", b"set-cookie"}
)
NEVER_BUFFER_TYPES = (b"text/event-stream",)


def opaque(tag: bytes) -> bytes:
    """The opaque-tag of an entity-tag, for weak comparison (RFC 9110 §8.8.3.2)."""
    tag = tag.strip()
    return tag[2:] if tag.startswith(b"W/") else tag


def none_match(if_none_match: bytes, etag: bytes) -> bool:
    """True when If-None-Match lists the ETag under weak comparison, or is '*' (§13.1.2)."""
    if if_none_match.strip() == b"*":
        return True
    wanted = opaque(etag)
    return any(opaque(tag) == wanted for tag in ENTITY_TAG.findall(if_none_match))


def body_etag(body: bytes) -> bytes:
    return b'"' + hashlib.blake2b(body, digest_size=16).hexdigest().encode() + b'"'


class ETagMiddleware:
    """Adds an ETag to complete GET/HEAD 200 bodies up to max_size; answers 304 on a match."""

    def __init__(self, app: Any, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if max_size < 0:
            raise ValueError("ETag max_size must not be negative.")
        self.app = app
        self.max_size = max_size

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        if_none_match: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value if if_none_match is None else if_none_match + b"," + value
        await self.app(scope, receive, _ETagSender(send, if_none_match, self.max_size,
                                                    scope["method"] == "HEAD"))


class _ETagSender:
    """The send() of one request: pass, buffer, or swallow after a 304."""

    __slots__ = ("send", "if_none_match", "max_size", "head", "mode", "start", "chunks", "size")

    def __init__(self, send: Any, if_none_match: bytes | None, max_size: int, head: bool) -> None:
        self.send = send
        self.if_none_match = if_none_match
        self.max_size = max_size
        self.head = head
        self.mode = "pass"  # pass | buffer | drop
        self.start: dict[str, Any] = {}
        self.chunks: list[bytes] = []
        self.size = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            await self.on_start(message)
        elif self.mode == "pass":
            await self.send(message)
        elif self.mode == "drop":
            return
        elif kind == "http.response.body":
            await self.on_body(message)
        else:  # pathsend or anything else: give up buffering, keep message order
            await self.flush(more_body=True)
            await self.send(message)

    async def on_start(self, message: dict[str, Any]) -> None:
        headers = message.get("headers") or []
        if message["status"] != 200 or message.get("trailers"):
            await self.send(message)
            return
        etag = get_header(headers, b"etag")
        if etag is not None:
            if self.if_none_match is not None and none_match(self.if_none_match, etag):
                await self.not_modified(headers)
                self.mode = "drop"
            else:
                await self.send(message)
            return
        length = get_header(headers, b"content-length")
        content_type = get_header(headers, b"content-type") or b""
        if (length is not None and length.isdigit() and int(length) > self.max_size) or (
            content_type.startswith(NEVER_BUFFER_TYPES)
        ):
            await self.send(message)
            return
        self.start = message
        self.mode = "buffer"

    async def on_body(self, message: dict[str, Any]) -> None:
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        if chunk:
            self.chunks.append(chunk)
            self.size += len(chunk)
        if self.size > self.max_size:
            await self.flush(more_body=more)
            return
        if more:
            return
        body = b"".join(self.chunks)
        headers = self.start.get("headers") or []
        length = get_header(headers, b"content-length")
        if self.head and length is not None and length.strip() != str(len(body)).encode():
            # A HEAD response without its body: nothing to derive the tag from.
            await self.flush(more_body=False)
            return
        etag = body_etag(body)
        if self.if_none_match is not None and none_match(self.if_none_match, etag):
            await self.not_modified([*headers, (b"etag", etag)])
            self.mode = "drop"
            return
        self.mode = "pass"
        await self.send({**self.start, "headers": [*headers, (b"etag", etag)]})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    async def flush(self, more_body: bool) -> None:
        """Send the held start and buffered body unchanged, then pass everything through."""
        self.mode = "pass"
        await self.send(self.start)
        body = b"".join(self.chunks)
        self.chunks = []
        if body or not more_body:
            await self.send({"type": "http.response.body", "body": body, "more_body": more_body})

    async def not_modified(self, headers: Headers) -> None:
        kept = [(k, v) for k, v in headers if k.lower() in NOT_MODIFIED_KEEP]
        await self.send({"type": "http.response.start", "status": 304, "headers": kept})
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})
