"""What a notification says: stream name, severity, local time, reason, what was heard, top sounds, the link."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from actors.alerting.incidents import IncidentBook
from actors.alerting.messages import MessageRenderer
from events.catalogue import IncidentAcknowledged, IncidentOpened, LabelScore

ONSET = datetime(2026, 11, 26, 21, 4, 5, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def renderer() -> MessageRenderer:
    return MessageRenderer(
        dashboard_url="https://distress.example.org/",
        local=lambda moment: moment.astimezone(BERLIN),
        stream_names={"lobby-1": "Lobby camera"},
    )


def opened(transcript: str = "Help me! Somebody help.") -> IncidentOpened:
    return IncidentOpened(
        stream_id="lobby-1",
        incident_id="inc-7",
        severity="high",
        score=0.96,
        reason="scream 0.93 + 'help me'",
        onset_sample=0,
        onset_at=ONSET,
        phrases=(),
        transcript=transcript,
        clip_sha256=None,
        clip_duration_s=None,
        labels=(
            LabelScore(label="speech", score=0.41),
            LabelScore(label="scream", score=0.93),
            LabelScore(label="crying", score=0.2),
            LabelScore(label="music", score=0.1),
        ),
    )


def test_opened_message_carries_everything_an_operator_needs_first() -> None:
    book = IncidentBook()
    event = opened()
    message = renderer().transition(book.apply(event), "opened", event, "inc-7/evt/ch")
    assert message.title == "[HIGH] Lobby camera: scream 0.93 + 'help me'"
    assert message.body.splitlines() == [
        "Distress detected on Lobby camera (lobby-1).",
        "Severity: high",
        "Time: 2026-11-26 22:04:05 CET",
        "Reason: scream 0.93 + 'help me'",
        'Heard: "Help me! Somebody help."',
        "Top sounds: scream 0.93, speech 0.41, crying 0.20",
        "Incident: https://distress.example.org/incidents/inc-7",
        "",
        "Ref: inc-7/evt/ch",
    ]


def test_long_transcripts_are_cut_to_a_snippet() -> None:
    book = IncidentBook()
    event = opened(transcript="help " * 100)
    heard = next(
        line
        for line in renderer().transition(book.apply(event), "opened", event, "k").body.splitlines()
        if line.startswith("Heard")
    )
    assert len(heard) < 180 and heard.endswith('…"')


def test_acknowledgement_escalation_and_digest_messages() -> None:
    book = IncidentBook()
    book.apply(opened())
    ack = IncidentAcknowledged(stream_id="lobby-1", incident_id="inc-7", actor="operator:ana", note="on my way")
    incident = book.apply(ack)
    acknowledged = renderer().transition(incident, "acknowledged", ack, "k")
    assert acknowledged.title == "[HIGH] Lobby camera: acknowledged"
    assert "By operator:ana: on my way" in acknowledged.body.splitlines()

    escalation = renderer().escalation(incident, 2, 15, "k2")
    assert escalation.title == "[HIGH] ESCALATION 2: Lobby camera unacknowledged for 15 min"
    assert escalation.body.startswith("ESCALATION (tier 2): not acknowledged after 15 min on Lobby camera (lobby-1).")

    line = renderer().digest_line(incident, "opened", ONSET)
    assert line == "22:04 HIGH opened: scream 0.93 + 'help me' - https://distress.example.org/incidents/inc-7"
    digest = renderer().digest("lobby-1", [line, line], ["digest", "digest"], "digest/k")
    assert digest.title == "Digest: 2 incident updates on Lobby camera"
    assert digest.body.splitlines()[:2] == ["2 incident updates on Lobby camera (lobby-1) (digest):", line]
