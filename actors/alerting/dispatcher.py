"""Delivery of one message through one channel with Apprise: one attempt per call, the outcome in plain words.

Retries are not Apprise's but the actor's: each attempt is recorded on the alerts topic (AlertFailed with the
attempt count), so the backoff schedule and the attempt budget survive restarts. Everything that leaves here
(reasons, log lines) is redacted: Apprise error text can quote the URLs that hold the secrets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from apprise import Apprise, AppriseAsset, AppriseAttachment, NotifyFormat, NotifyType

from actors.alerting.routing import Channel, ChannelRegistry
from actors.clips import ClipError, ClipStore
from config.redaction import redact_text

log = logging.getLogger(__name__)

_NOTIFY_TYPES = {
    "critical": NotifyType.FAILURE,
    "high": NotifyType.FAILURE,
    "medium": NotifyType.WARNING,
}
_PROBLEM_LEVELS = frozenset({"WARNING", "ERROR", "CRITICAL"})


@dataclass(frozen=True, kw_only=True)
class DeliveryResult:
    """What one attempt achieved; ``retryable`` is False when trying again cannot help."""

    channel: str
    ok: bool
    reason: str = ""
    retryable: bool = True


class Dispatcher:
    """Sends through the registry's channels; attaches the evidence clip where the channel takes attachments."""

    def __init__(self, channels: ChannelRegistry, *, asset: AppriseAsset, clips: ClipStore | None = None) -> None:
        self.channels = channels
        self.asset = asset
        self.clips = clips

    def send(
        self, channel_id: str, *, title: str, body: str, severity: str, clip_sha256: str | None = None
    ) -> DeliveryResult:
        channel = self.channels.get(channel_id)
        if channel is None:
            return DeliveryResult(
                channel=channel_id,
                ok=False,
                retryable=False,
                reason=f"channel {channel_id!r} is not configured any more",
            )
        return self.send_to(channel, title=title, body=body, severity=severity, clip_sha256=clip_sha256)

    def send_to(
        self, channel: Channel, *, title: str, body: str, severity: str, clip_sha256: str | None = None
    ) -> DeliveryResult:
        services = Apprise(asset=self.asset)
        services.add(channel.service)
        try:
            result = services.notify(
                body=body,
                title=title,
                notify_type=_NOTIFY_TYPES.get(severity, NotifyType.INFO),
                body_format=NotifyFormat.TEXT,
                attach=self._attachment(channel, clip_sha256),
            )
        except Exception as error:  # a plugin bug must cost one attempt, not the actor
            return DeliveryResult(channel=channel.id, ok=False, reason=redact_text(f"{type(error).__name__}: {error}"))
        with result:
            if result:
                return DeliveryResult(channel=channel.id, ok=True)
            problems = [entry.message for entry in result.logs() if entry.level in _PROBLEM_LEVELS]
            reason = "; ".join(dict.fromkeys(problems)) or f"Apprise reported {result.status.name.lower()}"
        return DeliveryResult(channel=channel.id, ok=False, reason=redact_text(reason))

    def _attachment(self, channel: Channel, clip_sha256: str | None) -> AppriseAttachment | None:
        """The verified clip, or nothing: a missing or altered clip must not hold back the alert itself."""
        if clip_sha256 is None or self.clips is None or not channel.supports_attachments:
            return None
        try:
            self.clips.read(clip_sha256)  # checks the file against its address
        except ClipError as error:
            log.warning("evidence clip not attached", extra={"channel": channel.id, "reason": str(error)})
            return None
        attachment = AppriseAttachment(asset=self.asset)
        attachment.add(str(self.clips.path_for(clip_sha256)))
        return attachment
