"""PROXY protocol v1 (text) and v2 (binary) header parsing, sans-IO.

Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt (cited below as "PP §").
A TCP load balancer prepends one header to the connection, before any TLS or HTTP bytes,
carrying the original client and server addresses.

`bytes_needed(buffer, mode)` tells a reader how many more bytes it may read without reading
past the header (the bytes after it may be a TLS ClientHello that must reach TLS intact);
`parse(buffer, mode)` turns a complete header into a `ProxyHeader`.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

V1_PREFIX = b"PROXY "
# PP §2.1: the longest v1 header ("PROXY TCP6 " + two full IPv6 + two ports + CRLF).
V1_MAX_LENGTH = 107
# PP §2.1: the shortest v1 header.
V1_MIN_LENGTH = len(b"PROXY UNKNOWN\r\n")
# PP §2.2: the 12-byte v2 signature, then ver_cmd, fam, 16-bit length.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER_LENGTH = 16
# PP §2.2: address block sizes for AF_INET, AF_INET6 and AF_UNIX.
V2_ADDRESS_LENGTHS = {1: 12, 2: 36, 3: 216}
V2_FAMILIES = {0: "UNSPEC", 1: "TCP4", 2: "TCP6", 3: "UNIX"}
UNIX_PATH_LENGTH = 108
MODES = ("v1", "v2", "auto")

Address = tuple[str, int] | tuple[str, int, int, int] | str


class ProxyProtocolError(ValueError):
    """The bytes are not a valid PROXY header of the accepted version(s)."""


@dataclass
class ProxyHeader:
    """One parsed PROXY header.

    `source` / `destination` are None when the receiver must keep the socket's own
    addresses: the LOCAL command, v1 UNKNOWN, and v2 AF_UNSPEC (PP §2.1, §2.2).
    """

    version: int
    command: str  # "PROXY" or "LOCAL"
    family: str  # "TCP4", "TCP6", "UNIX", "UNKNOWN" (v1) or "UNSPEC" (v2)
    source: Address | None = None
    destination: Address | None = None
    length: int = 0  # bytes the header occupied on the wire
    tlvs: list[tuple[int, bytes]] = field(default_factory=list)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"PROXY protocol mode must be one of {MODES}, got {mode!r}")


def detect_version(buffer: bytes, mode: str = "auto") -> int | None:
    """1 or 2 once the start of buffer identifies the version, None while it may still."""
    _check_mode(mode)
    for version, signature in ((1, V1_PREFIX), (2, V2_SIGNATURE)):
        if mode not in ("auto", f"v{version}"):
            continue
        if buffer.startswith(signature):
            return version
        if signature.startswith(buffer):
            return None  # a prefix of the signature: wait for more bytes
    expected = {"v1": "v1", "v2": "v2", "auto": "v1 or v2"}[mode]
    raise ProxyProtocolError(f"no PROXY protocol {expected} signature")


def bytes_needed(buffer: bytes, mode: str = "auto") -> int:
    """A lower bound on the bytes still missing from the header in buffer; 0 when complete.

    Reading at most this many bytes never consumes a byte past the header. Raises
    ProxyProtocolError as soon as buffer cannot be the start of a valid header.
    """
    version = detect_version(buffer, mode)
    if version is None:
        smallest = V1_MIN_LENGTH if mode in ("v1", "auto") else V2_HEADER_LENGTH
        return max(smallest - len(buffer), 1)
    if version == 2:
        if len(buffer) < V2_HEADER_LENGTH:
            return V2_HEADER_LENGTH - len(buffer)
        (length,) = struct.unpack_from("!H", buffer, 14)
        return max(V2_HEADER_LENGTH + length - len(buffer), 0)
    return _v1_bytes_needed(buffer)


def _v1_bytes_needed(buffer: bytes) -> int:
    end = buffer.find(b"\r\n")
    if end != -1:
        return 0
    if len(buffer) >= V1_MAX_LENGTH:
        raise ProxyProtocolError(f"PROXY v1 header longer than {V1_MAX_LENGTH} bytes")
    if len(buffer) < V1_MIN_LENGTH:
        return V1_MIN_LENGTH - len(buffer)
    if buffer.endswith(b"\r"):
        return 1
    line = buffer[len(V1_PREFIX):]
    if line.startswith((b"TCP4 ", b"TCP6 ")):
        # Four space-separated non-empty fields follow the family, then CRLF.
        fields = line[5:].split(b" ")
        spaces_left = 4 - len(fields)
        if spaces_left < 0:
            raise ProxyProtocolError("PROXY v1 header has too many fields")
        current_empty = fields[-1] == b""
        return 2 * spaces_left + (1 if current_empty else 0) + 2
    return 2


def parse(buffer: bytes, mode: str = "auto") -> ProxyHeader | None:
    """Parse the header at the start of buffer; None if it is not complete yet."""
    if bytes_needed(buffer, mode):
        return None
    if buffer.startswith(V1_PREFIX):
        return parse_v1(buffer[: buffer.index(b"\r\n") + 2])
    return parse_v2(buffer)


def parse_v1(line: bytes) -> ProxyHeader:
    """A complete v1 line, CRLF included (PP §2.1)."""
    if len(line) > V1_MAX_LENGTH:
        raise ProxyProtocolError(f"PROXY v1 header longer than {V1_MAX_LENGTH} bytes")
    if not line.startswith(V1_PREFIX) or not line.endswith(b"\r\n"):
        raise ProxyProtocolError("PROXY v1 header must start with 'PROXY ' and end with CRLF")
    try:
        text = line[:-2].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("PROXY v1 header is not US-ASCII") from None
    parts = text.split(" ")
    family = parts[1]
    if family == "UNKNOWN":
        # PP §2.1: the receiver must ignore anything after UNKNOWN and use the real addresses.
        return ProxyHeader(1, "PROXY", "UNKNOWN", length=len(line))
    if family not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"PROXY v1 unknown protocol family {family[:8]!r}")
    if len(parts) != 6:
        raise ProxyProtocolError("PROXY v1 header must have exactly 6 space-separated fields")
    source_ip = _v1_address(parts[2], family)
    destination_ip = _v1_address(parts[3], family)
    source_port = _v1_port(parts[4])
    destination_port = _v1_port(parts[5])
    return ProxyHeader(
        1, "PROXY", family,
        source=_address(source_ip, source_port, family),
        destination=_address(destination_ip, destination_port, family),
        length=len(line),
    )


def _v1_address(text: str, family: str) -> str:
    try:
        if "%" in text:
            raise ValueError("scope ids are not part of the v1 grammar")
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError(f"PROXY v1 invalid address {text[:46]!r}") from None
    if address.version != (4 if family == "TCP4" else 6):
        raise ProxyProtocolError(f"PROXY v1 address {text!r} does not match {family}")
    return str(address)


def _v1_port(text: str) -> int:
    # PP §2.1: a decimal integer 0..65535; leading zeroes are not allowed.
    if not text.isdigit() or not text.isascii() or len(text) > 5 or (text[0] == "0" and text != "0"):
        raise ProxyProtocolError(f"PROXY v1 invalid port {text[:8]!r}")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"PROXY v1 port {port} out of range")
    return port


def _address(ip: str, port: int, family: str) -> Address:
    # The same shapes socket.getpeername() returns for AF_INET / AF_INET6.
    return (ip, port) if family == "TCP4" else (ip, port, 0, 0)


def parse_v2(buffer: bytes) -> ProxyHeader:
    """A complete v2 header at the start of buffer (PP §2.2)."""
    if not buffer.startswith(V2_SIGNATURE):
        raise ProxyProtocolError("no PROXY protocol v2 signature")
    if len(buffer) < V2_HEADER_LENGTH:
        raise ProxyProtocolError("truncated PROXY v2 header")
    ver_cmd, fam, length = struct.unpack_from("!BBH", buffer, 12)
    total = V2_HEADER_LENGTH + length
    if len(buffer) < total:
        raise ProxyProtocolError("truncated PROXY v2 header")
    if ver_cmd >> 4 != 2:
        raise ProxyProtocolError(f"PROXY v2 unsupported version {ver_cmd >> 4}")
    command_code = ver_cmd & 0x0F
    if command_code not in (0, 1):
        raise ProxyProtocolError(f"PROXY v2 unsupported command {command_code}")
    family_code, transport_code = fam >> 4, fam & 0x0F
    if family_code not in V2_FAMILIES or transport_code > 2:
        raise ProxyProtocolError(f"PROXY v2 unsupported address family 0x{fam:02x}")
    command = "LOCAL" if command_code == 0 else "PROXY"
    family = V2_FAMILIES[family_code]
    block = buffer[V2_HEADER_LENGTH:total]
    address_length = V2_ADDRESS_LENGTHS.get(family_code, 0)
    if command == "PROXY" and len(block) < address_length:
        raise ProxyProtocolError(f"PROXY v2 address block too short for {family}")
    header = ProxyHeader(2, command, family, length=total)
    if command == "LOCAL" or family == "UNSPEC":
        # PP §2.2: LOCAL and AF_UNSPEC keep the connection's real addresses; the whole
        # address block is discarded unread.
        return header
    # PP §2.2: TLVs follow the addresses; unknown types are skipped, but must be well formed.
    header.tlvs = _parse_tlvs(block[address_length:])
    if transport_code == 0:
        return header  # UNSPEC transport: an unsupported protocol, keep the real addresses
    if family == "TCP4":
        src, dst, sport, dport = struct.unpack_from("!4s4sHH", block)
        header.source = (str(ipaddress.IPv4Address(src)), sport)
        header.destination = (str(ipaddress.IPv4Address(dst)), dport)
    elif family == "TCP6":
        src, dst, sport, dport = struct.unpack_from("!16s16sHH", block)
        header.source = (str(ipaddress.IPv6Address(src)), sport, 0, 0)
        header.destination = (str(ipaddress.IPv6Address(dst)), dport, 0, 0)
    else:
        header.source = _unix_path(block[:UNIX_PATH_LENGTH])
        header.destination = _unix_path(block[UNIX_PATH_LENGTH:address_length])
    return header


def _unix_path(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _parse_tlvs(data: bytes) -> list[tuple[int, bytes]]:
    tlvs: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        if offset + 3 > len(data):
            raise ProxyProtocolError("PROXY v2 truncated TLV")
        kind, length = struct.unpack_from("!BH", data, offset)
        offset += 3
        if offset + length > len(data):
            raise ProxyProtocolError("PROXY v2 TLV overruns the header")
        tlvs.append((kind, data[offset:offset + length]))
        offset += length
    return tlvs


def build_v1(source: tuple[str, int] | None, destination: tuple[str, int] | None) -> bytes:
    """A v1 header (for tests and tools); None addresses give "PROXY UNKNOWN"."""
    if source is None or destination is None:
        return b"PROXY UNKNOWN\r\n"
    family = "TCP6" if ":" in source[0] else "TCP4"
    return (
        f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n"
    ).encode("ascii")


def build_v2(
    source: tuple[str, int] | None,
    destination: tuple[str, int] | None,
    tlvs: list[tuple[int, bytes]] | None = None,
    local: bool = False,
) -> bytes:
    """A v2 header (for tests and tools); None addresses give AF_UNSPEC."""
    ver_cmd = 0x20 if local else 0x21
    if source is None or destination is None:
        fam, block = 0x00, b""
    elif ":" in source[0]:
        fam = 0x21
        block = (
            ipaddress.IPv6Address(source[0]).packed + ipaddress.IPv6Address(destination[0]).packed
            + struct.pack("!HH", source[1], destination[1])
        )
    else:
        fam = 0x11
        block = (
            ipaddress.IPv4Address(source[0]).packed + ipaddress.IPv4Address(destination[0]).packed
            + struct.pack("!HH", source[1], destination[1])
        )
    for kind, value in tlvs or []:
        block += struct.pack("!BH", kind, len(value)) + value
    return V2_SIGNATURE + struct.pack("!BBH", ver_cmd, fam, len(block)) + block
