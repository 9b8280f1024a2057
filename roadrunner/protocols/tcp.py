"""TCP socket details the connection protocols share: the peer's addresses, the kernel's send
queue, a reset, and how reads reach a protocol."""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
from typing import Protocol

# SO_LINGER on with a zero timeout: close() sends RST and discards the send queue at once.
LINGER_RESET = struct.pack("ii", 1, 0)
# Bytes the kernel holds that the peer has not acknowledged: Linux SIOCOUTQ (== TIOCOUTQ, see
# tcp(7)), macOS SO_NWRITE. Elsewhere the kernel's share is not seen (counted as taken).
if sys.platform.startswith("linux"):
    import fcntl
    import termios

    SIOCOUTQ: int | None = termios.TIOCOUTQ
else:
    SIOCOUTQ = None
SO_NWRITE = 0x1024 if sys.platform == "darwin" else None

Address = tuple[str, int]


class ConnectionProtocol(Protocol):
    """What every connection protocol here offers, buffered or not: it takes bytes by
    `data_received` too (a protocol handing a connection over replays what it read)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...

    def data_received(self, data: bytes) -> None: ...

    def eof_received(self) -> bool | None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...


def reads_by_data_received(is_tls: bool, loop: asyncio.AbstractEventLoop) -> bool:
    """Whether a listener's connections take reads by `data_received` rather than as buffered
    protocols (asyncio.BufferedProtocol, reading into ServerState.read_buffer).

    asyncio's and uvloop's TLS layers read each record with SSLObject.read(262144), and asyncio's
    plaintext transport with sock.recv(262144): CPython allocates the whole size, glibc serves
    that with mmap, shrinks it with mremap and frees it with munmap, three system calls and a
    page fault per read (strace: 4,000 of each for 4,000 TLS requests). A buffered protocol lends
    its buffer instead. uvloop's plaintext transport alone reads into a loop-wide buffer of its
    own and hands over a bytes object of the size read: there one call per read is cheaper.
    """
    return not is_tls and type(loop).__module__.split(".")[0] == "uvloop"


def transport_addresses(transport: asyncio.BaseTransport) -> tuple[Address | None, Address | None, str]:
    """The ASGI scope's `client`, `server` and `scheme` of an accepted connection (None for a
    unix socket's; through a PROXY protocol header, what the header says)."""
    client = shared_address(transport.get_extra_info("peername"))
    server = shared_address(transport.get_extra_info("sockname"))
    return client, server, "https" if transport.get_extra_info("sslcontext") else "http"


def describe_peer(client: Address | None) -> str:
    """The client as a log line names it."""
    return f"{client[0]}:{client[1]}" if client else "unix socket"


# (host, port) tuples and host strings seen, so that connections share them instead of each
# holding its own copies (an idle connection keeps both): bounded, cleared when full.
ADDRESSES: dict[object, object] = {}
ADDRESSES_LIMIT = 4096


def shared_address(address: object) -> tuple[str, int] | None:
    """A socket address as the ASGI scope gives it, (host, port), one object per value."""
    if not isinstance(address, tuple):
        return None  # a Unix socket
    host: str = address[0]
    pair: tuple[str, int] = (ADDRESSES.get(host, host), address[1])  # type: ignore[assignment]
    known = ADDRESSES.get(pair)
    if known is not None:
        return known  # type: ignore[return-value]
    if len(ADDRESSES) >= ADDRESSES_LIMIT:
        ADDRESSES.clear()
    ADDRESSES[host] = pair[0]
    ADDRESSES[pair] = pair
    return pair


def kernel_unacked(transport: asyncio.BaseTransport) -> int:
    """Bytes written to the socket that the peer has not acknowledged yet (0 if unknown)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        if SIOCOUTQ is not None:
            return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), SIOCOUTQ, b"\0\0\0\0"))[0])
        if SO_NWRITE is not None:
            return int(sock.getsockopt(socket.SOL_SOCKET, SO_NWRITE))
    except (OSError, ValueError):  # closed meanwhile, or not a TCP socket
        pass
    return 0


def send_wait(transport: asyncio.WriteTransport, written: int) -> tuple[bool, int] | None:
    """The response-send guard's probe for a TCP connection (asgi/pace.py).

    Waiting while the transport holds bytes back (the kernel's buffer is full: the client is
    not keeping up); none held, nothing to judge. Moved: what was written less what the
    transport and the kernel still hold.
    """
    buffered = transport.get_write_buffer_size()
    if not buffered:
        return None
    return True, written - buffered - kernel_unacked(transport)


def reset_transport(transport: asyncio.Transport) -> None:
    """Abort a connection whose client stopped taking bytes.

    A plain close would leave the kernel holding the unsent response for a client that may
    never read it (an orphaned socket, retried for minutes); a reset frees it at once, as
    nginx's `reset_timedout_connection` does.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        except (OSError, AttributeError, TypeError):  # not a TCP socket, or no longer open
            pass
    transport.abort()
