"""A Starlette app used to compare roadrunner with uvicorn."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route


async def homepage(request: Request) -> Response:
    return PlainTextResponse("hello from starlette")


async def scope_dump(request: Request) -> Response:
    scope = request.scope
    return JSONResponse({
        "type": scope["type"],
        "http_version": scope["http_version"],
        "method": scope["method"],
        "scheme": scope["scheme"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "root_path": scope["root_path"],
        "query_string": scope["query_string"].decode("latin-1"),
        "headers": sorted([k.decode(), v.decode()] for k, v in scope["headers"]
                          if k not in (b"user-agent",)),
        "client_host": scope["client"][0],
        "server": list(scope["server"]),
        "asgi_version": scope["asgi"]["version"],
    })


async def echo(request: Request) -> Response:
    body = await request.body()
    return Response(body, media_type=request.headers.get("content-type", "application/octet-stream"))


async def stream(request: Request) -> Response:
    async def chunks():  # type: ignore[no-untyped-def]
        for index in range(5):
            yield f"chunk {index}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


async def cookies(request: Request) -> Response:
    response = PlainTextResponse("cookies")
    response.set_cookie("a", "1")
    response.set_cookie("b", "2", httponly=True)
    return response


async def redirect(request: Request) -> Response:
    return RedirectResponse("/", status_code=307)


async def error(request: Request) -> Response:
    raise RuntimeError("boom")


app = Starlette(routes=[
    Route("/", homepage),
    Route("/scope/{rest:path}", scope_dump, methods=["GET", "POST"]),
    Route("/echo", echo, methods=["POST", "PUT"]),
    Route("/stream", stream),
    Route("/cookies", cookies),
    Route("/redirect", redirect),
    Route("/error", error),
])
