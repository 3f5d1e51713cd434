"""Real notification endpoints on 127.0.0.1 for the alerting tests: an HTTP receiver for ``json://`` and an SMTP
server (aiosmtpd) with password authentication for ``mailto://``."""

from __future__ import annotations

import email
import email.policy
import json
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.conftest import free_port

HOLD_LIMIT_S = 120.0


class JsonReceiver:
    """Records Apprise ``json://`` posts; answers with scripted statuses (then 200), and can hold a request.

    ``delivered`` holds only the posts answered 200; ``received`` holds every post that arrived.
    """

    def __init__(self, path_token: str = "hook") -> None:
        self.path_token = path_token
        self.received: list[dict[str, Any]] = []
        self.delivered: list[dict[str, Any]] = []
        self._statuses: deque[int] = deque()
        self._hold_next = False
        self.holding = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, credentials: str = "") -> str:
        return f"json://{credentials}127.0.0.1:{self.port}/{self.path_token}"

    def answer(self, statuses: Iterable[int]) -> None:
        """Answer the next posts with these statuses, in order."""
        with self._lock:
            self._statuses.extend(statuses)

    def hold_next(self) -> None:
        """Keep the next post waiting (no answer) until ``release``: a delivery caught in flight."""
        self._hold_next = True

    def release(self) -> None:
        self._release.set()

    def titles(self) -> list[str]:
        return [post["title"] for post in self.delivered]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                post = json.loads(self.rfile.read(length))
                post["path"], post["authorization"] = self.path, self.headers.get("Authorization")
                with receiver._lock:
                    receiver.received.append(post)
                    held, receiver._hold_next = receiver._hold_next, False
                    status = receiver._statuses.popleft() if receiver._statuses else 200
                if held:
                    receiver.holding.set()
                    receiver._release.wait(HOLD_LIMIT_S)
                    status = 500  # the sender is gone by now: this request was never answered to it
                elif status == 200:
                    with receiver._lock:
                        receiver.delivered.append(post)
                self.send_response(status)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler

    def __enter__(self) -> JsonReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


@dataclass(frozen=True)
class ReceivedMail:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["subject"])

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None, "the mail has no text/plain part"
        return str(body.get_content()).replace("\r\n", "\n")


class _MailHandler:
    def __init__(self) -> None:
        self.mails: list[ReceivedMail] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.mails.append(ReceivedMail(str(envelope.mail_from), list(envelope.rcpt_tos), message))
        return "250 OK"


@contextmanager
def smtp_server(login: str, password: str) -> Iterator[tuple[int, list[ReceivedMail]]]:
    """A real SMTP server on 127.0.0.1 that accepts mail only after AUTH with ``login``/``password``."""

    def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
        valid = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == login.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=valid)

    handler = _MailHandler()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=authenticate,
        auth_require_tls=False,
        auth_required=True,
    )
    controller.start()
    try:
        yield controller.port, handler.mails
    finally:
        controller.stop()
