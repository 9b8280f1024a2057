"""The gzip_response comparison: the peer's app and a check that answers really are gzip.

roadrunner compresses with its own `--compress` (CompressionMiddleware, gzip level 6); the peer
is uvicorn serving the same bench app wrapped in Starlette's GZipMiddleware, set to the same
level 6 (Starlette's default is 9) and the same 500-byte minimum, so both do the same zlib work.

    uvicorn bench.middleware:app      # the peer, as bench/servers.py starts it
"""

from __future__ import annotations

import gzip

from starlette.middleware.gzip import GZipMiddleware

from bench.apps import app as bench_app
from bench.http1 import Response, fetch
from bench.scenarios import Request
from bench.wrk import WrkDriver

GZIP_LEVEL = 6  # roadrunner's CompressionMiddleware default
MINIMUM_SIZE = 500  # both middlewares' default

app = GZipMiddleware(bench_app, minimum_size=MINIMUM_SIZE,  # type: ignore[arg-type]
                     compresslevel=GZIP_LEVEL)


def decode_gzip(response: Response) -> Response:
    """The response with its gzip body decoded; ValueError if it is not gzip-encoded."""
    encoding = dict(response.headers).get(b"content-encoding", b"").lower()
    if encoding != b"gzip":
        raise ValueError(f"expected Content-Encoding: gzip, got {encoding.decode() or 'none'!r}")
    return Response(response.status, response.headers, gzip.decompress(response.body),
                    response.size)


class GzipWrkDriver(WrkDriver):
    """wrk as usual; the pre-run check insists on a gzip answer and compares the decoded body."""

    @staticmethod
    def fetch(host: str, port: int, request: Request, timeout: float = 5.0) -> Response:
        return decode_gzip(fetch(host, port, request, timeout=timeout))
