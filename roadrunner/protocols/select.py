"""Chooses the connection protocol for an accepted connection from Config.protocols."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from roadrunner.config import Config
from roadrunner.protocols.http1 import connection_class


def protocol_factory(
    config: Config,
    server_state: Any,
    app_state: dict[str, Any],
    loop: asyncio.AbstractEventLoop,
) -> Callable[[], asyncio.Protocol]:
    """A factory of connection protocols for one TCP listener."""
    h1 = connection_class(config)

    def make() -> asyncio.Protocol:
        return h1(config, server_state, app_state, loop)

    return make
