"""uvicorn 0.54's flags and Config fields, run for real: same name, same meaning as uvicorn."""

from __future__ import annotations

import asyncio
import socket
import ssl
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from roadrunner.config import Config
from roadrunner.server import Server
from tests.helpers import capture_logs, raw_request, run_server, status_of
from tests.integration.process_helpers import roadrunner

GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

APPS = textwrap.dedent(
    """
    import asyncio, contextvars, json, os

    VAR = contextvars.ContextVar("VAR", default="unset")
    VAR.set("set-at-import")

    async def respond(send, body):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def env(scope, receive, send):
        names = ("RR_COMMENT", "RR_EXPANDED", "RR_NEWLINE")
        await respond(send, json.dumps({name: os.environ.get(name) for name in names}).encode())

    async def context(scope, receive, send):
        await respond(send, VAR.get().encode())

    def create_app():
        async def made(scope, receive, send):
            await respond(send, b"made by the factory")
        return made

    def wsgi(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"wsgi says ", environ["PATH_INFO"].encode()]

    def custom_loop():
        print("CUSTOM-LOOP-FACTORY", flush=True)
        return asyncio.SelectorEventLoop()
    """
)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "flagapps.py").write_text(APPS)
    (tmp_path / "boom.py").write_text("x = 1\n1 / 0\n")
    return tmp_path


def get(process: Any, path: str = "/") -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{process.port}{path}", timeout=5)


def test_env_file_is_read_by_python_dotenv(app_dir: Path) -> None:
    """Inline comments, ${VAR} expansion and escapes in double quotes, as python-dotenv."""
    (app_dir / ".env").write_text(
        'RR_COMMENT=kept # a comment\nRR_EXPANDED=${RR_COMMENT}-more\nRR_NEWLINE="one\\ntwo"\n'
    )
    with roadrunner("flagapps:env", "--env-file", ".env", cwd=app_dir) as process:
        assert get(process).json() == {
            "RR_COMMENT": "kept", "RR_EXPANDED": "kept-more", "RR_NEWLINE": "one\ntwo",
        }


def test_factory_without_flag_is_detected_and_called(app_dir: Path) -> None:
    with roadrunner("flagapps:create_app", cwd=app_dir) as process:
        response = get(process)
        assert (response.status_code, response.text) == (200, "made by the factory")
        process.wait_for(
            "ASGI app factory detected. Using it, but please consider setting the --factory flag explicitly."
        )


def test_exception_while_importing_prints_traceback_and_exits_3(app_dir: Path) -> None:
    with roadrunner("boom:app", cwd=app_dir) as process:
        assert process.wait() == 3
        process.wait_for("Traceback")
        process.wait_for(r'boom\.py", line 2')
        process.wait_for("ZeroDivisionError: division by zero")


