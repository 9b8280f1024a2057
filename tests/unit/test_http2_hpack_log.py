"""hpack's per-field debug logging costs nothing while DEBUG is off, and still logs when on."""

from __future__ import annotations

import logging
from typing import Any

import hpack.hpack
import hpack.table

from roadrunner.config import Config
from roadrunner.protocols.http2.h2_engine import QuietLog, new_h2_state


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise AssertionError("not called")


def test_hpack_debug_is_quiet_only_while_debug_is_off() -> None:
    logger = logging.getLogger("hpack.hpack")
    config = Config(app=app)
    level = logger.level
    try:
        logger.setLevel(logging.INFO)
        new_h2_state(config)
        assert isinstance(hpack.hpack.log, QuietLog)
        assert isinstance(hpack.table.log, QuietLog)
        assert hpack.hpack.log.debug("ignored %s", 1) is None
        assert hpack.hpack.log.name == "hpack.hpack"  # everything else is the real logger's
        logger.setLevel(logging.DEBUG)
        new_h2_state(config)
        assert hpack.hpack.log is logger
    finally:
        logger.setLevel(level)
        new_h2_state(config)
