"""Scripted inputs for the incident actor: 1 s windows of one stream with chosen scores, audio and speech."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from events.catalogue import AudioChunkCaptured, DistressScored, LabelScore, PhraseHit, TranscriptProduced

RATE = 16_000
START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
HELP = PhraseHit(phrase="help me", matched_text="help me", score=0.95, start_s=0.0, end_s=0.5)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Scenario:
    """One capture session of one stream; window ``i`` covers samples [i*RATE, (i+1)*RATE)."""

    stream_id: str = "hall-1"
    session_start: datetime = START
    correlation_id: str = "session-1"
    seed: int = 7
    _rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def at(self, window: int) -> datetime:
        return self.session_start + timedelta(seconds=window)

    def chunk(self, window: int, *, is_last: bool = False) -> AudioChunkCaptured:
        samples = (self._rng.standard_normal(RATE) * 3000).astype("<i2")
        return AudioChunkCaptured(
            stream_id=self.stream_id,
            correlation_id=self.correlation_id,
            occurred_at=self.at(window),
            sequence=window,
            sample_offset=window * RATE,
            sample_rate=RATE,
            captured_at=self.at(window),
            pcm16=samples.tobytes(),
            clipped_samples=0,
            nonfinite_samples=0,
            is_last=is_last,
        )

    def score(
        self,
        window: int,
        score: float = 0.1,
        *,
        label: str = "scream",
        phrases: tuple[PhraseHit, ...] = (),
        extra_labels: tuple[LabelScore, ...] = (),
    ) -> DistressScored:
        positive = score >= 0.6
        return DistressScored(
            stream_id=self.stream_id,
            correlation_id=self.correlation_id,
            occurred_at=self.at(window) + timedelta(milliseconds=300),
            sequence=window,
            sample_offset=window * RATE,
            score=score,
            acoustic_probability=score,
            threshold=0.6,
            is_distress=positive,
            labels=(LabelScore(label=label, score=score), *extra_labels),
            phrases=phrases,
            rms_dbfs=-18.0 if positive else -45.0,
            pitch_hz=620.0 if positive else 0.0,
            reason=f"{label} {score:.2f}" if positive else "",
            model_id="test-model",
            model_version="1",
        )

    def transcript(
        self,
        first_window: int,
        last_window: int,
        text: str,
        phrases: tuple[PhraseHit, ...] = (),
        *,
        partial: bool = False,
    ) -> TranscriptProduced:
        return TranscriptProduced(
            stream_id=self.stream_id,
            correlation_id=self.correlation_id,
            occurred_at=self.at(last_window + 1),
            text=text,
            words=(),
            language="en",
            model_id="whisper-tiny",
            model_version="1",
            word_timestamps="whisper",
            first_sequence=first_window,
            last_sequence=last_window,
            start_sample=first_window * RATE,
            end_sample=(last_window + 1) * RATE,
            avg_logprob=-0.2,
            no_speech_prob=0.01,
            is_partial=partial,
            guard_flags=(),
            phrases=phrases,
        )

    def pcm(self, chunks: list[AudioChunkCaptured], start_sample: int, end_sample: int) -> bytes:
        joined = b"".join(chunk.pcm16 for chunk in chunks)
        first = chunks[0].sample_offset
        return joined[2 * (start_sample - first) : 2 * (end_sample - first)]
