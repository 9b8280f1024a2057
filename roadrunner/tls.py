"""The TLS object the event loop's TLS layer drives, without a Python frame per record.

asyncio's and uvloop's TLS layers (asyncio.sslproto, uvloop/sslproto.pyx) call `read`, `write`
and `pending` of the `ssl.SSLObject` that `SSLContext.wrap_bio` returns, several times a
request; each is a Python method that only calls the C object's method of the same name.
`SSLContext.sslobject_class` is the documented hook for another class: `DirectSSLObject` binds
the C methods on the instance, so a call goes straight to C (about 2,000 instructions a TLS
request; bench.callgrind --like h1_tls). The C methods take the same positional arguments the
TLS layers pass: `read(len)`, `read(len, buffer)`, `write(data)`, `pending()`.
"""

from __future__ import annotations

import ssl
from typing import Any

__all__ = ["DirectSSLObject", "direct_ssl_objects"]


class DirectSSLObject(ssl.SSLObject):
    """An SSLObject whose read, write and pending are the C object's own bound methods."""

    @classmethod
    def _create(cls, *args: Any, **kwargs: Any) -> DirectSSLObject:
        self: DirectSSLObject = super()._create(*args, **kwargs)  # type: ignore[misc]
        native = self._sslobj  # type: ignore[attr-defined]
        vars(self).update(read=native.read, write=native.write, pending=native.pending)
        return self


def direct_ssl_objects(context: ssl.SSLContext) -> ssl.SSLContext:
    """Have `context` hand out DirectSSLObjects, unless it was given a class of its own."""
    if context.sslobject_class is ssl.SSLObject:
        context.sslobject_class = DirectSSLObject
    return context
