"""RateGuardMiddleware through Config (--rate-limit ...) against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from roadrunner.middleware.rate_guard import RateGuardMiddleware
from tests.helpers import RunningServer, run_server


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/work")
    def work() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "up"}

    @app.get("/status/live")
    def live() -> dict[str, str]:
        return {"status": "live"}

    return app


def find_guard(app: Any) -> RateGuardMiddleware:
    while not isinstance(app, RateGuardMiddleware):
        app = app.app
    return app


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    # 1 request a minute refills nothing during the test: the burst is all a peer gets.
    with run_server(
        make_app(), rate_limit="1/m", rate_burst=3, rate_limit_max_peers=10,
        rate_limit_exempt=["/health", "/status/*"],
    ) as server:
        yield server


def get_as(client: httpx.Client, peer: str, path: str = "/work") -> httpx.Response:
    # 127.0.0.1 is a trusted proxy by default, so X-Forwarded-For names the peer.
    return client.get(path, headers={"X-Forwarded-For": peer})


def test_burst_then_429_with_retry_after(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        statuses = [get_as(client, "198.51.100.1").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        refused = get_as(client, "198.51.100.1")
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.text == "Too Many Requests"
        # Another peer has its own bucket; the limited one still reaches exempt paths.
        assert get_as(client, "198.51.100.2").status_code == 200
        assert get_as(client, "198.51.100.1", "/health").json() == {"status": "up"}
        assert get_as(client, "198.51.100.1", "/status/live").status_code == 200


def test_tracked_peers_are_capped(server: RunningServer) -> None:
    guard = find_guard(server.config.loaded_app)
    with httpx.Client(base_url=server.url) as client:
        for i in range(50):
            assert get_as(client, f"203.0.113.{i}").status_code == 200
    assert len(guard.store) == 10
    assert "203.0.113.49" in guard.store.buckets
    assert "203.0.113.0" not in guard.store.buckets  # least recently seen went first


def test_bad_rate_is_a_config_error() -> None:
    from roadrunner.config import Config, ConfigError

    for options in ({"rate_limit": "fast"}, {"rate_limit": "0/s"},
                    {"rate_limit": "5/s", "rate_limit_max_peers": 0},
                    {"rate_burst": 5}):
        with pytest.raises(ConfigError):
            Config(make_app(), lifespan="off", **options).load()
