"""Views beside the admin: a StreamingHttpResponse fed by an async generator."""

import asyncio

from django.http import StreamingHttpResponse


async def stream(request):  # type: ignore[no-untyped-def]
    async def chunks():  # type: ignore[no-untyped-def]
        for index in range(4):
            yield f"chunk {index}\n".encode()
            await asyncio.sleep(0.2)

    return StreamingHttpResponse(chunks(), content_type="text/plain")
