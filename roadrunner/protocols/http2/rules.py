"""HTTP/2 request rules (RFC 9113 §8): field checks, hop-by-hop fields, our SETTINGS, the scope.

h2's own inbound header validation is off and nghttp2 runs with no_http_messaging: one pass
here (`build_scope`, `check_trailers`) checks a request's fields on both engines.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from h2.settings import SettingCodes

from roadrunner.asgi.scope import http_scope
from roadrunner.asgi.validation import CONNECTION_SPECIFIC

if TYPE_CHECKING:
    from roadrunner.config import Config
    from roadrunner.protocols.http2.connection import Http2Connection

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP: Final = CONNECTION_SPECIFIC  # RFC 9113 §8.2.2, in requests and responses
STATUS: Final = {status: str(status).encode() for status in range(100, 600)}

# -- request header checks (h2's own inbound validation is off: one pass here is cheaper) --------

# RFC 9113 §8.2.1: a field name is visible ASCII (0x21-0x7e) without uppercase letters, and has
# no ':' past the first byte (only pseudo-header names start with one, and those are checked
# against REQUEST_PSEUDO instead).
BAD_NAME: Final = re.compile(rb"[^\x21-\x39\x3b-\x40\x5b-\x7e]").search
# RFC 9113 §8.2.1: a field value has no NUL, CR or LF, and no leading or trailing SP / HTAB.
BAD_VALUE: Final = re.compile(rb"[\x00\n\r]|\A[ \t]|[ \t]\Z").search
# RFC 9113 §8.3.1 and RFC 8441 §4: the request pseudo-headers (:status is response-only).
REQUEST_PSEUDO: Final = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))
# Regular fields that need more than appending: §8.2.2 connection-specific fields and TE, the
# Host / :authority pair (§8.3.1), cookies to join (§8.2.3), and what the server reads itself.
SPECIAL_FIELDS: Final = HOP_BY_HOP | frozenset(
    (b"te", b"host", b"cookie", b"content-length", b"expect")
)


class Malformed(Exception):
    """A malformed request (RFC 9113 §8.1.1): a stream error of type PROTOCOL_ERROR."""


def check_trailers(headers: Headers) -> None:
    """Raise Malformed unless the trailer section is well formed (RFC 9113 §8.1, §8.2)."""
    for name, value in headers:
        if not name or name[0] == 58:  # b":"
            raise Malformed("pseudo-header or empty name in trailers")  # §8.1
        if BAD_NAME(name) or BAD_VALUE(value):
            raise Malformed(f"invalid trailer field {name!r}")  # §8.2.1
        if name in HOP_BY_HOP or (name == b"te" and value.lower() != b"trailers"):
            raise Malformed(f"connection-specific trailer field {name!r}")  # §8.2.2


def local_settings(config: Config) -> list[tuple[int, int]]:
    """Our SETTINGS (RFC 9113 §6.5.2), the same on both engines."""
    return [
        (SettingCodes.HEADER_TABLE_SIZE, config.h2_max_header_table_size),
        (SettingCodes.ENABLE_PUSH, 0),
        (SettingCodes.MAX_CONCURRENT_STREAMS, config.h2_max_concurrent_streams),
        (SettingCodes.INITIAL_WINDOW_SIZE, config.h2_initial_window_size),
        (SettingCodes.MAX_FRAME_SIZE, config.h2_max_frame_size),
        (SettingCodes.MAX_HEADER_LIST_SIZE, config.h2_max_header_list_size),
        # RFC 8441 §3: Extended CONNECT carries WebSocket unless --ws none.
        (SettingCodes.ENABLE_CONNECT_PROTOCOL, 0 if config.ws == "none" else 1),
    ]


def build_scope(
    connection: Http2Connection, headers: Headers
) -> tuple[dict[str, Any] | None, int, bool, bool]:
    """Check a request's fields and build its ASGI scope (same keys as HTTP/1.1), in one pass.

    Returns (scope, error status to answer instead, client accepts trailers, client expects
    100-continue); scope None is an Extended CONNECT (RFC 8441) for the WebSocket side.
    Raises Malformed for what RFC 9113 §8.1.1 makes a stream error.
    """
    pseudo: dict[bytes, bytes] = {}
    regular: Headers = []
    cookies: list[bytes] | None = None
    host: bytes | None = None
    content_length = b""
    size = 0
    wants_trailers = expect_continue = False
    for name, value in headers:
        size += len(name) + len(value) + 32  # RFC 9113 §6.5.2: the header list size
        if not name:
            raise Malformed("empty field name")  # §8.2.1
        if BAD_VALUE(value) is not None:
            raise Malformed(f"invalid value of {name!r}")  # §8.2.1
        if name[0] == 58:  # b":"
            # §8.3: known request pseudo-headers, each once, all before the regular fields.
            if regular or cookies is not None or name not in REQUEST_PSEUDO or name in pseudo:
                raise Malformed(f"invalid, repeated or misplaced pseudo-header {name!r}")
            pseudo[name] = value
            continue
        if BAD_NAME(name) is not None:
            raise Malformed(f"invalid field name {name!r}")  # §8.2.1: uppercase, controls
        if name in SPECIAL_FIELDS:
            if name in HOP_BY_HOP:
                raise Malformed(f"connection-specific field {name!r}")  # §8.2.2
            if name == b"te":
                if value.lower() != b"trailers":
                    raise Malformed("TE other than trailers")  # §8.2.2
                wants_trailers = True
            elif name == b"host":
                if host is not None:
                    raise Malformed("more than one Host")
                host = value
            elif name == b"cookie":
                # §8.2.3: split cookie fields are joined into one (after the others).
                if cookies is None:
                    cookies = []
                cookies.append(value)
                continue
            elif name == b"content-length":
                content_length = value
            elif name == b"expect":
                expect_continue = value.lower() == b"100-continue"
        regular.append((name, value))
    method = pseudo.get(b":method")
    path = pseudo.get(b":path")
    authority = pseudo.get(b":authority")
    if method is None:
        raise Malformed("no :method")  # §8.3.1
    if b":protocol" in pseudo:
        # RFC 8441 §4: :protocol only on CONNECT, which then carries :scheme and :path.
        if method != b"CONNECT" or path is None or b":scheme" not in pseudo:
            raise Malformed("invalid Extended CONNECT")
    elif method == b"CONNECT":
        if path is not None or b":scheme" in pseudo:
            raise Malformed("CONNECT with :scheme or :path")  # §8.5
    elif path is None or b":scheme" not in pseudo:
        raise Malformed("no :scheme or :path")  # §8.3.1
    if path is not None and not path:
        raise Malformed("empty :path")  # §8.3.1
    if authority is None:
        if host is None:
            raise Malformed("neither :authority nor Host")  # §8.3.1
    elif host is not None and host != authority:
        raise Malformed("Host differs from :authority")  # §8.3.1
    if cookies is not None:
        regular.append((b"cookie", b"; ".join(cookies)))
    if content_length and not content_length.isdigit():
        raise Malformed("invalid content-length")  # RFC 9110 §8.6 (h2 skips it on HEAD)
    if size > connection.config.h2_max_header_list_size:
        return {}, 431, False, False
    body_limit = connection.config.limit_request_body
    if content_length and body_limit is not None and int(content_length) > body_limit:
        return {}, 413, False, False
    if b":protocol" in pseudo and connection.config.ws != "none":
        return None, 0, False, False
    if method == b"CONNECT":
        return {}, 501, False, False  # no CONNECT tunnels (RFC 9113 §8.5) on this server
    if authority is not None and host is None:
        # RFC 9113 §8.3.1: :authority stands in for Host; ASGI apps read Host.
        regular.insert(0, (b"host", authority))
    assert path is not None
    raw_path, _, query = path.partition(b"?")
    scheme = pseudo[b":scheme"]
    return http_scope(
        asgi=connection.asgi_info, http_version="2", server=connection.server,
        client=connection.client, scheme=scheme.decode("latin-1"),
        method=method.decode("latin-1"), root_path=connection.root_path, raw_path=raw_path,
        query_string=query, headers=regular, app_state=connection.app_state,
    ), 0, wants_trailers, expect_continue
