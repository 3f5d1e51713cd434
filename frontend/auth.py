"""Operator authentication: hashed passwords and tokens, signed session cookies, CSRF tokens, login throttling.

Nothing secret is stored or compared in the clear: passwords as salted scrypt hashes (``hashlib.scrypt``), tokens,
session ids and sign-in links as SHA-256 digests (they are random and long, so a fast hash is enough), and every
comparison is constant-time (``hmac.compare_digest``, and ``itsdangerous`` for what it signs). An unknown user
name is checked against a dummy hash, so response times do not tell which operator names exist. The authenticated
name is what every command records as its actor. Libraries do the delicate parts: ``itsdangerous`` signs cookies
and CSRF tokens, ``limits`` keeps the throttle's moving window, and uvicorn's ``ProxyHeadersMiddleware`` (set up in
``frontend.app``) decides which proxies' ``X-Forwarded-For`` to believe.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from itsdangerous import BadData, Signer, URLSafeTimedSerializer
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from config.dashboard import DashboardConfig, DashboardToken, DashboardUser
from projections.sessions import SessionStore

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_MAX_SCRYPT_N = 2**20
_SECRET_BYTES = 32
MAX_PASSWORD_CHARS = 1024
MAX_TOKEN_CHARS = 512
_MAX_COOKIE_CHARS = 1024
ONE_TIME_OPERATOR = "operator"


class AuthError(ValueError):
    """A password hash, token or secret file is malformed."""


@dataclass(frozen=True, kw_only=True)
class Operator:
    """Who is making a request, and how they proved it (``password``, ``token`` or ``session``)."""

    name: str
    via: str


# ------------------------------------------------------------------------------------------- passwords


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError) as error:
        raise AuthError(f"not base64: {text!r}") from error


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$n$r$p$salt$hash`` with a fresh 16-byte salt, for ``dashboard.users[].password_hash``."""
    if not password:
        raise AuthError("a password must not be empty")
    if len(password) > MAX_PASSWORD_CHARS:
        raise AuthError(f"a password must be at most {MAX_PASSWORD_CHARS} characters")
    salt = os.urandom(16)
    digest = _scrypt(password, salt, n, r, p)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches an encoded hash; the digests are compared in constant time."""
    n, r, p, salt, expected = _parse_hash(encoded)
    return hmac.compare_digest(_scrypt(password[:MAX_PASSWORD_CHARS], salt, n, r, p), expected)


def _parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise AuthError("a password hash must look like scrypt$n$r$p$salt$hash")
    try:
        n, r, p = (int(part) for part in parts[1:4])
    except ValueError as error:
        raise AuthError(f"scrypt parameters must be integers: {encoded.split('$')[1:4]}") from error
    if n < 2 or n > _MAX_SCRYPT_N or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise AuthError(f"scrypt parameters out of range: n={n} (a power of two up to 2**20), r={r}, p={p}")
    salt, digest = _unb64(parts[4]), _unb64(parts[5])
    if len(salt) < 8 or len(digest) < 16:
        raise AuthError("scrypt salt or hash too short")
    return n, r, p, salt, digest


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=256 * r * n + 1_048_576)


_DUMMY_HASH = hash_password("no such operator")


# -------------------------------------------------------------------------------------------- redirects


def local_path(target: str) -> str:
    """``target`` when it can only mean a path on this site, else ``/`` (where to go after signing in).

    Browsers drop tabs and line breaks from a URL and read ``\\`` as ``/``, so ``/<TAB>/host`` or ``/\\host``
    would leave the site as ``//host`` does. Only a single leading ``/`` (so no scheme and no host) and no control
    character, white space or backslash anywhere is accepted; nothing is cleaned, since cleaning is what browsers
    do differently.
    """
    unsafe = any(
        character.isspace() or ord(character) < 0x20 or ord(character) == 0x7F or character == "\\"
        for character in target
    )
    return target if target.startswith("/") and not target.startswith("//") and not unsafe else "/"


# ---------------------------------------------------------------------------------------------- tokens


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def load_or_create_secret(path: Path) -> bytes:
    """The key that signs session cookies, kept in a private file so sessions survive a restart."""
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it meanwhile
            return load_or_create_secret(path)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(os.urandom(_SECRET_BYTES))
        secret = path.read_bytes()
    if len(secret) < _SECRET_BYTES:
        raise AuthError(f"session key {path} is shorter than {_SECRET_BYTES} bytes; delete it to make a new one")
    return secret


def rotate_secret(path: Path) -> None:
    """Replaces the session key at once (a private file renamed over the old one): cookies, CSRF tokens and device
    cookies signed with the old key stop verifying when the dashboard next starts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    descriptor = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(os.urandom(_SECRET_BYTES))
    os.replace(fresh, path)


