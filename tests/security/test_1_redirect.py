"""#31 row 1: after signing in, the browser goes only to a path on the dashboard's own origin.

``/login?next=/%09/host/page`` used to pass the server's check (it starts with one ``/``), and Chromium, which
drops tabs and line breaks from URLs, then went to ``//host/page``: another site. The regression runs in real
Chromium against a real second site, with the target coming from the server and, for the page's own check, from a
tampered page.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium.webdriver.common.by import By

from config import Settings
from tests.frontend.conftest import ALICE_TOKEN, BOB_PASSWORD
from tests.support.browser import headless_chromium, wait_until
from tests.support.dashboard import serving, sign_in


@contextmanager
def other_site(root: Path) -> Iterator[str]:
    """A second web site on another port (so another origin), serving ``/pwned.html``."""
    root.mkdir()
    (root / "pwned.html").write_text("<!doctype html><title>pwned</title><p>another site</p>")
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


@pytest.mark.parametrize("control", ["%09", "%0A", "%0D"])
@pytest.mark.parametrize("source", ["server", "page"])
def test_signing_in_never_leaves_the_dashboard_origin(
    control: str, source: str, dashboard_settings: Settings, tmp_path: Path
) -> None:
    with (
        other_site(tmp_path / "elsewhere") as elsewhere,
        serving(dashboard_settings) as (server, _),
        headless_chromium(tmp_path / "profile") as driver,
    ):
        hostile = f"/{control}/{elsewhere}/pwned.html"
        if source == "server":
            driver.get(f"{server.url}login?next={hostile}")
        else:  # the page's own check, should the server ever hand it a bad target
            driver.get(f"{server.url}login")
            driver.execute_script(
                "document.getElementById('password-form').dataset.next = arguments[0];",
                hostile.replace("%09", "\t").replace("%0A", "\n").replace("%0D", "\r"),
            )
        driver.find_element(By.NAME, "username").send_keys("bob")
        driver.find_element(By.NAME, "password").send_keys(BOB_PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "#password-form button[type=submit]").click()
        wait_until(driver, lambda d: urlsplit(d.current_url).path != "/login", "the browser to leave the sign-in page")
        assert origin(driver.current_url) == origin(server.url), driver.current_url
        assert urlsplit(driver.current_url).path == "/"
        assert driver.find_element(By.ID, "sign-out").is_displayed()  # the dashboard, signed in


HOSTILE_TARGETS = [
    "//evil.example/",
    "https://evil.example/",
    "/\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r/evil.example",
    "\t//evil.example",
    " /evil",
    "/ /evil",
    "javascript:alert(1)",
    "evil.example",
    "/\x00/evil.example",
    "/\x7f/evil.example",
]


def test_the_server_hands_out_only_local_targets(dashboard_settings: Settings) -> None:
    with serving(dashboard_settings) as (_, client):
        for hostile in HOSTILE_TARGETS:
            page = client.get("/login", params={"next": hostile})
            assert 'data-next="/"' in page.text, repr(hostile)
        assert 'data-next="/incidents/x?y=1"' in client.get("/login", params={"next": "/incidents/x?y=1"}).text
        sign_in(client, token=ALICE_TOKEN)
        for hostile in HOSTILE_TARGETS:  # signed in, /login redirects straight away
            assert client.get("/login", params={"next": hostile}).headers["location"] == "/", repr(hostile)
        assert client.get("/login", params={"next": "/?status=open"}).headers["location"] == "/?status=open"