async def held_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/held":
        await asyncio.sleep(1.0)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def test_limit_concurrency_counts_the_connection_and_sends_no_retry_after() -> None:
    """uvicorn: connections >= N or tasks >= N gives 503, so N allows N-1 requests at once."""
    with run_server(held_app, limit_concurrency=2) as server:
        assert status_of(raw_request(server.port, GET)) == 200
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as held:
            held.sendall(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
            response = raw_request(server.port, GET)
            assert status_of(response) == 503
            assert b"retry-after" not in response.lower()
            assert response.endswith(b"Service Unavailable")
    with run_server(held_app, limit_concurrency=1) as server:
        assert status_of(raw_request(server.port, GET)) == 503


def test_ssl_ciphers_default_is_openssls(tls_files: dict[str, str], client_ssl_context: ssl.SSLContext) -> None:
    """uvicorn 0.54 leaves the cipher list alone: a TLS 1.2 AES-GCM client is served."""
    client_ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
    client_ssl_context.set_ciphers("ECDHE+AESGCM")
    with run_server(held_app, ssl_certfile=tls_files["certfile"], ssl_keyfile=tls_files["keyfile"]) as server:
        response = httpx.get(f"{server.url}/", verify=client_ssl_context)
        assert response.status_code == 200


def test_ssl_context_factory(tls_files: dict[str, str], client_ssl_context: ssl.SSLContext) -> None:
    calls: list[Config] = []

    def factory(config: Config, default: Any) -> ssl.SSLContext:
        calls.append(config)
        context = default()
        assert isinstance(context, ssl.SSLContext)
        return context

    with run_server(held_app, ssl_context_factory=factory, ssl_certfile=tls_files["certfile"],
                    ssl_keyfile=tls_files["keyfile"]) as server:
        assert server.url.startswith("https://")
        assert httpx.get(f"{server.url}/", verify=client_ssl_context).text == "ok"
    assert len(calls) == 1 and calls[0].ssl_context_factory is factory
    config = Config(held_app, ssl_context_factory=lambda config, default: "not a context")
    with pytest.raises(TypeError, match="must return an `ssl.SSLContext`"):
        config.load()


def test_http2_flag_serves_h2c(app_dir: Path) -> None:
    with roadrunner("flagapps:context", "--http2", cwd=app_dir) as process:
        with httpx.Client(http1=False, http2=True) as client:
            response = client.get(f"http://127.0.0.1:{process.port}/")
        assert response.http_version == "HTTP/2"
    assert Config(held_app, http2=True).protocols == ("h1", "h2")


@pytest.mark.parametrize(("args", "seen"), [([], "set-at-import"), (["--reset-contextvars"], "unset")])
def test_reset_contextvars(app_dir: Path, args: list[str], seen: str) -> None:
    """A context variable set where the app was imported reaches requests unless reset."""
    with roadrunner("flagapps:context", *args, cwd=app_dir) as process:
        assert get(process).text == seen
    assert Config(held_app, reset_contextvars=True).reset_contextvars is True


def test_loop_none_and_custom_loop_factory(app_dir: Path) -> None:
    with roadrunner("flagapps:context", "--loop", "none", cwd=app_dir) as process:
        assert get(process).status_code == 200
    with roadrunner("flagapps:context", "--loop", "flagapps:custom_loop", cwd=app_dir) as process:
        assert get(process).status_code == 200
        process.wait_for("CUSTOM-LOOP-FACTORY")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--loop", "zuvloop"], "--loop zuvloop requested but zuvloop is not installed."),
        (["--loop", "flagapps:nothing"], "Error loading custom loop setup function."),
        (["--http", "zttp"], "--http zttp is uvicorn's zttp protocol"),
    ],
)
def test_uvicorn_choices_without_meaning_here_exit_3(app_dir: Path, args: list[str], message: str) -> None:
    with roadrunner("flagapps:context", *args, cwd=app_dir) as process:
        assert process.wait() == 3
        process.wait_for(message)
        assert "Traceback" not in process.output


def test_interface_wsgi(app_dir: Path) -> None:
    pytest.importorskip("a2wsgi")
    with roadrunner("flagapps:wsgi", "--interface", "wsgi", cwd=app_dir) as process:
        assert get(process, "/there").text == "wsgi says /there"


def test_server_limit_max_requests_attribute() -> None:
    server = Server(Config(held_app, limit_max_requests=5, limit_max_requests_jitter=3))
    assert 5 <= server.limit_max_requests <= 8  # type: ignore[operator]
    assert server.limit_max_requests == server.limit_max_requests  # drawn once
    assert Server(Config(held_app)).limit_max_requests is None
    with run_server(held_app, limit_max_requests=2) as running:
        for _ in range(2):
            assert status_of(raw_request(running.port, GET)) == 200
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the server stops on its own: listeners close
            try:
                socket.create_connection(("127.0.0.1", running.port), timeout=1).close()
            except OSError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("still accepting after --limit-max-requests 2")


def test_workers_with_reload_warns_and_runs_one() -> None:
    with capture_logs("roadrunner.error") as logs:
        config = Config("flagapps:context", reload=True, workers=3, log_config=None)
    assert config.workers == 1
    assert '"workers" flag is ignored when reloading is enabled.' in logs.text


