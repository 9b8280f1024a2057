"""CompressionMiddleware: gzip, brotli and zstd content-coding negotiated by Accept-Encoding.

brotli and zstd are used when their packages (`brotli`, `zstandard`) are installed. Streaming
responses are compressed chunk by chunk with a sync flush after each, so every chunk the app
sends reaches the client without waiting for the next one.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from roadrunner.middleware.headers import Headers, add_vary, split_list


def _optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:  # pragma: no cover - optional dependency
        return None


brotli = _optional("brotli")
zstandard = _optional("zstandard")

DEFAULT_MINIMUM_SIZE = 500
# Types worth compressing; everything else (images, video, archives, fonts) already is.
COMPRESSIBLE_PREFIXES = (
    b"text/", b"application/json", b"application/javascript", b"application/xml",
    b"application/xhtml+xml", b"application/x-ndjson", b"application/wasm",
    b"application/graphql", b"application/x-www-form-urlencoded", b"image/svg+xml",
    b"image/x-icon", b"font/ttf", b"font/otf",
)
COMPRESSIBLE_SUFFIXES = (b"+json", b"+xml")
# Server-sent events are long-lived and latency-bound; leave them alone like Starlette does.
EXCLUDED_TYPES = (b"text/event-stream",)
NEGOTIATION_CACHE_SIZE = 256


def available_encodings() -> tuple[str, ...]:
    """The content-codings this interpreter can produce, in default preference order."""
    found = []
    if zstandard is not None:
        found.append("zstd")
    if brotli is not None:
        found.append("br")
    found.append("gzip")
    return tuple(found)


def parse_accept_encoding(value: bytes) -> dict[bytes, float]:
    """coding -> qvalue (RFC 9110 §12.5.3); a malformed qvalue counts as 0."""
    out: dict[bytes, float] = {}
    for item in split_list(value):
        coding, _, params = item.partition(b";")
        q = 1.0
        for param in params.split(b";"):
            name, _, number = param.strip().partition(b"=")
            if name.strip().lower() == b"q":
                try:
                    q = float(number.strip())
                except ValueError:
                    q = 0.0
                q = min(max(q, 0.0), 1.0)
        out[coding.strip().lower()] = q
    return out


class Encoder:
    """One response's compressor: data in, compressed bytes out."""

    def __init__(self, encoding: str, level: int) -> None:
        self.encoding = encoding
        self.compress: Callable[[bytes], bytes]
        self.sync: Callable[[], bytes]
        self.finish: Callable[[], bytes]
        if encoding == "gzip":
            gz = zlib.compressobj(level, zlib.DEFLATED, 31)
            self.compress = gz.compress
            self.sync = lambda: gz.flush(zlib.Z_SYNC_FLUSH)
            self.finish = gz.flush
        elif encoding == "br":
            br = brotli.Compressor(quality=level)
            self.compress = br.process
            self.sync = br.flush
            self.finish = br.finish
        else:
            zs = zstandard.ZstdCompressor(level=level).compressobj()
            self.compress = zs.compress
            self.sync = lambda: zs.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            self.finish = zs.flush

    def chunk(self, data: bytes, final: bool) -> bytes:
        return self.compress(data) + (self.finish() if final else self.sync())


class CompressionMiddleware:
    """Compresses eligible HTTP responses with the best coding the client accepts."""

    def __init__(
        self,
        app: Any,
        minimum_size: int = DEFAULT_MINIMUM_SIZE,
        encodings: Sequence[str] | None = None,
        gzip_level: int = 6,
        brotli_quality: int = 4,
        zstd_level: int = 3,
    ) -> None:
        if minimum_size < 0:
            raise ValueError("Compression minimum_size must not be negative.")
        self.app = app
        self.minimum_size = minimum_size
        usable = available_encodings()
        wanted = list(encodings) if encodings is not None else list(usable)
        unknown = [name for name in wanted if name not in ("gzip", "br", "zstd")]
        if unknown:
            raise ValueError(f"Unknown content-coding {unknown[0]!r} (gzip, br, zstd).")
        self.encodings = tuple(name for name in wanted if name in usable)
        self.levels = {"gzip": gzip_level, "br": brotli_quality, "zstd": zstd_level}
        self.cache: dict[bytes, str | None] = {}

    def negotiate(self, accept_encoding: bytes | None) -> str | None:
        """The preferred coding with the highest qvalue > 0, or None (identity)."""
        if not accept_encoding:
            return None
        try:
            return self.cache[accept_encoding]
        except KeyError:
            pass
        accepted = parse_accept_encoding(accept_encoding)
        star = accepted.get(b"*", 0.0)
        best: str | None = None
        best_q = 0.0
        for name in self.encodings:  # ties go to the earlier (preferred) coding
            q = accepted.get(name.encode(), star)
            if q > best_q:
                best, best_q = name, q
        if len(self.cache) >= NEGOTIATION_CACHE_SIZE:
            self.cache.clear()
        self.cache[accept_encoding] = best
        return best

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.encodings:
            await self.app(scope, receive, send)
            return
        accept: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"accept-encoding":
                accept = value if accept is None else accept + b"," + value
        sender = _CompressSender(send, self.negotiate(accept), self, scope["method"] == "HEAD")
        await self.app(scope, receive, sender)


