"""The HTTP/2 engine under Http2Connection: nghttp2 (compiled) or h2 (pure Python).

Both offer the subset of h2's `H2Connection` that Http2Connection uses and return h2's event
objects: receive_data() -> events, send_headers / send_data / end_stream / reset_stream,
acknowledge_received_data, local_flow_control_window, max_outbound_frame_size,
increment_flow_control_window, initiate_connection / initiate_upgrade_connection,
close_connection, data_to_send and `closed` (a GOAWAY has arrived). `--http2-engine auto` takes nghttp2 when the extension
module `roadrunner.protocols._nghttp2` was built (it needs libnghttp2-dev at install time).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from h2.exceptions import DenialOfServiceError
from h2.frame_buffer import CONTINUATION_BACKLOG
from h2.settings import SettingCodes

if TYPE_CHECKING:
    from roadrunner.config import Config


class HeaderBlockTooLarge(DenialOfServiceError):
    """The encoded header block outgrew --h2-max-header-block-size (GOAWAY ENHANCE_YOUR_CALM)."""


try:
    from roadrunner.protocols import _nghttp2  # type: ignore[attr-defined]

    IMPORT_ERROR = ""
except ImportError as exc:  # not built: no compiler or no libnghttp2-dev at install time
    _nghttp2 = None
    IMPORT_ERROR = (
        "roadrunner was installed without it: reinstall with a C compiler and libnghttp2-dev"
        if exc.name in (None, "roadrunner.protocols", "roadrunner.protocols._nghttp2")
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


def new_nghttp2_state(
    config: Config, header_list_cap: int, counters: Counter[str], log: logging.Logger
) -> Any:
    """A server-side nghttp2 session carrying our settings, caps and guard counters."""
    assert _nghttp2 is not None
    return _nghttp2.Session(
        [(int(code), value) for code, value in local_settings(config)],
        config.h2_max_header_block_size,
        CONTINUATION_BACKLOG,
        header_list_cap,
        config.h2_max_header_table_size,
        counters,
        log.info,
    )
