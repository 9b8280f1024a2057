"""ServerState: what all connections of one server share (registry, counters, default headers).

Compiled with mypyc (roadrunner/compiled.py) with the connections that read it on every
request: its attributes are then native fields, and `start_task` a native call.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final

from roadrunner.asgi.pace import PaceGuard

if TYPE_CHECKING:
    from roadrunner.config import Config

__all__ = ["H1_FRAMING_FIELDS", "REQUEST_TASK_NAME", "ServerState"]

# Response fields an HTTP/1.1 head cannot copy through as they are.
H1_FRAMING_FIELDS: Final = frozenset({b"content-length", b"transfer-encoding", b"connection"})
# Before 3.12 a Task given no name formats "Task-<n>" when it is created (about 1,500
# instructions, 2.5% of an HTTP/1.1 hello); 3.12 formats it only when asked. Request tasks
# on 3.10 and 3.11 share this name instead (docs/architecture.md, "Request tasks").
REQUEST_TASK_NAME: Final[str | None] = None if sys.version_info >= (3, 12) else "roadrunner-request"
# What a read may take at once: asyncio's and uvloop's own read size.
READ_BUFFER_SIZE: Final = 262144


class ServerState:
    """Shared by all connections of one server: registry, counters and default headers."""

    def __init__(self) -> None:
        self.total_requests = 0
        self.requests_done = 0
        self.connections: set[Any] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.default_headers: list[tuple[bytes, bytes]] = []
        # The same defaults pre-encoded for HTTP/1.1 heads, refreshed with the Date header.
        self.default_header_names: frozenset[bytes] = frozenset()
        self.default_header_block = b""
        # H1_FRAMING_FIELDS and the default header names: fields write_head looks at.
        self.h1_response_fields_of_interest: frozenset[bytes] = H1_FRAMING_FIELDS
        # HTTP/1.1 connections holding a response head back for its first body chunk: one
        # callback per loop pass flushes those still waiting (not one callback per response).
        self.held_heads: list[Any] = []
        # Connections are buffered protocols: every read of this server lands here first, and
        # leaves as a bytes object of the size read (see H1Connection.get_buffer).
        self.read_buffer = memoryview(bytearray(READ_BUFFER_SIZE))
        self.draining = False  # graceful shutdown has begun
        # --reset-contextvars: each request's app runs in a fresh contextvars.Context.
        self.reset_contextvars = False
        # Slow-client guards (asgi/pace.py), off until `configure_pace` (the Server does it).
        self.body_pace = PaceGuard("request body")
        self.send_pace = PaceGuard("response send")

    def configure_pace(self, config: Config) -> None:
        """--timeout-request-body / --min-request-body-rate, --timeout-send / --min-send-rate."""
        self.body_pace.configure(config.timeout_request_body, config.min_request_body_rate)
        self.send_pace.configure(config.timeout_send, config.min_send_rate)

    def start_task(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None], self_removing: bool = False
    ) -> asyncio.Task[None]:
        """Run one request's (or WebSocket's) app: counted, and tracked for graceful drain.

        A `self_removing` coroutine discards its task from `tasks` itself when it ends (saving a
        done-callback per request); whoever cancels such a task before it starts discards it.
        """
        task: asyncio.Task[None]
        if self.reset_contextvars:
            # As uvicorn, the opt-in workaround for https://github.com/python/cpython/issues/140947
            # (asyncio can leak context vars between tasks); hides context set in the lifespan.
            if sys.version_info >= (3, 11):
                task = loop.create_task(coro, context=contextvars.Context())
            else:
                task = contextvars.Context().run(loop.create_task, coro)
        elif loop.get_task_factory() is None:
            # What loop.create_task does with no task factory (asyncio's and uvloop's alike),
            # without the cost of its wrapper and, before 3.12, of a formatted name.
            task = asyncio.Task(coro, loop=loop, name=REQUEST_TASK_NAME)
        else:
            task = loop.create_task(coro)  # a factory the app installed (eager tasks, say)
        # An eager task (a factory the app installed) may have run to its end already, its
        # `finally` gone by: registering it then would keep it in `tasks` for good (shutdown
        # would wait on it, --limit-concurrency would count it).
        if not task.done():
            self.tasks.add(task)
            if not self_removing:
                task.add_done_callback(self.tasks.discard)
        self.total_requests += 1
        return task

    def flush_held_heads(self) -> None:
        # Swapped out and unregistered first: should a write raise, the connections after it in
        # the list can still register (ResponseWriter.hold_output) and get a callback scheduled.
        held, self.held_heads = self.held_heads, []
        for connection in held:
            connection.held_registered = False
        for connection in held:
            connection.flush_held()

    def set_default_headers(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.default_headers = headers
        self.default_header_names = frozenset(name for name, _ in headers)
        self.h1_response_fields_of_interest = self.default_header_names | H1_FRAMING_FIELDS
        self.default_header_block = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
