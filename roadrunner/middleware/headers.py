"""Response-header helpers shared by the edge middleware: lookup, Vary merging, list parsing."""

from __future__ import annotations

from collections.abc import Iterable

Headers = list[tuple[bytes, bytes]]


def get_header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of a (lower-case) header name, or None."""
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def header_names(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """The set of lower-cased names present."""
    return {key.lower() for key, _ in headers}


def split_list(value: bytes) -> list[bytes]:
    """A comma-separated list field (RFC 9110 §5.6.1), trimmed, empty members dropped."""
    return [item.strip() for item in value.split(b",") if item.strip()]


def add_vary(headers: Headers, *tokens: bytes) -> Headers:
    """A copy of headers whose Vary lists every token (RFC 9110 §12.5.5); '*' absorbs all."""
    out: Headers = []
    present: set[bytes] = set()
    index = -1
    for key, value in headers:
        if key.lower() == b"vary":
            if index < 0:
                index = len(out)
                out.append((b"vary", value))
            else:  # fold repeated Vary fields into the first one
                out[index] = (b"vary", out[index][1] + b", " + value)
            continue
        out.append((key, value))
    if index >= 0:
        present = {item.lower() for item in split_list(out[index][1])}
        if b"*" in present:
            return out
    missing = [token for token in tokens if token.lower() not in present]
    if not missing:
        return out
    if index < 0:
        out.append((b"vary", b", ".join(missing)))
    else:
        current = out[index][1].strip()
        joined = b", ".join(missing)
        out[index] = (b"vary", current + b", " + joined if current else joined)
    return out