# ----------------------------------------------------------------------------------------- authenticator


def add_sign_in_link(store: SessionStore, minutes: float) -> str:
    """A one-time sign-in token for ``ONE_TIME_OPERATOR`` in ``store``, valid for ``minutes``; the database holds
    it, so a dashboard already running accepts a link made by another process (``distress dashboard sign-in-link``)."""
    token = new_token()
    store.add_link(token, ONE_TIME_OPERATOR, expires_at=datetime.now(UTC) + timedelta(minutes=minutes))
    return token


@dataclass(frozen=True, kw_only=True)
class Session:
    """A session that still stands: its cookie verified and its server-side record is neither ended nor expired."""

    operator: str
    expires_at: float
    session_id: str


class Authenticator:
    """Checks passwords and tokens; issues, reads and ends sessions.

    A session cookie is an ``itsdangerous``-signed random id (signature and age checked first, so a forged cookie
    never reaches the database) whose record in ``store`` says whether it still stands.
    """

    COOKIE = "distress_session"
    DEVICE_COOKIE = "distress_device"
    DEVICE_S = 90 * 24 * 3600

    def __init__(
        self,
        users: Iterable[DashboardUser],
        tokens: Iterable[DashboardToken],
        *,
        secret: bytes,
        session_s: float,
        store: SessionStore,
    ) -> None:
        if len(secret) < _SECRET_BYTES:
            raise AuthError(f"the session secret must be at least {_SECRET_BYTES} bytes")
        self.users = {user.name: user.password_hash for user in users}
        for encoded in self.users.values():
            _parse_hash(encoded)  # refuse a malformed hash at start, not at the first sign-in
        self.tokens = tuple(tokens)
        self.session_s = session_s
        self.store = store
        self._sessions = URLSafeTimedSerializer(secret, salt="distress.session")
        self._devices = URLSafeTimedSerializer(secret, salt="distress.device")
        self._csrf = Signer(secret, salt="distress.csrf")

    @classmethod
    def from_config(cls, config: DashboardConfig, secret: bytes, store: SessionStore) -> Authenticator:
        return cls(config.users, config.tokens, secret=secret, session_s=config.session_hours * 3600, store=store)

    def check_password(self, name: str, password: str) -> Operator | None:
        encoded = self.users.get(name)
        matched = verify_password(password, encoded or _DUMMY_HASH)
        return Operator(name=name, via="password") if matched and encoded is not None else None

    def check_token(self, token: str) -> Operator | None:
        """Compares against every stored digest (no early exit), so timing does not depend on which matched."""
        digest = token_digest(token[:MAX_TOKEN_CHARS])
        found: str | None = None
        for account in self.tokens:
            if hmac.compare_digest(digest, account.token_sha256):
                found = account.name
        return Operator(name=found, via="token") if found is not None else None

    def add_link(self, minutes: float) -> str:
        """A one-time sign-in token for ``ONE_TIME_OPERATOR``, valid for ``minutes`` (for when no accounts exist)."""
        return add_sign_in_link(self.store, minutes)

    def redeem_link(self, token: str) -> Operator | None:
        """Signs in with a one-time link's token: the first use consumes it, in the database, for good."""
        name = self.store.redeem_link(token[:MAX_TOKEN_CHARS], datetime.now(UTC))
        return Operator(name=name, via="link") if name is not None else None

    # ---------------------------------------------------------------------------------------- sessions

    def issue_session(self, operator: Operator) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        issued_at = datetime.now(UTC)
        expires_at = issued_at + timedelta(seconds=self.session_s)
        self.store.start(session_id, operator.name, issued_at=issued_at, expires_at=expires_at)
        session = Session(operator=operator.name, expires_at=expires_at.timestamp(), session_id=session_id)
        return self._sessions.dumps(session_id), session

    def read_session(self, cookie: str) -> Session | None:
        """The session a cookie carries, or None when it is forged, expired, ended or malformed."""
        try:
            session_id = self._sessions.loads(cookie[:_MAX_COOKIE_CHARS], max_age=round(self.session_s))
        except BadData:
            return None
        if not isinstance(session_id, str):
            return None
        stored = self.store.active(session_id, datetime.now(UTC))
        if stored is None:
            return None
        return Session(operator=stored.operator, expires_at=stored.expires_at.timestamp(), session_id=session_id)

    def revoke(self, session: Session) -> None:
        """Sign-out: the session ends on the server, for every copy of its cookie and across restarts."""
        self.store.end(session.session_id, datetime.now(UTC))

    def csrf_token(self, session: Session) -> str:
        """Bound to the session: a page from this dashboard can send it, another site cannot know it."""
        return self._csrf.get_signature(session.session_id).decode("ascii")

    def check_csrf(self, session: Session, token: str) -> bool:
        return self._csrf.verify_signature(session.session_id, token[:_MAX_COOKIE_CHARS])

    # ----------------------------------------------------------------------------------------- devices

    def device_cookie(self, operator: Operator) -> str:
        """Marks a browser that signed in as ``operator``: the throttle counts its failures apart from everyone's."""
        return self._devices.dumps([operator.name, secrets.token_urlsafe(16)])

    def device_of(self, cookie: str | None, name: str) -> str | None:
        """The device id in ``cookie`` when it is genuine, recent and was given to ``name``, else None."""
        if not cookie:
            return None
        try:
            owner, device = self._devices.loads(cookie[:_MAX_COOKIE_CHARS], max_age=self.DEVICE_S)
        except (BadData, TypeError, ValueError):
            return None
        return device if owner == name and isinstance(device, str) else None


