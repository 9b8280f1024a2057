"""The ASGI entry point: Django for HTTP, a Channels echo consumer for WebSocket."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.frameworks.apps.django_site.settings")

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import path  # noqa: E402

django_app = get_asgi_application()


class Echo(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):  # type: ignore[no-untyped-def]
        await self.send(text_data=text_data, bytes_data=bytes_data)


application = ProtocolTypeRouter({
    "http": django_app,
    "websocket": URLRouter([path("ws/echo/", Echo.as_asgi())]),
})
