"""The server registry: how to start each server under test with one worker.

Every server gets the same app (bench.apps:app), no access log, a listen backlog of 4096, and a
long keep-alive timeout so idle connections stay open. Add a server by adding an entry.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench.tls import bench_certificate
from bench.unpinned import unpinned

APP = "bench.apps:app"


@dataclass(frozen=True)
class Launch:
    """Where and how long-lived a server under test listens."""

    host: str
    port: int
    keep_alive: int = 600
    backlog: int = 4096
    # The scenario's protocols: "h1tls" is HTTP/1.1 over TLS (the server offers h2 as well, by
    # ALPN, as deployed), "h2" HTTP/2 over TLS (ALPN), "h2c" cleartext HTTP/2 with prior
    # knowledge, "h3" HTTP/3 over QUIC on the same port number (UDP) plus TLS on TCP.
    protocols: frozenset[str] = frozenset({"h1"})

    @property
    def tls(self) -> bool:
        return bool(self.protocols & TLS_PROTOCOLS)


TLS_PROTOCOLS = frozenset({"h1tls", "h2", "h3"})


@dataclass(frozen=True)
class ServerSpec:
    """One server under test."""

    name: str
    description: str
    package: str  # distribution whose version is reported
    argv: Callable[[Launch], list[str]]
    supports: frozenset[str] = field(default_factory=lambda: frozenset({"h1"}))
    # A configuration variant of a listed server (extra flags, workers, another app): the report
    # shows it only in the scenarios it supports, not as "n/a" everywhere else.
    variant: bool = False

    def version(self) -> str:
        try:
            return metadata.version(self.package)
        except metadata.PackageNotFoundError:
            return "not installed"


def _python(*module_args: str) -> list[str]:
    return [sys.executable, "-m", *module_args]


def _roadrunner_on(engine: str) -> Callable[[Launch], list[str]]:
    """roadrunner's command, HTTP/2 on `engine` (named, so a missing nghttp2 build fails the
    run instead of falling back to h2 unseen)."""
    def argv(launch: Launch) -> list[str]:
        return _python(
            "roadrunner", APP, "--host", launch.host, "--port", str(launch.port),
            "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level",
            "warning", "--timeout-keep-alive", str(launch.keep_alive),
            "--backlog", str(launch.backlog),
        ) + _roadrunner_protocols(launch, engine)

    return argv


def _roadrunner_protocols(launch: Launch, engine: str) -> list[str]:
    """--protocols (h2c needs h2 listed; TLS offers h2 by ALPN), the engine and the certificate."""
    if "h3" in launch.protocols:
        protocols = "h1,h2,h3"
    elif launch.protocols & {"h2", "h2c"}:
        protocols = "h1,h2"
    else:  # h1, or h1tls: the default with TLS, h1 plus h2 by ALPN
        return _tls_flags(launch, "--ssl-certfile", "--ssl-keyfile")
    return ["--protocols", protocols, "--http2-engine", engine,
            *_tls_flags(launch, "--ssl-certfile", "--ssl-keyfile")]


_roadrunner = _roadrunner_on("nghttp2")


def _tls_flags(launch: Launch, cert_flag: str, key_flag: str) -> list[str]:
    if not launch.tls:
        return []
    files = bench_certificate()
    return [cert_flag, str(files.certfile), key_flag, str(files.keyfile)]


def _uvicorn(launch: Launch) -> list[str]:
    return _python(
        "uvicorn", APP, "--host", launch.host, "--port", str(launch.port),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
        "--timeout-keep-alive", str(launch.keep_alive), "--backlog", str(launch.backlog),
    ) + _tls_flags(launch, "--ssl-certfile", "--ssl-keyfile")


def _hypercorn(launch: Launch) -> list[str]:
    return _python(
        "hypercorn", APP, "--bind", f"{launch.host}:{launch.port}", "--workers", "1",
        "--worker-class", "uvloop", "--log-level", "warning",
        "--keep-alive", str(launch.keep_alive), "--backlog", str(launch.backlog),
    ) + _tls_flags(launch, "--certfile", "--keyfile") + (
        # hypercorn serves HTTP/3 only on an extra QUIC bind; the same port number, over UDP.
        ["--quic-bind", f"{launch.host}:{launch.port}"] if "h3" in launch.protocols else []
    )


def _granian(launch: Launch) -> list[str]:
    # Granian has no HTTP/1 idle timeout to raise: its keep-alive connections stay open.
    return _python(
        "granian", APP, "--interface", "asgi", "--host", launch.host,
        "--port", str(launch.port), "--workers", "1", "--runtime-threads", "1",
        "--loop", "uvloop", "--no-access-log", "--log-level", "warning",
        "--backlog", str(launch.backlog),
    ) + _tls_flags(launch, "--ssl-certificate", "--ssl-keyfile")  # --http auto: h2 by ALPN


def _gunicorn(worker_class: str) -> Callable[[Launch], list[str]]:
    def argv(launch: Launch) -> list[str]:
        return _python(
            "gunicorn", APP, "--worker-class", worker_class, "--workers", "1",
            "--bind", f"{launch.host}:{launch.port}", "--log-level", "warning",
            "--keep-alive", str(launch.keep_alive), "--backlog", str(launch.backlog),
            # The default of 1000 would cap the idle-connection scenario.
            "--worker-connections", "10000",
        ) + _tls_flags(launch, "--certfile", "--keyfile")

    return argv


def _pyvoy(launch: Launch) -> list[str]:
    """pyvoy: Envoy with the app in a dynamic module. One Envoy worker thread (`--concurrency
    1`, after `--`, which pyvoy hands to Envoy) and pyvoy's default of one Python worker thread;
    TLS on the one port, with HTTP/3 on the same port number (UDP) only when h3 is measured."""
    args = [str(Path(sys.executable).with_name("pyvoy")), APP, "--address", launch.host,
            "--port", str(launch.port), "--log-level", "error"]
    if "ws" in launch.protocols:
        args.append("--websockets")  # off by default: a network filter on every connection
    args += _tls_flags(launch, "--tls-cert", "--tls-key")
    if launch.tls and "h3" not in launch.protocols:
        args.append("--tls-disable-http3")
    return args + ["--", "--concurrency", "1"]


SERVERS: dict[str, ServerSpec] = {}


def register(spec: ServerSpec) -> ServerSpec:
    """Add a server to the registry (names are unique)."""
    if spec.name in SERVERS:
        raise ValueError(f"duplicate server {spec.name!r}")
    SERVERS[spec.name] = spec
    return spec


H1 = frozenset({"h1", "h1tls", "ws"})
register(ServerSpec(
    "roadrunner", "roadrunner (httptools, uvloop; HTTP/2 on the nghttp2 engine)", "roadrunner",
    _roadrunner, H1 | {"h2", "h2c", "h3", "mw"},
))
register(ServerSpec(
    "uvicorn", "uvicorn (httptools, uvloop)", "uvicorn", _uvicorn, H1,
))
register(ServerSpec(
    "hypercorn", "hypercorn (uvloop worker class)", "hypercorn", _hypercorn,
    H1 | {"h2", "h2c", "h3"},
))
register(ServerSpec(
    "granian", "granian (ASGI interface, uvloop, 1 runtime thread)", "granian", _granian,
    H1 | {"h2", "h2c"},
))
register(ServerSpec(
    "pyvoy", "pyvoy (Envoy, 1 Envoy worker thread, 1 Python worker thread, uvloop)", "pyvoy",
    _pyvoy, H1 | {"h2", "h2c", "h3"},
))
register(ServerSpec(
    "gunicorn-uvicorn", "gunicorn -k uvicorn.workers.UvicornWorker", "gunicorn",
    _gunicorn("uvicorn.workers.UvicornWorker"), H1,
))
register(ServerSpec(
    "gunicorn-asgi", "gunicorn -k asgi (gunicorn's own ASGI worker)", "gunicorn",
    _gunicorn("asgi"), H1,
))


def _variant(base: Callable[[Launch], list[str]], *extra: str, app: str = APP,
             workers: int | None = None, before: str | None = None
             ) -> Callable[[Launch], list[str]]:
    """base's command with extra flags (inserted ahead of `before` if it is there), another app,
    or N workers (then unpinned)."""
    def argv(launch: Launch) -> list[str]:
        args = [app if arg == APP else arg for arg in base(launch)]
        at = args.index(before) if before in args else len(args)
        args[at:at] = extra
        if workers is None:
            return args
        if "--workers" in args:  # granian's base command names its one worker
            args[args.index("--workers") + 1] = str(workers)
        else:
            args += ["--workers", str(workers)]
        return unpinned(args)

    return argv


WS, MW, GZIP, WORKERS = (frozenset({"ws"}), frozenset({"mw"}), frozenset({"mw", "gzip"}),
                         frozenset({"workers"}))
# roadrunner's other HTTP/2 engine, so every HTTP/2 scenario (and idle h2 memory) runs on both.
register(ServerSpec(
    "roadrunner+h2-engine", "roadrunner --http2-engine h2 (the pure-Python h2 library)",
    "roadrunner", _roadrunner_on("h2"), frozenset({"h2", "h2c"}), variant=True,
))
# WebSocket peers: uvicorn's two implementations named by the issue (its default, --ws auto,
# is websockets-sansio and runs as "uvicorn").
for _ws in ("websockets", "wsproto"):
    register(ServerSpec(f"uvicorn-{_ws}", f"uvicorn --ws {_ws}", "uvicorn",
                        _variant(_uvicorn, "--ws", _ws), WS, variant=True))
# roadrunner's middleware, one CLI flag at a time and all together.
_ORIGIN = ("--cors-allow-origin", "https://app.example")
_RATE = ("--rate-limit", "1000000000/s")  # never reached: measures the bucket bookkeeping
_MIDDLEWARE = {
    "cors": _ORIGIN, "security-headers": ("--security-headers",), "etag": ("--etag",),
    "compress": ("--compress",), "rate-limit": _RATE,
    "all-mw": (*_ORIGIN, "--security-headers", "--etag", "--compress", *_RATE),
}
for _name, _flags in _MIDDLEWARE.items():
    register(ServerSpec(f"roadrunner+{_name}", "roadrunner " + " ".join(_flags), "roadrunner",
                        _variant(_roadrunner, *_flags), GZIP if _name == "compress" else MW,
                        variant=True))
# gzip_response's peers: servers without compression of their own serve the bench app wrapped in
# Starlette's GZipMiddleware (bench/middleware.py); pyvoy compresses in Envoy (its gzip filter).
_GZIP_APP = "bench.middleware:app"
for _name, _base in (("uvicorn", _uvicorn), ("hypercorn", _hypercorn), ("granian", _granian),
                     ("gunicorn-uvicorn", _gunicorn("uvicorn.workers.UvicornWorker"))):
    register(ServerSpec(
        f"{_name}+gzip", f"{_name}, bench app in Starlette's GZipMiddleware (level 6, min 500 B)",
        "starlette", _variant(_base, app=_GZIP_APP), frozenset({"gzip"}), variant=True,
    ))
register(ServerSpec(
    "pyvoy+gzip", "pyvoy --content-encodings gzip (Envoy's gzip compressor, its defaults)",
    "pyvoy", _variant(_pyvoy, "--content-encodings", "gzip", before="--"),
    frozenset({"gzip"}), variant=True,
))
# 1 and 2 workers, unpinned (taskset -c 0-N around the server).
for _base, _server in ((_roadrunner, "roadrunner"), (_uvicorn, "uvicorn"), (_granian, "granian")):
    for _count in (1, 2):
        register(ServerSpec(f"{_server}-{_count}w", f"{_server} --workers {_count}, unpinned",
                            _server, _variant(_base, workers=_count), WORKERS, variant=True))
