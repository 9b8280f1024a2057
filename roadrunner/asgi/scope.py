"""Building the ASGI `http` scope (spec 2.5): one function for h1, h2 and h3."""

from __future__ import annotations

import urllib.parse
from typing import Any, Final

Headers = list[tuple[bytes, bytes]]

# The HTTP extensions every protocol supports (HTTPStream implements them).
HTTP_EXTENSIONS: Final[dict[str, dict[str, Any]]] = {
    "http.response.trailers": {},
    "http.response.early_hint": {},
    "http.response.pathsend": {},
}


def asgi_info(version: str) -> dict[str, str]:
    return {"version": version, "spec_version": "2.5"}


def http_scope(
    *,
    asgi: dict[str, str],
    http_version: str,
    server: tuple[str, int] | None,
    client: tuple[str, int] | None,
    scheme: str,
    method: str,
    root_path: str,
    raw_path: bytes,
    query_string: bytes,
    headers: Headers,
    app_state: dict[str, Any],
) -> dict[str, Any]:
    """An http scope; `path` is percent-decoded and, like uvicorn's, includes root_path."""
    path = raw_path.decode("latin-1")
    if "%" in path:
        path = urllib.parse.unquote(path)
    return {
        "type": "http",
        "asgi": asgi,
        "http_version": http_version,
        "server": server,
        "client": client,
        "scheme": scheme,
        "method": method,
        "root_path": root_path,
        "path": root_path + path,
        "raw_path": root_path.encode("ascii") + raw_path if root_path else raw_path,
        "query_string": query_string,
        "headers": headers,
        "state": app_state.copy(),
        "extensions": dict(HTTP_EXTENSIONS),
    }