# -------------------------------------------------------------------------------------------- throttle


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """Whose password a sign-in tries, from which client address, and the browser's device id if it has one."""

    account: str
    client: str
    device: str | None = None


class LoginThrottle:
    """Wrong passwords counted in a moving window (the ``limits`` library, in memory): ``max_failures`` per account
    and client, and five times as many per client over all accounts (one password sprayed over many names).

    A browser that signed in as the account before carries a device cookie and is counted on its own, so nobody
    else's failures lock it out (OWASP's "device cookies"). Tokens are never throttled: 256 random bits cannot be
    guessed, and refusing a valid one would only turn the throttle into a lock-out weapon.
    """

    def __init__(self, max_failures: int = 10, window_s: int = 300) -> None:
        self.per_account = RateLimitItemPerSecond(max_failures, window_s)
        self.per_client = RateLimitItemPerSecond(max_failures * 5, window_s)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def _counters(self, attempt: Attempt) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
        if attempt.device is not None:
            return [(self.per_account, ("device", attempt.device))]
        account = hashlib.sha256(attempt.account.encode("utf-8")).hexdigest()  # any text, one key part
        return [(self.per_account, ("account", account, attempt.client)), (self.per_client, ("client", attempt.client))]

    def retry_after(self, attempt: Attempt) -> float | None:
        """Seconds to wait before this attempt may be checked, or None when it may be checked now."""
        waits = [
            self._limiter.get_window_stats(item, *key).reset_time - time.time()
            for item, key in self._counters(attempt)
            if not self._limiter.test(item, *key)
        ]
        return max(1.0, *waits) if waits else None

    def failed(self, attempt: Attempt) -> None:
        for item, key in self._counters(attempt):
            self._limiter.hit(item, *key)

    def succeeded(self, attempt: Attempt) -> None:
        """Forgets the account's failures from this client; the client's count over all accounts stays."""
        item, key = self._counters(attempt)[0]
        self._limiter.clear(item, *key)
