"""What the incident engine remembers per stream: recent windows and transcripts, the stream's clock (stream
time, from sample offsets), the incident it tracks and the clips waiting for their post-roll audio.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from actors.incidents.audio_buffer import AudioBuffer
from actors.incidents.evidence import Evidence
from domain.types import Severity
from events.catalogue import DistressScored, TranscriptProduced

PHRASE_SCORES_KEPT = 32  # phrase scores remembered per stream to recognise one delivered again


@dataclass
class Published:
    score: float
    labels: frozenset[str]
    phrases: frozenset[tuple[str, float]]
    transcript: str
    clip: tuple[str, float] | None


@dataclass
class TrackedIncident:
    incident_id: str
    stream_id: str
    correlation_id: str | None
    severity: Severity
    onset_sample: int
    evidence: Evidence
    published: Published
    last_evidence_s: float | None  # None after a restart: the quiet period counts from the next window
    last_cause_id: str
    clip: tuple[str, float] | None = None
    clip_missing: str | None = None  # why the clip store refused the clip, until a system note has said so
    closed: bool = False


@dataclass
class PendingClip:
    incident: TrackedIncident
    start: int
    end: int
    requested_at: float


@dataclass
class StreamState:
    windows: deque[DistressScored]
    audio: AudioBuffer
    transcripts: deque[TranscriptProduced] = field(default_factory=lambda: deque(maxlen=16))
    run: str | None = None  # correlation id of the capture run the scores come from
    clock_sample: int | None = None  # the furthest acoustic window of this run: the stream's clock
    phrase_scores: deque[tuple[int, tuple[str, ...]]] = field(default_factory=lambda: deque(maxlen=PHRASE_SCORES_KEPT))
    active: TrackedIncident | None = None
    cooldown_until_s: float = -math.inf
    last_scored_at: float = 0.0  # wall clock (monotonic) of the last score
    last_audio_at: float = 0.0
    pending_clips: list[PendingClip] = field(default_factory=list)
    suppressed: int = 0

    @property
    def now_s(self) -> float:
        return (self.clock_sample or 0) / self.audio.sample_rate

    def is_news(self, scored: DistressScored) -> bool:
        """Whether ``scored`` is new to this run, moving the stream's clock on if it is a later window.

        The scorer emits a run's acoustic windows in order, so one at or behind the clock was delivered before
        (Kafka redelivery, or scored again by a restarted scorer). A phrase score is anchored where its words
        began, behind the clock, so it is known by its start and phrases instead.
        """
        if scored.phrases:
            key = (scored.sample_offset, tuple(sorted(hit.phrase for hit in scored.phrases)))
            if key in self.phrase_scores:
                return False
            self.phrase_scores.append(key)
            return True
        if self.clock_sample is not None and scored.sample_offset <= self.clock_sample:
            return False
        self.clock_sample = scored.sample_offset
        return True
