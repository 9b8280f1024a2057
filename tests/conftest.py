from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from tests import helpers
from tests.helpers import HTTP2_ENGINES


@pytest.fixture(params=HTTP2_ENGINES)
def http2_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once per HTTP/2 engine (test ids [nghttp2] and [h2]).

    Servers started with tests.helpers.run_server and CLI servers (ROADRUNNER_HTTP2_ENGINE) in
    the test use that engine unless the test names one itself.
    """
    engine: str = request.param
    monkeypatch.setitem(helpers.SERVER_DEFAULTS, "http2_engine", engine)
    monkeypatch.setenv("ROADRUNNER_HTTP2_ENGINE", engine)
    return engine


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_files(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Certificate, key and CA files for 127.0.0.1 / localhost."""
    cert = tls_ca.issue_cert("127.0.0.1", "localhost")
    directory = tmp_path_factory.mktemp("tls")
    certfile = directory / "cert.pem"
    keyfile = directory / "key.pem"
    cafile = directory / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for pem in cert.cert_chain_pems[1:]:
        with open(certfile, "ab") as f:
            f.write(pem.bytes())
    cert.private_key_pem.write_to_path(str(keyfile))
    tls_ca.cert_pem.write_to_path(str(cafile))
    return {"certfile": str(certfile), "keyfile": str(keyfile), "cafile": str(cafile)}


@pytest.fixture
def client_ssl_context(tls_files: dict[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls_files["cafile"])
    return context


@pytest.fixture(scope="session")
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent
