"""An SMTP server that accepts the connection, then drops it mid-transaction: the alert is retried, delivered once.

The server is a real aiosmtpd server with password authentication. On the first session it takes EHLO, AUTH,
MAIL, RCPT and the whole DATA, then closes the socket without the final ``250``: by SMTP's rules the mail was
not accepted, and the sender cannot tell whether it arrived. The alerting actor must record that attempt as
failed, try again after its backoff, and stop after the one accepted delivery.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from actors.alerting.actor import run_alerting
from config import Settings
from config.alerting import AlertingConfig
from events.base import utc_now
from events.catalogue import AlertDispatched, AlertEvent, AlertFailed, AlertRequested, IncidentOpened, LabelScore
from tests.conftest import free_port, wait_for
from tests.faults.conftest import events_on

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

LOGIN, PASSWORD = "alerts", "s3cret-pass"


class DropFirstData:
    """aiosmtpd handler: the first DATA is read in full, then the connection is cut; later ones are accepted."""

    def __init__(self) -> None:
        self.sessions = 0  # DATA commands received, dropped or accepted
        self.dropped = 0
        self.accepted: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.sessions += 1
        if self.dropped == 0:
            self.dropped += 1
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()  # no reply: the client is left not knowing
            return "421 connection dropped"  # written to a closed transport: never seen by the client
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        self.accepted.append(content)
        return "250 OK"


@contextmanager
def flaky_smtp_server() -> Iterator[tuple[int, DropFirstData]]:
    def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
        return AuthResult(
            success=isinstance(auth_data, LoginPassword)
            and auth_data.login == LOGIN.encode()
            and auth_data.password == PASSWORD.encode()
        )

    handler = DropFirstData()
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
        yield controller.port, handler
    finally:
        controller.stop()


def test_a_dropped_smtp_transaction_is_retried_and_the_mail_delivered_once(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    with flaky_smtp_server() as (port, server):
        settings = kafka_settings.model_copy(
            update={
                "data_dir": tmp_path,
                "alerting": AlertingConfig.model_validate(
                    {
                        "channels": {
                            "oncall": f"mailto://{LOGIN}:{PASSWORD}@127.0.0.1:{port}"
                            "?to=oncall@example.org&from=alerts@example.org"
                        },
                        "routes": [{"name": "all", "notify": ["oncall"]}],
                        "retry": {"first_backoff_s": 0.5, "factor": 2, "max_attempts": 4},
                    }
                ),
            }
        )
        settings.ensure_topics()
        bus = settings.bus()
        stop = threading.Event()
        actor = threading.Thread(target=run_alerting, args=(settings, stop))
        actor.start()
        try:
            with bus.producer() as producer:
                producer.publish(
                    IncidentOpened(
                        stream_id="ward-3",
                        incident_id="ward-3:0123456789ab",
                        severity="high",
                        score=0.95,
                        reason="scream 0.93",
                        onset_sample=0,
                        onset_at=utc_now(),
                        labels=(LabelScore(label="scream", score=0.93),),
                        phrases=(),
                        transcript="",
                        clip_sha256=None,
                        clip_duration_s=None,
                    )
                )
            wait_for(lambda: len(server.accepted) == 1, what="the mail to be accepted on a later attempt")
            threading.Event().wait(3 * 0.5 * 2)  # longer than the next backoff: a repeat would have started
        finally:
            stop.set()
            actor.join(timeout=60)
        assert not actor.is_alive()

    assert (server.dropped, server.sessions, len(server.accepted)) == (1, 2, 1)
    assert b"Subject: [HIGH]" in server.accepted[0] and b"scream 0.93" in server.accepted[0]
    ledger = [event for event in events_on(bus, [bus.catalogue.alerts.name]) if isinstance(event, AlertEvent)]
    assert [(type(event), getattr(event, "attempts", 0), getattr(event, "final", False)) for event in ledger] == [
        (AlertRequested, 0, False),
        (AlertFailed, 1, False),
        (AlertDispatched, 2, False),
    ]
    assert len({event.alert_key for event in ledger}) == 1
