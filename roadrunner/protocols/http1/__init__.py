"""HTTP/1.1 connections: one framing core, two parsers (httptools fast path, h11 strict path).

`connection.H1Connection` owns what both parsers share; `httptools_parser.HttpToolsConnection`
and `h11_parser.H11Connection` turn bytes into its calls; `rules` holds the RFC 9112 rules and
response constants both use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from roadrunner.protocols.http1.connection import H1Connection
from roadrunner.protocols.http1.h11_parser import H11Connection, PlainReadsH11Connection
from roadrunner.protocols.http1.httptools_parser import (
    HttpToolsConnection,
    PlainReadsHttpToolsConnection,
    httptools,
)
from roadrunner.protocols.http1.rules import STATUS_LINES, RequestRejected

if TYPE_CHECKING:
    from roadrunner.config import Config

__all__ = [
    "H1Connection", "H11Connection", "HttpToolsConnection", "RequestRejected", "STATUS_LINES",
    "connection_class",
]


def connection_class(config: Config, plain_reads: bool = False) -> Callable[..., H1Connection]:
    """Pick the HTTP/1.1 implementation for --http; `plain_reads`: its variant that takes reads
    by data_received (tcp.reads_by_data_received)."""
    if config.http == "h11" or (config.http == "auto" and httptools is None):
        return PlainReadsH11Connection if plain_reads else H11Connection
    if config.http in ("auto", "httptools"):
        return PlainReadsHttpToolsConnection if plain_reads else HttpToolsConnection
    from roadrunner.config import import_from_string

    return import_from_string(config.http)  # type: ignore[no-any-return]
