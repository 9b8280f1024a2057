"""Exceptions the ASGI bridge raises into applications."""

from __future__ import annotations

import traceback


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


def release_frames(exc: BaseException) -> None:
    """Clear the locals of the finished frames `exc` (and its chain, and an exception group's
    members) went through, so what they held is freed now, not by the cyclic GC.

    An app that let a disconnect out often left its exception in a reference cycle (a task
    group keeps it, or a frame keeps it in a local): the app's body iterator, say Starlette's
    async generator, then stays suspended with its `finally` unrun until the collector runs,
    which on an idle server may be never. Frames still executing are skipped.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if current.__traceback__ is not None:
            traceback.clear_frames(current.__traceback__)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        members = getattr(current, "exceptions", None)  # an exception group's (3.11+, or anyio's backport)
        if isinstance(members, tuple):
            pending.extend(e for e in members if isinstance(e, BaseException))
