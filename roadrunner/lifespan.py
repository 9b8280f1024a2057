"""ASGI lifespan protocol: startup before serving, shutdown after the connections drain."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from roadrunner.config import Config

logger = logging.getLogger("roadrunner.error")


class LifespanOn:
    """Runs the app's lifespan task; `state` is copied into every request scope."""

    def __init__(self, config: Config) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.receive_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.startup_event = asyncio.Event()
        self.shutdown_event = asyncio.Event()
        self.startup_failed = False
        self.shutdown_failed = False
        self.should_exit = False
        self.error_occured = False
        self.state: dict[str, Any] = {}
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        logger.info("Waiting for application startup.")
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(self.main())
        await self.receive_queue.put({"type": "lifespan.startup"})
        await self.startup_event.wait()
        if self.startup_failed or (self.error_occured and self.config.lifespan == "on"):
            logger.error("Application startup failed. Exiting.")
            self.should_exit = True
        else:
            logger.info("Application startup complete.")

    async def shutdown(self) -> None:
        if self.error_occured:
            return
        logger.info("Waiting for application shutdown.")
        await self.receive_queue.put({"type": "lifespan.shutdown"})
        await self.shutdown_event.wait()
        if self.shutdown_failed or (self.error_occured and self.config.lifespan == "on"):
            logger.error("Application shutdown failed. Exiting.")
            self.should_exit = True
        else:
            logger.info("Application shutdown complete.")

    async def main(self) -> None:
        try:
            app = self.config.loaded_app
            scope = {
                "type": "lifespan",
                "asgi": {"version": self.config.asgi_version, "spec_version": "2.0"},
                "state": self.state,
            }
            await app(scope, self.receive, self.send)
        except BaseException as exc:
            self.error_occured = True
            if self.startup_failed or self.shutdown_failed:
                return
            if self.config.lifespan == "auto":
                logger.info("ASGI 'lifespan' protocol appears unsupported.")
            else:
                logger.error("Exception in 'lifespan' protocol\n", exc_info=exc)
        finally:
            self.startup_event.set()
            self.shutdown_event.set()

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        expected = {
            "lifespan.startup.complete", "lifespan.startup.failed",
            "lifespan.shutdown.complete", "lifespan.shutdown.failed",
        }
        if kind not in expected:
            raise RuntimeError(f"Unexpected lifespan message type {kind!r}.")
        if kind.startswith("lifespan.startup"):
            if self.startup_event.is_set():
                raise RuntimeError("Lifespan startup already answered.")
            self.startup_event.set()
            if kind == "lifespan.startup.failed":
                self.startup_failed = True
                if message.get("message"):
                    logger.error(message["message"])
        else:
            if not self.startup_event.is_set() or self.shutdown_event.is_set():
                raise RuntimeError("Lifespan shutdown answered out of order.")
            self.shutdown_event.set()
            if kind == "lifespan.shutdown.failed":
                self.shutdown_failed = True
                if message.get("message"):
                    logger.error(message["message"])

    async def receive(self) -> dict[str, Any]:
        return await self.receive_queue.get()


class LifespanOff:
    """--lifespan off: no lifespan events, an empty state."""

    def __init__(self, config: Config) -> None:
        self.should_exit = False
        self.state: dict[str, Any] = {}

    async def startup(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


def lifespan_for(config: Config) -> LifespanOn | LifespanOff:
    return LifespanOff(config) if config.lifespan == "off" else LifespanOn(config)
