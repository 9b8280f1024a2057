"""--http2-engine auto|nghttp2|h2: which engine serves HTTP/2, as the startup line names it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from roadrunner.config import Config, ConfigError
from tests.helpers import NGHTTP2_MISSING
from tests.integration.process_helpers import roadrunner, write_app

needs_nghttp2 = pytest.mark.skipif(
    bool(NGHTTP2_MISSING), reason=f"the nghttp2 engine is not built: {NGHTTP2_MISSING}"
)
# A `python -m` entry point that runs the CLI as if the extension had not been built.
WITHOUT_EXTENSION = """
import sys
sys.modules["roadrunner.protocols.http2._nghttp2"] = None  # import fails: not built
from roadrunner.cli import main
main(prog_name="roadrunner")
"""


def hide_extension(directory: Path) -> str:
    (directory / "without_nghttp2.py").write_text(WITHOUT_EXTENSION)
    return "without_nghttp2"


def served_over_h2(port: int) -> str:
    with httpx.Client(http1=False, http2=True, timeout=5) as client:  # h2c prior knowledge
        return client.get(f"http://127.0.0.1:{port}/").http_version


@pytest.mark.parametrize(
    ("args", "env", "engine"),
    [
        pytest.param(["--http2-engine", "nghttp2"], {}, "nghttp2", marks=needs_nghttp2, id="nghttp2"),
        pytest.param(["--http2-engine", "h2"], {}, "h2", id="h2"),
        pytest.param([], {}, "nghttp2", marks=needs_nghttp2, id="auto-built"),
        pytest.param([], {"ROADRUNNER_HTTP2_ENGINE": "h2"}, "h2", id="env"),
    ],
)
def test_startup_line_names_the_http2_engine(
    tmp_path: Path, args: list[str], env: dict[str, str], engine: str
) -> None:
    app = write_app(tmp_path)
    with roadrunner(app, "--protocols", "h1,h2", *args, cwd=tmp_path, env=env) as process:
        match = process.wait_for(r"running on http://127\.0\.0\.1:(\d+) \[h1,h2 on (\w+); (?:compiled|pure)\]")[0]
        assert match.group(2) == engine
        assert served_over_h2(int(match.group(1))) == "HTTP/2"


def test_auto_falls_back_to_h2_without_the_extension(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    module = hide_extension(tmp_path)
    with roadrunner(app, "--protocols", "h1,h2", cwd=tmp_path, module=module) as process:
        match = process.wait_for(r"running on http://127\.0\.0\.1:(\d+) \[h1,h2 on (\w+); (?:compiled|pure)\]")[0]
        assert match.group(2) == "h2"
        assert served_over_h2(int(match.group(1))) == "HTTP/2"


def test_nghttp2_without_the_extension_is_a_startup_error(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    module = hide_extension(tmp_path)
    with roadrunner(
        app, "--http2-engine", "nghttp2", cwd=tmp_path, module=module
    ) as process:
        assert process.wait(15) == 3
    lines = [line for line in process.output.splitlines() if "nghttp2" in line]
    assert len(lines) == 1, process.output
    assert "--http2-engine nghttp2: the nghttp2 engine is not available" in lines[0]
    assert "installed without it" in lines[0]


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ConfigError, match="--http2-engine"):
        Config("app:app", http2_engine="nghttp3")
