"""RFC 9112 request rules and response constants shared by both HTTP/1.1 parsers."""

from __future__ import annotations

import http
import re
from typing import Final, TypeVar

from roadrunner.forwarding import FORWARDING_NAMES

Headers = list[tuple[bytes, bytes]]
K = TypeVar("K")
V = TypeVar("V")

# Request fields check_headers acts on; every other field costs it one set lookup.
REQUEST_FIELDS_OF_INTEREST: Final = frozenset(
    {b"host", b"content-length", b"transfer-encoding", b"connection", b"expect", b"te", b"upgrade"}
) | FORWARDING_NAMES


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


STATUS_LINES: Final = {status: _status_line(status) for status in range(100, 600)}
ERROR_BODIES: Final = {
    400: b"Invalid HTTP request received.",
    408: b"Request header read timed out.",
    413: b"Request body too large.",
    414: b"Request line too long.",
    431: b"Request header fields too large.",
    501: b"Unsupported Transfer-Encoding.",
    503: b"Service Unavailable",
    505: b"HTTP Version Not Supported.",
}
LINGER_SECONDS: Final = 2.0
# Body chunks at least this large are not joined to the head or chunk framing (a copy).
JOIN_LIMIT: Final = 65536
# Pipelined responses answered back to back are joined up to this many bytes: one TLS record's
# worth (RFC 8446 §5.1: 2^14), and each carried response copies what is already held once more.
CARRY_LIMIT: Final = 16384
# The chunk-size lines of the sizes seen (RFC 9112 §7.1: hex size, CRLF): an app's chunks mostly
# come in a few sizes, and a lookup costs a fraction of formatting one.
CHUNK_SIZE_LINES: Final[dict[int, bytes]] = {}
CHUNK_SIZE_LINES_LIMIT: Final = 1024
# Request field names as they came, mapped to their lower-case form (lower_name). Bounded.
FIELD_NAMES: Final[dict[bytes, bytes]] = {}
FIELD_NAMES_LIMIT: Final = 1024
# What llhttp refuses in a request head and h11 lets through: a control character other than
# HTAB (RFC 9110 §5.5), a bare CR or LF line end (RFC 9112 §2.2) and obs-fold (RFC 9112 §5.2).
INVALID_HEAD = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n|\n[ \t]")
# RFC 9112 §7.1.1: chunk-size [ chunk-ext ] CRLF. h11 takes ";" and anything after it; this is
# llhttp's reading: no BWS; empty names and values are taken, a final ";" is not.
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_VALUE = rb'(?:[-!#$%&\'*+.^_`|~0-9A-Za-z]+|"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*")?'
CHUNK_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:;(?:%s(?:=%s)?|=%s)?)*(?<!;)\r\n" % (_TOKEN, _VALUE, _VALUE))
MAX_CHUNK_LINE = 4096
SP_RUN = re.compile(b"  +")
NOT_IN_LINE = re.compile(rb"[\x00-\x0c\x0e-\x1f\x7f-\xff]")
REQUEST_LINE = re.compile(rb"([-!#$%&'*+.^_`|~0-9A-Za-z]+) +([^ ]+) +HTTP/([0-9]\.[0-9])\r\n")
# RFC 3986 §3.2: an authority is userinfo, host and port characters (llhttp refuses others).
AUTHORITY = re.compile(rb"[-A-Za-z0-9._~%!$&'()*+,;=:@\[\]]+")
ABSOLUTE_FORM = re.compile(rb"[A-Za-z]+://")  # llhttp: a scheme of letters
# h11 answers 501 for an empty Transfer-Encoding; llhttp 400, as RFC 9112 §6.3 wants (no chunked).
EMPTY_TE = re.compile(rb"\ntransfer-encoding:[ \t]*\r?\n", re.I)
# RFC 9112 §6.3: chunked not last in a request (a coding after it, or a later Transfer-Encoding
# field, lines between it and that field included) is a 400 (llhttp; h11 says 501).
TE_NOT_LAST = re.compile(
    rb"\ntransfer-encoding:(?:[^\r\n]*,)?[ \t]*chunked[ \t]*(?:,|\r?\n(?:[^\n]*\n)*?transfer-encoding[ \t]*:)", re.I
)
TE_FIELD = re.compile(rb"\ntransfer-encoding[ \t]*:", re.I)
CL_FIELD = re.compile(rb"\ncontent-length[ \t]*:", re.I)
# llhttp does not take "chunked" followed by HTAB as chunked (a 400 there); h11 strips it.
TE_TAB = re.compile(rb"\ntransfer-encoding:[^\r\n]*\t\r\n", re.I)
# RFC 9110 §6.5.1: framing fields are not allowed in a trailer section (llhttp refuses them).
TRAILER_FRAMING = re.compile(rb"(?:transfer-encoding|content-length)[ \t]*:", re.I)
# The methods llhttp knows; h11 takes any token, and refuses the others here so both agree.
KNOWN_METHODS: Final = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH SEARCH "
    b"UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY SUBSCRIBE "
    b"UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY".split()
)
# The end of a head as h11 finds it (it also takes bare LF line ends).
HEAD_END = re.compile(rb"\n\r?\n")


