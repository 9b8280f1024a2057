"""One in-memory driver for both HTTP/1.1 connection classes, and how their verdicts compare.

Used by the parity test (tests/integration/test_h1_parser_parity.py) and the atheris harness
(tests/fuzz/fuzz_http1.py): the same bytes, cut at the same points, go to an
HttpToolsConnection and an H11Connection on a recording transport; `outcome` is what each made
of them (the requests its app was given, the statuses sent, whether it closed).

Normalisation: a blank line is appended to every input. h11 waits for a line's end before it
judges the line, where llhttp refuses at the first bad byte; with the line ended, both have to
give a verdict, so a parser refusing *earlier* is not a disagreement, refusing *otherwise* is.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from roadrunner.config import Config
from roadrunner.protocols.http1 import H11Connection, HttpToolsConnection
from roadrunner.server import ServerState

CONNECTIONS: dict[str, Any] = {"httptools": HttpToolsConnection, "h11": H11Connection}
STATUS = re.compile(rb"^HTTP/1\.1 (\d{3}) ", re.M)  # the app's bodies are b"ok"


async def placeholder(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Never called: `outcome` gives each connection a recording app of its own."""


def configs() -> dict[str, Config]:
    """A loaded Config per parser (no access log: formatting it costs per request)."""
    made = {name: Config(placeholder, http=name, lifespan="off", log_config=None, access_log=False)
            for name in CONNECTIONS}
    for config in made.values():
        config.load()
    return made


class RecordingTransport(asyncio.Transport):
    """An asyncio transport that keeps what was written and whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1234), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: Any) -> None:
        self.out += data

    def writelines(self, data: Any) -> None:
        for part in data:
            self.out += part

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0  # every write is taken at once

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def outcome(name: str, config: Config, data: bytes, cuts: list[int]) -> tuple[Any, ...]:
    """What parser `name` made of `data` cut at `cuts`: the requests its app saw (scope without
    "state", and body), the statuses sent and whether it closed. Asserts no task is left."""
    seen: list[tuple[dict[str, Any], bytes]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:  # a request refused in its body is not one the app was given
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.append(({k: v for k, v in scope.items() if k != "state"}, body))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    state = ServerState()
    connection = CONNECTIONS[name](config, state, {})
    connection.app = app
    transport = RecordingTransport()
    connection.connection_made(transport)
    # The client's head ends: a parser that would wait for more has to judge what it has.
    data += b"\r\n\r\n"
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        connection.data_received(data[start:end])
        await asyncio.sleep(0)
    for _ in range(20):
        await asyncio.sleep(0)
    statuses = STATUS.findall(bytes(transport.out))
    closed = transport.closed
    connection.connection_lost(None)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not state.tasks, f"{name}: tasks left after connection_lost"
    return seen, statuses, closed
