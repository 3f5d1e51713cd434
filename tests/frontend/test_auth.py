"""Password hashes, tokens, signed sessions (recorded in a real SQLite database), CSRF tokens, device cookies,
throttling and the session key file."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from config import load_settings
from config.dashboard import DashboardConfig, DashboardToken, DashboardUser
from frontend.auth import (
    Attempt,
    Authenticator,
    AuthError,
    LoginThrottle,
    Operator,
    hash_password,
    load_or_create_secret,
    new_token,
    rotate_secret,
    token_digest,
    verify_password,
)
from frontend.server import session_store
from projections.sessions import SessionStore

SECRET = bytes(range(32))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SessionStore]:
    opened = session_store(load_settings(data_dir=tmp_path))
    yield opened
    opened.dispose()


def authenticator(store: SessionStore, session_s: float = 3600.0, secret: bytes = SECRET) -> Authenticator:
    return Authenticator(
        [DashboardUser(name="bob", password_hash=hash_password("s3cret pass", n=2**10))],
        [
            DashboardToken(name="alice", token_sha256=token_digest("alice-token")),
            DashboardToken(name="cron", token_sha256=token_digest("cron-token")),
        ],
        secret=secret,
        session_s=session_s,
        store=store,
    )


def test_password_hashes_are_salted_scrypt_and_verify() -> None:
    first, second = hash_password("hunter2", n=2**10), hash_password("hunter2", n=2**10)
    assert first != second and first.startswith("scrypt$1024$8$1$") and "hunter2" not in first
    assert verify_password("hunter2", first) and verify_password("hunter2", second)
    assert not verify_password("hunter3", first)
    DashboardUser(name="bob", password_hash=first)  # the settings accept what we produce


@pytest.mark.parametrize(
    "encoded",
    [
        "bcrypt$1$2$3$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==",
        "scrypt$1000$8$1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==",
        "scrypt$1024$8$1$!!$aGFzaGhhc2hoYXNoaGFzaA==",
        "scrypt$1024$8$1$c2FsdA==$aGFzaA==",
        "scrypt$x$8$1$a$b",
        "scrypt$2097152$8$1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==",
    ],
)
def test_malformed_or_dangerous_hashes_are_refused(encoded: str) -> None:
    with pytest.raises(AuthError):
        verify_password("anything", encoded)


def test_empty_and_huge_passwords_are_refused() -> None:
    with pytest.raises(AuthError, match="empty"):
        hash_password("")
    with pytest.raises(AuthError, match="at most"):
        hash_password("x" * 1025)


def test_passwords_and_tokens_identify_their_operator(store: SessionStore) -> None:
    auth = authenticator(store)
    assert auth.check_password("bob", "s3cret pass") == Operator(name="bob", via="password")
    assert auth.check_password("bob", "wrong") is None
    assert auth.check_password("mallory", "s3cret pass") is None
    assert auth.check_token("alice-token") == Operator(name="alice", via="token")
    assert auth.check_token("cron-token") == Operator(name="cron", via="token")
    assert auth.check_token("alice-token ") is None and auth.check_token("") is None
    assert len(new_token()) >= 40 and new_token() != new_token()


def test_sessions_are_signed_recorded_expire_and_can_be_revoked(store: SessionStore) -> None:
    auth = authenticator(store)
    cookie, session = auth.issue_session(Operator(name="bob", via="password"))
    assert auth.read_session(cookie) == session and session.operator == "bob"
    payload, timestamp, signature = cookie.split(".")
    for forged in (
        f"{payload}.{timestamp}.{signature[:-2]}",
        f"{payload[:-1]}A.{timestamp}.{signature}",
        f"{payload}.AAAA.{signature}",
        "",
        "garbage",
    ):
        assert auth.read_session(forged) is None, forged
    assert authenticator(store, secret=b"k" * 32).read_session(cookie) is None  # another key
    auth.revoke(session)
    assert auth.read_session(cookie) is None
    assert authenticator(store).read_session(cookie) is None  # a new process reads the same record
    short = authenticator(store, session_s=1)
    brief_cookie, _ = short.issue_session(Operator(name="bob", via="password"))
    time.sleep(1.5)
    assert short.read_session(brief_cookie) is None  # expired


def test_csrf_tokens_are_bound_to_their_session(store: SessionStore) -> None:
    auth = authenticator(store)
    _, first = auth.issue_session(Operator(name="bob", via="password"))
    _, second = auth.issue_session(Operator(name="bob", via="password"))
    assert auth.check_csrf(first, auth.csrf_token(first))
    assert not auth.check_csrf(first, auth.csrf_token(second))
    assert not auth.check_csrf(first, "")


def test_device_cookies_name_their_operator(store: SessionStore) -> None:
    auth = authenticator(store)
    cookie = auth.device_cookie(Operator(name="bob", via="password"))
    device = auth.device_of(cookie, "bob")
    another = auth.device_cookie(Operator(name="bob", via="password"))
    assert device is not None and auth.device_of(another, "bob") not in (None, device)
    assert auth.device_of(cookie, "alice") is None
    assert auth.device_of(cookie[:-2], "bob") is None and auth.device_of(None, "bob") is None
    assert authenticator(store, secret=b"k" * 32).device_of(cookie, "bob") is None


def test_an_authenticator_needs_a_real_secret(store: SessionStore) -> None:
    with pytest.raises(AuthError, match="at least 32 bytes"):
        authenticator(store, secret=b"short")


def test_throttle_counts_per_account_and_client_until_the_window_passes() -> None:
    throttle = LoginThrottle(max_failures=3, window_s=2)
    guess = Attempt(account="bob", client="10.0.0.1")
    for _ in range(3):
        assert throttle.retry_after(guess) is None
        throttle.failed(guess)
    assert 0 < (throttle.retry_after(guess) or 0) <= 2
    assert throttle.retry_after(Attempt(account="bob", client="10.0.0.2")) is None  # other clients
    assert throttle.retry_after(Attempt(account="carol", client="10.0.0.1")) is None  # other accounts
    assert throttle.retry_after(Attempt(account="bob", client="10.0.0.1", device="d1")) is None  # a known browser
    time.sleep(2.1)
    assert throttle.retry_after(guess) is None  # the failures left the window
    throttle.failed(guess)
    throttle.succeeded(guess)
    for _ in range(2):
        throttle.failed(guess)
    assert throttle.retry_after(guess) is None  # success started the count again


def test_throttle_counts_one_client_over_all_accounts() -> None:
    throttle = LoginThrottle(max_failures=2, window_s=60)
    for number in range(10):  # one password sprayed over ten names
        throttle.failed(Attempt(account=f"user{number}", client="10.0.0.1"))
    assert throttle.retry_after(Attempt(account="bob", client="10.0.0.1")) is not None
    assert throttle.retry_after(Attempt(account="bob", client="10.0.0.2")) is None


def test_the_session_key_is_made_once_kept_private_and_rotated(tmp_path: Path) -> None:
    path = tmp_path / "dashboard" / "session.key"
    key = load_or_create_secret(path)
    assert len(key) == 32 and load_or_create_secret(path) == key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    rotate_secret(path)
    assert load_or_create_secret(path) != key and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [entry.name for entry in path.parent.iterdir()] == ["session.key"]
    path.write_bytes(b"short")
    with pytest.raises(AuthError, match="delete it"):
        load_or_create_secret(path)


def test_dashboard_settings_validate_accounts() -> None:
    token = {"name": "alice", "token_sha256": "a" * 64}
    for bad in (
        {"tokens": [token, token]},
        {"tokens": [{**token, "name": "system"}]},
        {"tokens": [{**token, "token_sha256": "plain-text-token"}]},
        {"users": [{"name": "bob", "password_hash": "hunter2"}]},
        {"users": [{"name": "bob\n", "password_hash": hash_password("x", n=2**10)}]},
        {"port": 70000},
        {"trusted_proxies": ["proxy.example"]},
        {"max_body_kbytes": 0},
    ):
        with pytest.raises(ValidationError):
            DashboardConfig.model_validate(bad)
    proxies = ["10.0.0.1", "10.1.0.0/16"]
    settings = load_settings(dashboard={"tokens": [token], "port": 9000, "trusted_proxies": proxies})
    assert settings.dashboard.port == 9000 and settings.dashboard.tokens[0].name == "alice"
    assert settings.dashboard.trusted_proxies == tuple(proxies)