class RequestRejected(Exception):
    """A request the server answers itself with an error status, then closes."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def field_cost(name: bytes, value: bytes) -> int:
    """What one field costs against --limit-request-headers-size: name, value, ": " and CRLF."""
    return len(name) + len(value) + 4


def check_section_limits(fields: int, size: int, limit_fields: int, limit_size: int) -> None:
    """431 past --limit-request-fields or --limit-request-headers-size in one field section.

    The head and the trailer section (RFC 9112 §7.1.2) each have this budget of their own:
    trailer fields are sent and parsed as header fields are (RFC 9110 §6.5).
    """
    if fields > limit_fields:
        raise RequestRejected(431, "too many header fields")
    if size > limit_size:
        raise RequestRejected(431, "header block too large")


def valid_authority(target: bytes) -> bool:
    """Whether an absolute-form target's authority has only RFC 3986 §3.2 characters."""
    return AUTHORITY.fullmatch(target.partition(b"//")[2].split(b"/", 1)[0].split(b"?", 1)[0]) is not None


def target_refused(method: bytes, target: bytes) -> bool:
    """llhttp's first look at a request target (RFC 9112 §3.2), which comes before the version."""
    if target[:1] == b"/" or target == b"*" or method == b"CONNECT":
        return False
    return ABSOLUTE_FORM.match(target) is None or not valid_authority(target)


def served_version(method: bytes, version: str) -> str:
    """The HTTP/1.x version a request is served as; both parsers hand theirs over as "M.m"."""
    if version == "1.1" or version == "1.0":
        return version
    if method == b"PRI":
        raise RequestRejected(400, "HTTP/2 connection preface on an HTTP/1.1 connection")
    if version == "0.9":
        raise RequestRejected(400, "no HTTP version in the request line")  # llhttp's "0.9"
    if version[0] == "1":
        return "1.1"  # RFC 9112 §2.3: a higher minor version is served as the highest we know
    # RFC 9110 §15.6.6: a major version the server does not support is a 505.
    raise RequestRejected(505, f"unsupported HTTP version {version}")


def check_headers(
    headers: Headers, http_version: str
) -> tuple[int | None, bool, bool, bool, bool, bytes | None, bool]:
    """Apply RFC 9112 framing rules to a parsed head (the parsers enforce the size limits).

    Also tells whether a forwarding header is present, so that requests without one (most)
    skip the proxy-headers rewrite.
    """
    content_length: int | None = None
    transfer_encoding: bytes | None = None
    expect_continue = wants_trailers = forwarded = False
    keep_alive = http_version == "1.1"
    upgrade: bytes | None = None
    connection_tokens: list[bytes] | None = None
    hosts = 0
    for name, value in headers:
        if name not in REQUEST_FIELDS_OF_INTEREST:
            continue  # most fields: one set lookup
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            # RFC 9112 §6.3: differing or invalid Content-Length is unrecoverable; we also
            # refuse repeated ones so both parsers answer alike.
            if content_length is not None or not value.isdigit():
                raise RequestRejected(400, "invalid or repeated Content-Length")
            content_length = int(value)
        elif name == b"transfer-encoding":
            if transfer_encoding is not None:
                transfer_encoding += b", " + value
            else:
                transfer_encoding = value
        elif name == b"connection":
            tokens = [t.strip().lower() for t in value.split(b",")]
            connection_tokens = tokens if connection_tokens is None else connection_tokens + tokens
        elif name == b"expect":
            expect_continue = value.lower() == b"100-continue"
        elif name == b"te":
            wants_trailers = b"trailers" in value.lower()
        elif name == b"upgrade":
            upgrade = value.strip().lower()
        else:
            forwarded = True
    if transfer_encoding is not None:
        if content_length is not None:
            # RFC 9112 §6.1: both framings present is a smuggling attempt.
            raise RequestRejected(400, "both Transfer-Encoding and Content-Length")
        if transfer_encoding.strip().lower() != b"chunked":
            raise RequestRejected(501, "unsupported Transfer-Encoding")
    if hosts > 1 or (hosts == 0 and http_version == "1.1"):
        # RFC 9112 §3.2: one Host in an HTTP/1.1 request, never more than one in any request.
        raise RequestRejected(400, "missing or repeated Host header")
    if transfer_encoding is not None and http_version != "1.1":
        raise RequestRejected(501, "unsupported Transfer-Encoding")
    if connection_tokens is not None:
        if b"close" in connection_tokens:
            keep_alive = False
        elif b"keep-alive" in connection_tokens:
            keep_alive = True
    if upgrade is not None and (connection_tokens is None or b"upgrade" not in connection_tokens):
        upgrade = None
    return (
        content_length, transfer_encoding is not None, expect_continue, keep_alive,
        wants_trailers, upgrade, forwarded,
    )


def remember(cache: dict[K, V], limit: int, key: K, value: V) -> V:
    """Put `value` in a bounded cache (emptied when `limit` is reached) and return it."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value


def chunk_size_line(size: int) -> bytes:
    """The hex size and CRLF a chunk of `size` bytes starts with (RFC 9112 §7.1)."""
    line = CHUNK_SIZE_LINES.get(size)
    if line is None:
        return remember(CHUNK_SIZE_LINES, CHUNK_SIZE_LINES_LIMIT, size, b"%x\r\n" % size)
    return line


def lower_name(name: bytes) -> bytes:
    """A request field name as the scope carries it, lower-cased (ASGI), from FIELD_NAMES: the
    same object each time a client sends the same name, its hash already computed for the set
    and dict lookups that follow (a lookup costs less than bytes.lower and the hashing)."""
    lowered = FIELD_NAMES.get(name)
    if lowered is None:
        return remember(FIELD_NAMES, FIELD_NAMES_LIMIT, name, name.lower())
    return lowered
