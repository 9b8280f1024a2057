"""Shared by the fuzz harnesses: an in-memory transport, one event loop, the app, the runner.

Each harness defines `check(data: bytes) -> None`, which raises AssertionError (or lets any
other exception out) when an input breaks an invariant; `main(check, instrumented)` hands it
to atheris, or, without atheris, replays the seed corpus once so the harness still runs.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).parent / "corpus"
PEER = ("127.0.0.1", 40000)
SOCK = ("127.0.0.1", 8000)

loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
loop_errors: list[dict[str, Any]] = []
loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))


class ErrorRecorder(logging.Handler):
    """Keeps roadrunner's ERROR records: for these harnesses' app and inputs, each is a bug."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


errors = ErrorRecorder()
logging.getLogger("roadrunner").addHandler(errors)
logging.getLogger("roadrunner").setLevel(logging.INFO)
logging.getLogger("roadrunner").propagate = False


def spin(passes: int = 8) -> None:
    """Run the loop for a few passes: app tasks start, read, answer."""

    async def passes_of_the_loop() -> None:
        for _ in range(passes):
            await asyncio.sleep(0)

    loop.run_until_complete(passes_of_the_loop())


def assert_no_errors() -> None:
    """Nothing went to the loop's exception handler or roadrunner's error log."""
    found = [str(c.get("exception") or c.get("message")) for c in loop_errors]
    found += [r.getMessage() + (f" {r.exc_info[1]!r}" if r.exc_info else "") for r in errors.records]
    loop_errors.clear()
    errors.records.clear()
    assert not found, f"errors logged: {found}"


class FakeTransport(asyncio.Transport):
    """A TCP transport in memory: keeps what is written; close / abort end the protocol."""

    def __init__(self, peer: Any = PEER, sock: Any = SOCK) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.aborted = False
        self.reading = True
        self.protocol: asyncio.BaseProtocol | None = None
        self.extra: dict[str, Any] = {"peername": peer, "sockname": sock}

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def write(self, data: Any) -> None:
        if not self.closed:
            self.out += data

    def writelines(self, list_of_data: Iterable[Any]) -> None:
        for data in list_of_data:
            self.write(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.end()

    def abort(self) -> None:
        self.aborted = True
        self.end()

    def end(self) -> None:
        if not self.closed:
            self.closed = True
            if self.protocol is not None:
                loop.call_soon(self.protocol.connection_lost, None)

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (0, 0)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


def connect(protocol: asyncio.Protocol, transport: FakeTransport | None = None) -> FakeTransport:
    transport = transport or FakeTransport()
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    return transport


def hang_up(transport: FakeTransport) -> None:
    """End the connection as the client would, and let every task of it finish."""
    transport.close()
    spin(4)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every request with what it saw; /echo reads the whole body first."""
    if scope["type"] != "http":
        return
    body = b""
    if scope["path"] == "/echo":
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
    answer = f"{scope['method']} {scope['path']} {len(body)}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})


def config(the_app: Any = app, **kwargs: Any) -> Any:
    from roadrunner.config import Config

    kwargs.setdefault("lifespan", "off")
    kwargs.setdefault("log_config", None)
    cfg = Config(the_app, **kwargs)
    cfg.load()
    logging.getLogger("roadrunner").setLevel(logging.INFO)
    return cfg


def seeds(name: str) -> list[bytes]:
    return [path.read_bytes() for path in sorted((CORPUS / name).iterdir()) if path.is_file()]


def main(name: str, check: Callable[[bytes], None], setup: Callable[[], None] | None = None) -> None:
    """Fuzz `check` with atheris (libFuzzer flags in argv); without atheris, replay the seeds."""
    if setup is not None:
        setup()
    try:
        import atheris
    except ImportError:
        print(f"fuzz/{name}: atheris is not installed for Python "
              f"{sys.version_info.major}.{sys.version_info.minor}; replaying the seed corpus only")
        for data in seeds(name):
            check(data)
        return

    def one_input(data: bytes) -> None:
        check(data)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


def instrumented() -> Any:
    """atheris.instrument_imports() for roadrunner and the protocol libraries, when present."""
    try:
        import atheris
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    include = ["roadrunner", "wsproto", "h11", "h2", "hpack"]  # not aioquic: 10x slower
    return atheris.instrument_imports(include=include)

