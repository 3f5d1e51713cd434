"""Redaction of stream and Apprise URLs: no credential, path token, query value or host-slot token survives."""

from __future__ import annotations

import pytest

from config.redaction import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "redacted", "secrets"),
    [
        ("rtsp://admin:cam-pass@10.0.0.5:554/live/ch1", "rtsp://***@10.0.0.5:554/***", ["admin", "cam-pass", "live"]),
        ("rtsp://camera1/stream", "rtsp://camera1/***", ["stream"]),  # a network scheme keeps a bare host name
        ("https://hooks.slack.com/services/T000/B000/XXXX", "https://hooks.slack.com/***", ["T000", "XXXX"]),
        (
            "mailto://alerts:pw-99@smtp.example.org?to=oncall@example.org&smtp=smtp.example.org",
            "mailto://***@smtp.example.org?***",
            ["pw-99", "oncall@"],
        ),
        ("mailtos://me:app-pw@gmail.com", "mailtos://***@gmail.com", ["app-pw"]),
        # Apprise schemes that put tokens where the host would be
        ("slack://TokenA/TokenB/TokenC/#general", "slack://***/***", ["TokenA", "tokena", "TokenB", "general"]),
        ("slack://xoxb-1234-1234-4ddbc191d40ee098cbaae6f3523ada2d/#general", "slack://***", ["xoxb", "4ddbc"]),
        (
            "twilio://AC7a1b2c:AuthTok99@15551234567/15557654321",
            "twilio://***@***/***",
            ["AC7a1b2c", "AuthTok99", "15551234567", "15557654321"],
        ),
        ("tgram://123456789:ABCdefGHIjkl/987654", "tgram://***/***", ["123456789", "ABCdef"]),
        ("pbul://o.gn5kj6nfhv736I7jC3cj3QLRiyhgl98b", "pbul://***", ["gn5kj6", "o.gn"]),
        ("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js", "discord://***/***", ["4174216298", "JHMHI8"]),
        ("gotify://gotify.example.org/AbCdEf123", "gotify://gotify.example.org/***", ["AbCdEf123"]),
        ("ntfy://localhost/alerts-topic", "ntfy://localhost/***", ["alerts-topic"]),
        ("json://user:pass@[::1]:8080/hook", "json://***@[::1]:8080/***", ["pass", "hook"]),
    ],
)
def test_redact_url_keeps_only_what_identifies_the_endpoint(url: str, redacted: str, secrets: list[str]) -> None:
    assert redact_url(url) == redacted
    for secret in secrets:
        assert secret not in redact_url(url)


def test_text_without_a_scheme_is_left_alone() -> None:
    assert redact_url("/srv/audio/ward-3.wav") == "/srv/audio/ward-3.wav"


def test_redact_text_finds_every_url_in_a_message() -> None:
    message = "delivery to slack://TokenA/TokenB/TokenC failed, then mailto://u:pw-1@smtp.example.org?to=x worked"
    assert redact_text(message) == ("delivery to slack://***/*** failed, then mailto://***@smtp.example.org?*** worked")
