"""RTSP and HTTP(S)/Icecast streams as a source, reconnected after errors.

Errors (refused, reset, timed out, truncated) are retried with exponential backoff and jitter, up to
``ReconnectPolicy.max_attempts`` consecutive failed attempts; a clean end of stream (the server closed a response
whose end it had announced) finishes the stream.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Final

import av
import av.error

from actors.capture.blocks import AudioBlock, SourceError
from actors.capture.ffmpeg import decode_audio
from config.redaction import redact_text, redact_url

log = logging.getLogger(__name__)

URL_SCHEMES: Final = ("rtsp", "rtsps", "http", "https")


@dataclass(frozen=True, kw_only=True)
class ReconnectPolicy:
    """Exponential backoff with jitter between consecutive failed attempts to reach a network source."""

    max_attempts: int = 8
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"ReconnectPolicy.max_attempts must be at least 1, got {self.max_attempts}")
        if not 0 < self.base_delay_s <= self.max_delay_s:
            raise ValueError(
                f"ReconnectPolicy needs 0 < base_delay_s <= max_delay_s, got {self.base_delay_s}, {self.max_delay_s}"
            )

    def delay_s(self, failures: int, rng: random.Random) -> float:
        """Wait after the ``failures``-th consecutive failure: half the capped exponential step plus jitter.

        The jitter keeps many cameras that dropped together from reconnecting in lockstep.
        """
        step = min(self.max_delay_s, self.base_delay_s * 2.0 ** (failures - 1))
        return step / 2 + rng.uniform(0.0, step / 2)


def _is_permanent(error: av.error.FFmpegError) -> bool:
    """Errors that retrying cannot fix: 4xx answers, non-audio data, missing demuxers, decoders or protocols."""
    return isinstance(
        error,
        av.error.HTTPClientError
        | av.error.InvalidDataError
        | av.error.DecoderNotFoundError
        | av.error.DemuxerNotFoundError
        | av.error.ProtocolNotFoundError,
    )


def _ffmpeg_reason(error: av.error.FFmpegError) -> str:
    return str(error.strerror or error)


class UrlSource:
    """An RTSP or HTTP(S)/Icecast stream read by FFmpeg, reconnected after errors."""

    kind = "url"
    live = True
    declared_seconds: float | None = None

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        reconnect: ReconnectPolicy = ReconnectPolicy(),
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self.description = redact_url(url)
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.reconnect = reconnect
        self.reconnects = 0
        self.warnings: list[str] = []
        self._rng = rng or random.Random()

    def blocks(self, stop: threading.Event) -> Generator[AudioBlock, None, None]:
        failures = 0
        connected_before = False
        while not stop.is_set():
            delivered = False
            try:
                with self._open() as container:
                    if connected_before:
                        self.reconnects += 1
                        log.info(
                            "network source reconnected",
                            extra={"source": self.description, "reconnects": self.reconnects},
                        )
                    for block in decode_audio(container, self.description, stop):
                        yield replace(block, discontinuity=connected_before and not delivered)
                        delivered = True
                return  # clean end of stream, or stopped
            except av.error.FFmpegError as error:
                if _is_permanent(error) and not delivered:
                    raise SourceError(self.description, _ffmpeg_reason(error)) from error
                reason = _ffmpeg_reason(error)
            connected_before = connected_before or delivered
            failures = 1 if delivered else failures + 1
            if failures >= self.reconnect.max_attempts:
                raise SourceError(self.description, f"gave up after {failures} failed attempt(s): {reason}")
            delay = self.reconnect.delay_s(failures, self._rng)
            log.warning(
                "network source failed; reconnecting",
                extra={
                    "source": self.description,
                    "reason": redact_text(reason),
                    "failures": failures,
                    "delay_s": round(delay, 3),
                },
            )
            if stop.wait(delay):
                return

    def _open(self) -> av.container.InputContainer:
        options = {"rtsp_transport": "tcp"} if self.url.startswith(("rtsp:", "rtsps:")) else {}
        return av.open(self.url, mode="r", options=options, timeout=(self.connect_timeout_s, self.read_timeout_s))
