"""Django (admin, CSRF login, 404, streaming, --root-path) and Channels under roadrunner,
each answer compared with uvicorn's."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.frameworks.conftest import DJANGO_ADMIN
from tests.frameworks.oracle import (
    Served,
    assert_same,
    assert_streams_like_uvicorn,
    assert_ws_echo,
    both,
    pair,
)

pytestmark = pytest.mark.timeout(40)
APP = "tests.frameworks.apps.django_site.asgi:application"
TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')

rr, uv = pair(APP, env_fixture="django_env")
rr_sub, uv_sub = pair(APP, "--root-path", "/sub", env_fixture="django_env")


def without_tokens(text: str) -> str:
    return TOKEN.sub('name="csrfmiddlewaretoken" value=""', text)


def log_in(served: Served) -> list[httpx.Response]:
    """The admin login as a browser does it: the form (and its CSRF cookie), the POST, the
    redirect to the index."""
    with served.client() as client:
        form = client.get("/admin/login/", params={"next": "/admin/"})
        match = TOKEN.search(form.text)
        assert match, f"{served.label}: no CSRF token in the login page ({form.status_code})"
        posted = client.post("/admin/login/?next=/admin/", data={
            "csrfmiddlewaretoken": match.group(1), "username": DJANGO_ADMIN[0],
            "password": DJANGO_ADMIN[1], "next": "/admin/",
        })
        index = client.get(posted.headers.get("location", "/admin/"))
    return [form, posted, index]


def test_admin_login_page(rr: Served, uv: Served) -> None:
    a, b = both(rr, uv, "GET", "/admin/login/")
    assert a.status_code == 200 and "csrftoken" in a.cookies
    assert_same(a, b, normalise=without_tokens)


def test_admin_redirects_anonymous_to_login(rr: Served, uv: Served) -> None:
    a, b = both(rr, uv, "GET", "/admin/")
    assert a.status_code == 302 and a.headers["location"] == "/admin/login/?next=/admin/"
    assert_same(a, b)


def test_admin_login_with_csrf(rr: Served, uv: Served) -> None:
    got, expected = log_in(rr), log_in(uv)
    form, posted, index = got
    assert posted.status_code == 302 and posted.headers["location"] == "/admin/"
    assert index.status_code == 200 and "Site administration" in index.text
    assert "sessionid" in posted.cookies
    for a, b in zip(got, expected, strict=True):
        assert_same(a, b, normalise=without_tokens)


def test_not_found_page(rr: Served, uv: Served) -> None:
    a, b = both(rr, uv, "GET", "/no/such/page/")
    assert a.status_code == 404
    assert_same(a, b)


def test_streaming_response_arrives_in_chunks(rr: Served, uv: Served) -> None:
    assert_streams_like_uvicorn(rr, uv, "/stream/")


def test_root_path_prefixes_generated_urls(rr_sub: Served, uv_sub: Served) -> None:
    a, b = both(rr_sub, uv_sub, "GET", "/admin/")
    assert a.status_code == 302
    assert a.headers["location"] == "/sub/admin/login/?next=/sub/admin/"
    assert_same(a, b)
    a, b = both(rr_sub, uv_sub, "GET", "/admin/login/")
    assert a.status_code == 200 and 'action="/sub/admin/login/"' in a.text
    assert_same(a, b, normalise=without_tokens)


def test_channels_websocket_echo(rr: Served, uv: Served) -> None:
    assert_ws_echo(rr, uv, "/ws/echo/")
