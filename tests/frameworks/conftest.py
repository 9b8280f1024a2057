"""Fixtures of the framework tier: a per-module server launcher and the Django database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.frameworks.oracle import ROOT, Launcher

DJANGO_SETTINGS = "tests.frameworks.apps.django_site.settings"
DJANGO_ADMIN = ("admin", "framework-tier-password")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report carries the last log lines of the servers of its module."""
    outcome = yield
    report = outcome.get_result()
    launcher = getattr(item, "funcargs", {}).get("launch")
    if report.failed and isinstance(launcher, Launcher):
        for served in launcher.running.values():
            report.sections.append((f"{served.label} output", "\n".join(served.process.lines[-30:])))


@pytest.fixture(scope="module")
def launch() -> Iterator[Launcher]:
    launcher = Launcher()
    try:
        yield launcher
    finally:
        launcher.close()


@pytest.fixture(scope="session")
def django_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A migrated sqlite database with a superuser; the environment that points Django at it."""
    env = {
        "DJANGO_SETTINGS_MODULE": DJANGO_SETTINGS,
        "FRAMEWORK_DB_DIR": str(tmp_path_factory.mktemp("django")),
    }
    full = {**os.environ, **env, "DJANGO_SUPERUSER_PASSWORD": DJANGO_ADMIN[1]}
    manage = [sys.executable, "-m", "django"]
    for command in (["migrate", "--noinput"],
                    ["createsuperuser", "--noinput", "--username", DJANGO_ADMIN[0],
                     "--email", "admin@example.com"]):
        subprocess.run(manage + command, cwd=ROOT, env=full, check=True, capture_output=True,
                       timeout=60)
    return env
