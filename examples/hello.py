"""The smallest ASGI app: `make run` serves it on 127.0.0.1:8000."""


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
    })
    await send({"type": "http.response.body", "body": b"Hello, world!"})
