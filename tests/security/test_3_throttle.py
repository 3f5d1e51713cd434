"""#31 row 3: the sign-in throttle can be neither dodged nor turned against operators.

It used to count per address as uvicorn saw it, and uvicorn believed ``X-Forwarded-For`` from loopback: rotating
the header let 30 of 30 wrong passwords be checked. And a throttled address was refused even a valid token for
five minutes, so behind one proxy a single attacker locked out every operator.
"""

from __future__ import annotations

import httpx2

from config import Settings
from frontend.auth import Authenticator
from tests.frontend.conftest import ALICE_TOKEN, BOB_PASSWORD
from tests.support.dashboard import serving, sign_in

GUESS = {"username": "bob", "password": "not the password"}
RIGHT = {"username": "bob", "password": BOB_PASSWORD}


def forwarded(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def behind_proxy(settings: Settings) -> Settings:
    dashboard = settings.dashboard.model_copy(update={"trusted_proxies": ("127.0.0.1",)})
    return settings.model_copy(update={"dashboard": dashboard})


def test_rotating_x_forwarded_for_does_not_escape_the_throttle(dashboard_settings: Settings) -> None:
    """No trusted proxies (the default): X-Forwarded-For from anyone, loopback included, is just a header."""
    with serving(dashboard_settings) as (_, client):
        answers = [
            client.post("/api/session", json=GUESS, headers=forwarded(f"203.0.113.{n}")).status_code for n in range(30)
        ]
    assert answers == [401] * 10 + [429] * 20


def test_behind_a_trusted_proxy_each_client_is_counted_on_its_own(dashboard_settings: Settings) -> None:
    with serving(behind_proxy(dashboard_settings)) as (_, proxy):
        attacker = forwarded("203.0.113.9")
        assert [proxy.post("/api/session", json=GUESS, headers=attacker).status_code for _ in range(11)] == [
            401
        ] * 10 + [429]
        # whatever the attacker writes in the header, the proxy appends the address it saw: that one counts
        assert proxy.post("/api/session", json=GUESS, headers=forwarded("198.51.100.7, 203.0.113.9")).status_code == 429
        assert proxy.post("/api/session", json=RIGHT, headers=forwarded("198.51.100.7")).status_code == 200


def test_a_throttled_address_still_signs_in_with_a_token_or_from_a_known_browser(dashboard_settings: Settings) -> None:
    """One address for everyone (a proxy not configured as trusted): the attacker's failures lock out neither a
    token holder nor bob's own browser, which signed in before and carries its device cookie."""
    with (
        serving(dashboard_settings) as (server, attacker),
        httpx2.Client(base_url=server.url, timeout=60.0) as bobs_browser,
    ):
        sign_in(bobs_browser, **RIGHT)
        assert "distress_device" in bobs_browser.cookies
        bobs_browser.cookies.delete(Authenticator.COOKIE)  # the session ended; the browser is still bob's
        assert [attacker.post("/api/session", json=GUESS).status_code for _ in range(11)] == [401] * 10 + [429]
        refused = attacker.post("/api/session", json=RIGHT)  # a new browser there: the password is not even checked
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert attacker.post("/api/session", json={"token": ALICE_TOKEN}).json()["operator"] == "alice"
        assert bobs_browser.post("/api/session", json=RIGHT).status_code == 200
        # the device is counted on its own: someone at bob's keyboard guessing locks only that browser
        answers = [bobs_browser.post("/api/session", json=GUESS).status_code for _ in range(11)]
        assert answers == [401] * 10 + [429]
