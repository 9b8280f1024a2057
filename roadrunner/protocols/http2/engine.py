"""The HTTP/2 engine interface under Http2Connection, and the choice of engine.

An engine owns framing, HPACK, stream states and flow control for one connection and reports
what arrived as h2's event objects. Two implement `H2Engine`: nghttp2 (`_nghttp2.Session`,
compiled) and the h2 library (`h2_engine.ServerH2Connection`). `--http2-engine auto` takes
nghttp2 when the extension module `roadrunner.protocols.http2._nghttp2` was built (it needs
libnghttp2-dev at install time).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any, Protocol

from h2.frame_buffer import CONTINUATION_BACKLOG

from roadrunner.protocols.http2.guards import HEADER_BOMB_FACTOR, guard_counters
from roadrunner.protocols.http2.h2_engine import new_h2_state
from roadrunner.protocols.http2.rules import Headers, local_settings

if TYPE_CHECKING:
    import h2.events

    from roadrunner.config import Config

logger = logging.getLogger("roadrunner.error")


class H2Engine(Protocol):
    """The subset of h2's `H2Connection` that Http2Connection uses, as both engines offer it.

    Errors are h2's exceptions (ProtocolError and its subclasses, StreamClosedError), events
    h2's event classes, error codes h2's ErrorCodes values.
    """

    @property
    def closed(self) -> bool:
        """A GOAWAY has arrived (or, on h2, was sent): no more frames go out."""

    @property
    def highest_inbound_stream_id(self) -> int: ...

    @property
    def max_outbound_frame_size(self) -> int: ...

    def initiate_connection(self) -> None:
        """Queue our SETTINGS (the server connection preface, RFC 9113 §3.4)."""

    def initiate_upgrade(self, settings: bytes, /) -> None:
        """RFC 7540 §3.2: apply the HTTP2-Settings payload (base64-decoded, RFC 7540 §3.2.1);
        stream 1 is the upgrading request, half-closed (remote). ProtocolError if invalid."""

    def increment_flow_control_window(self, increment: int, /) -> None:
        """Grow the connection's receive window (WINDOW_UPDATE on stream 0)."""

    def receive_data(self, data: bytes, /) -> list[h2.events.Event]: ...

    def settings_acknowledged(self) -> None:
        """The client acknowledged our SETTINGS (a SettingsAcknowledged event arrived)."""

    def send_headers(self, stream_id: int, headers: Headers, /, end_stream: bool = False) -> None:
        ...

    def send_data(self, stream_id: int, data: bytes, /, end_stream: bool = False) -> None: ...

    def end_stream(self, stream_id: int, /) -> None: ...

    def reset_stream(self, stream_id: int, error_code: int, /) -> None: ...

    def acknowledge_received_data(self, nbytes: int, stream_id: int, /) -> None:
        """The app consumed nbytes of stream_id's body: their window goes back to the client."""

    def local_flow_control_window(self, stream_id: int, /) -> int:
        """How many body bytes may be sent on stream_id now (stream and connection windows)."""

    def close_connection(self, error_code: int, /, *, last_stream_id: int | None = None) -> None:
        """Queue GOAWAY(error_code)."""

    def data_to_send(self) -> bytes:
        """The bytes queued for the socket since the last call."""


try:
    from roadrunner.protocols.http2 import _nghttp2  # type: ignore[attr-defined]

    IMPORT_ERROR = ""
except ImportError as exc:  # not built: no compiler or no libnghttp2-dev at install time
    _nghttp2 = None
    IMPORT_ERROR = (
        "roadrunner was installed without it: reinstall with a C compiler and libnghttp2-dev"
        if exc.name in (None, "roadrunner.protocols.http2", "roadrunner.protocols.http2._nghttp2")
        else str(exc)  # e.g. libnghttp2.so.14 missing at run time
    )


def nghttp2_missing() -> str:
    """Why the nghttp2 engine cannot be used ("" when it can)."""
    return IMPORT_ERROR if _nghttp2 is None else ""


def engine_name(config: Config) -> str:
    """The engine this configuration runs HTTP/2 on: "nghttp2" or "h2"."""
    choice = getattr(config, "http2_engine", "auto")
    if choice == "h2" or (choice == "auto" and _nghttp2 is None):
        return "h2"
    return "nghttp2"


# Each session holds its SETTINGS list and log method for its life: equal ones are shared (the
# last built), so an idle connection does not carry copies of its own.
SHARED: list[Any] = [[], None]


def new_nghttp2_state(
    config: Config, header_list_cap: int, counters: Counter[str], log: logging.Logger
) -> Any:
    """A server-side nghttp2 session carrying our settings, caps and guard counters."""
    assert _nghttp2 is not None
    settings = [(int(code), value) for code, value in local_settings(config)]
    if settings == SHARED[0]:
        settings = SHARED[0]
    else:
        SHARED[0] = settings
    log_info = SHARED[1]
    if log_info is None or log_info.__self__ is not log:
        log_info = SHARED[1] = log.info
    return _nghttp2.Session(
        settings,
        config.h2_max_header_block_size,
        CONTINUATION_BACKLOG,
        header_list_cap,
        config.h2_max_header_table_size,
        counters,
        log_info,
    )


def new_state(config: Config) -> H2Engine:
    """The HTTP/2 engine state of one connection, per --http2-engine."""
    if engine_name(config) == "nghttp2":
        return new_nghttp2_state(  # type: ignore[no-any-return]
            config, config.h2_max_header_list_size * HEADER_BOMB_FACTOR, guard_counters, logger
        )
    return new_h2_state(config)