def compressible(content_type: bytes) -> bool:
    media = content_type.partition(b";")[0].strip().lower()
    if media.startswith(EXCLUDED_TYPES):
        return False
    return media.startswith(COMPRESSIBLE_PREFIXES) or media.endswith(COMPRESSIBLE_SUFFIXES)


def weak_etag(headers: Headers) -> Headers:
    """RFC 9110 §8.8.1: a strong validator must change with the coding, so weaken it."""
    return [
        (k, b"W/" + v if k.lower() == b"etag" and not v.startswith(b"W/") else v)
        for k, v in headers
    ]


class _CompressSender:
    """The send() of one request: decide at the first body chunk, then encode each chunk."""

    __slots__ = ("send", "encoding", "owner", "head", "mode", "start", "encoder")

    def __init__(
        self, send: Any, encoding: str | None, owner: CompressionMiddleware, head: bool
    ) -> None:
        self.send = send
        self.encoding = encoding
        self.owner = owner
        self.head = head
        self.mode = "pass"  # pass | hold | encode
        self.start: dict[str, Any] = {}
        self.encoder: Encoder | None = None

    async def __call__(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            await self.on_start(message)
        elif self.mode == "pass":
            await self.send(message)
        elif kind == "http.response.body":
            await self.on_body(message)
        else:
            if self.mode == "hold":  # pathsend and the like: send the response as it is
                self.mode = "pass"
                await self.send(self.start)
            await self.send(message)

    async def on_start(self, message: dict[str, Any]) -> None:
        status = message["status"]
        headers: Headers = message.get("headers") or []
        if status == 304:
            # RFC 9110 §15.4.5: a 304 carries the Vary the 200 would have had.
            out = add_vary(headers, b"Accept-Encoding")
            await self.send({**message, "headers": weak_etag(out) if self.encoding else out})
            return
        content_type = b""
        length: bytes | None = None
        for key, value in headers:
            name = key.lower()
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
            elif (
                (name == b"content-encoding" and value.strip().lower() != b"identity")
                or name == b"content-range"
                # RFC 9111 §5.2.2.6: no-transform forbids changing the content.
                or (name == b"cache-control" and b"no-transform" in value.lower())
            ):
                await self.send(message)
                return
        if status < 200 or status in (204, 206) or not compressible(content_type):
            await self.send(message)
            return
        small = length is not None and length.strip().isdigit() and int(length) < self.owner.minimum_size
        if small:
            await self.send(message)  # too small for anyone: the answer does not vary
            return
        if self.encoding is None or self.head:
            await self.send({**message, "headers": add_vary(headers, b"Accept-Encoding")})
            return
        self.start = message
        self.mode = "hold"

    async def on_body(self, message: dict[str, Any]) -> None:
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if self.mode == "hold":
            if not more and len(body) < self.owner.minimum_size:
                self.mode = "pass"
                await self.send(self.start)
                await self.send(message)
                return
            assert self.encoding is not None
            self.encoder = Encoder(self.encoding, self.owner.levels[self.encoding])
            headers = [
                (k, v) for k, v in self.start.get("headers") or []
                if k.lower() != b"content-length"
            ]
            headers = weak_etag(add_vary(headers, b"Accept-Encoding"))
            headers.append((b"content-encoding", self.encoding.encode()))
            data = self.encoder.chunk(body, final=not more)
            if not more:
                headers.append((b"content-length", str(len(data)).encode()))
            self.mode = "encode"
            await self.send({**self.start, "headers": headers})
            await self.send({"type": "http.response.body", "body": data, "more_body": more})
            return
        assert self.encoder is not None
        if body or not more:
            data = self.encoder.chunk(body, final=not more)
            await self.send({"type": "http.response.body", "body": data, "more_body": more})
