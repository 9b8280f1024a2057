"""Exceptions the ASGI bridge raises into applications."""

from __future__ import annotations


class InvalidMessage(RuntimeError):
    """The application sent an ASGI message that breaks the spec."""


class ClientDisconnected(OSError):
    """ASGI spec 2.4+: send() after the client has gone raises a server-specific OSError."""


def caused_by_disconnect(exc: BaseException) -> bool:
    """True when `exc` is, or was raised while handling, a ClientDisconnected of ours.

    Frameworks turn the OSError into their own exception (Starlette: `except OSError: raise
    ClientDisconnect()`), so the chain is followed through __cause__ and __context__.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ClientDisconnected):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
