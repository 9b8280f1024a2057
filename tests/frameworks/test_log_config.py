"""A --log-config written for uvicorn (its own default LOGGING_CONFIG, as JSON): the startup
line and the access lines come out the same under roadrunner as under uvicorn."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from uvicorn.config import LOGGING_CONFIG

from tests.frameworks.oracle import PROTOCOLS, Launcher, Served
from tests.integration.test_uvicorn_compat import free_port

pytestmark = pytest.mark.timeout(30)
APP = "tests.frameworks.apps.starlette_app:app"
STARTUP = "INFO:     Application startup complete."


@pytest.fixture(scope="module")
def log_config(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = Path(tmp_path_factory.mktemp("logging")) / "uvicorn-logging.json"
    path.write_text(json.dumps(LOGGING_CONFIG))
    return str(path)


@pytest.fixture(scope="module", params=PROTOCOLS)
def rr(request: pytest.FixtureRequest, launch: Launcher, log_config: str) -> Served:
    return launch("roadrunner", APP, request.param, "--log-config", log_config, port=free_port())


@pytest.fixture(scope="module")
def uv(launch: Launcher, log_config: str) -> Served:
    return launch("uvicorn", APP, "h1", "--log-config", log_config, port=free_port())


def access_line(served: Served) -> str:
    """Request a unique path; the access line logged for it, client port and HTTP version
    masked (uvicorn has no HTTP/2 to compare with)."""
    probe = f"/?probe={uuid.uuid4().hex}"
    with served.client() as client:
        assert client.get(probe).status_code == 200
    pattern = re.escape(probe) + r" HTTP/[\d.]+\" 200"
    line = served.process.wait_for(pattern, timeout=5)[0].string
    line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)
    return re.sub(r"HTTP/[\d.]+", "HTTP/V", line.replace(probe, "/?probe=P"))


def test_startup_line(rr: Served, uv: Served) -> None:
    for served in (uv, rr):
        assert served.process.wait_for(re.escape(STARTUP), timeout=5)[0].string == STARTUP


def test_access_line(rr: Served, uv: Served) -> None:
    expected = access_line(uv)
    assert expected == 'INFO:     127.0.0.1:PORT - "GET /?probe=P HTTP/V" 200 OK'
    assert access_line(rr) == expected
