"""#31 row 5: request bodies are bounded before they are read, and refusals never echo what was sent.

A 50 MB unauthenticated sign-in used to be read whole, and its 422 answered with the input, password included.
The raw-socket tests send only the start of a big body: a server that waited for the rest would time out.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest

from config import Settings
from tests.frontend.conftest import ALICE_TOKEN
from tests.support.dashboard import serving

SECRET = "hunter2-do-not-echo"
FIFTY_MB = 50 * 1024 * 1024


@contextmanager
def raw_connection(url: str) -> Iterator[http.client.HTTPConnection]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        yield connection
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/session", {}),
        ("/api/incidents/hall-1:0123456789ab/notes", {"Authorization": f"Bearer {ALICE_TOKEN}"}),
    ],
)
def test_a_declared_huge_body_is_refused_before_it_is_read(
    path: str, headers: dict[str, str], dashboard_settings: Settings
) -> None:
    with serving(dashboard_settings) as (server, _), raw_connection(server.url) as connection:
        connection.putrequest("POST", path)
        for name, value in {**headers, "Content-Type": "application/json", "Content-Length": str(FIFTY_MB)}.items():
            connection.putheader(name, value)
        connection.endheaders()
        connection.send(json.dumps({"username": "bob", "password": SECRET}).encode() + b" " * 1024)
        response = connection.getresponse()  # times out if the server waits for the other 50 MB
        body = response.read().decode()
        assert response.status == 413, body
        assert SECRET not in body and response.getheader("x-frame-options") == "DENY"


def test_a_streamed_body_is_cut_off_at_the_sign_in_limit(dashboard_settings: Settings) -> None:
    """No Content-Length (chunked): the bytes are counted as they arrive and the 17th KB ends it."""
    with serving(dashboard_settings) as (server, _), raw_connection(server.url) as connection:
        connection.putrequest("POST", "/api/session")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        chunk = b" " * 4096
        for _ in range(5):  # 20 KB of a body that never ends
            connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        response = connection.getresponse()
        assert response.status == 413, response.read()
        assert "16384 bytes" in response.read().decode()


def test_a_sign_in_within_the_limit_still_works(dashboard_settings: Settings) -> None:
    with serving(dashboard_settings) as (_, client):
        assert client.post("/api/session", json={"token": ALICE_TOKEN}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"username": "bob", "password": SECRET, "token": SECRET},  # two methods at once
        {"username": "b" * 65, "password": SECRET},  # name too long
        {"password": SECRET},  # no name
        {"token": SECRET, "role": "admin"},  # unknown field
    ],
)
def test_validation_errors_never_echo_the_input(body: dict[str, str], dashboard_settings: Settings) -> None:
    with serving(dashboard_settings) as (_, client):
        response = client.post("/api/session", json=body)
        assert response.status_code == 422
        assert SECRET not in response.text, response.text
        assert all(set(problem) == {"loc", "msg", "type"} for problem in response.json()["detail"])
        assert (
            client.get(
                "/api/incidents", params={"limit": SECRET}, headers={"Authorization": f"Bearer {ALICE_TOKEN}"}
            ).text.count(SECRET)
            == 0
        )