def test_forwarded_allow_ips_default_is_uvicorns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    assert Config(held_app).forwarded_allow_ips == ["127.0.0.1", "::1"]
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.1, 10.0.0.2")
    assert Config(held_app).forwarded_allow_ips == ["10.0.0.1", "10.0.0.2"]


# uvicorn flags whose name and default roadrunner keeps but whose meaning differs somewhere;
# each must be named in docs/configuration.md "## Differences from uvicorn".
DIFFERENT_MEANING = {
    "--http": "zttp is refused; HTTP/2 is built in",
    "--http2": "adds h2 to --protocols instead of needing --http zttp",
    "--loop": "zuvloop needs the zuvloop package; the gunicorn worker applies factories as a policy",
    "--ws": "every implementation name is served by roadrunner's wsproto-based WebSocket",
    "--interface": "wsgi needs a2wsgi (uvicorn falls back to its deprecated WSGI adapter)",
    "--limit-concurrency": "HTTP/2 and HTTP/3 refuse the stream instead of answering 503",
    "--proxy-headers": "the XFF client port is 0; --proxy-headers-mode opts in to more headers",
    "--env-file": "a missing file is a one-line startup error from the Python API too",
    "--factory": "a non-callable attribute is refused at startup instead of answering 500",
}


def uvicorn_differences_section() -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    return text[text.index("## Differences from uvicorn"):]


def test_every_uvicorn_flag_with_its_name_and_default() -> None:
    """uvicorn 0.54's click command against ours: every option present, with the same flag
    names, default, flag-ness, multiplicity and choices; meaning differences documented."""
    import click
    from uvicorn.main import main as uvicorn_main

    from roadrunner.cli import main

    ours = {param.name: param for param in main.params}
    mismatches = []
    for theirs in uvicorn_main.params:
        mine = ours.get(theirs.name)
        if mine is None:
            mismatches.append((theirs.name, "missing"))
            continue
        for attribute in ("opts", "secondary_opts", "default", "multiple", "nargs"):
            if getattr(theirs, attribute) != getattr(mine, attribute):
                mismatches.append((theirs.name, attribute, getattr(theirs, attribute), getattr(mine, attribute)))
        if isinstance(theirs, click.Option):
            assert isinstance(mine, click.Option)
            if theirs.is_flag != mine.is_flag:
                mismatches.append((theirs.name, "is_flag"))
        if type(theirs.type) is not type(mine.type) or getattr(theirs.type, "choices", None) != getattr(
            mine.type, "choices", None
        ):
            mismatches.append((theirs.name, "type", theirs.type, mine.type))
    assert mismatches == []
    section = uvicorn_differences_section()
    undocumented = [flag for flag in DIFFERENT_MEANING if f"`{flag}" not in section]
    assert undocumented == [], f"name these in docs/configuration.md Differences from uvicorn: {undocumented}"
    # Environment variables: ROADRUNNER_<NAME>, where uvicorn reads UVICORN_<NAME>.
    assert uvicorn_main.context_settings["auto_envvar_prefix"] == "UVICORN"
    assert main.context_settings["auto_envvar_prefix"] == "ROADRUNNER"
    assert "ROADRUNNER_<NAME>" in section


def test_every_uvicorn_config_field_with_its_default() -> None:
    import inspect

    import uvicorn.config
    import uvicorn.server

    theirs = inspect.signature(uvicorn.config.Config.__init__).parameters
    mine = inspect.signature(Config.__init__).parameters
    missing = [name for name in theirs if name not in mine]
    different = [
        name for name, param in theirs.items()
        if name in mine and name != "log_config" and param.default != mine[name].default
    ]
    assert (missing, different) == ([], [])
    public = [name for name in dir(uvicorn.config.Config) if not name.startswith("_")]
    assert [name for name in public if not hasattr(Config, name)] == ["setup_event_loop"]
    assert [name for name in dir(uvicorn.server.Server) if not name.startswith("_") and not hasattr(Server, name)] == []
