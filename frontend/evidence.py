"""Evidence for one incident: its clip (bytes, byte ranges, waveform peaks) and the scores and words around it.

Per-window scores and word times live in no read model (they are bulky and only needed when someone opens an
incident), so they are read from their topics on demand: each partition is positioned at the incident's time
span with ``offsets_for_times`` and only the stream's own messages are decoded (events are keyed by stream id).
"""

from __future__ import annotations

import io
import re
import threading
import wave
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from domain.audio import SAMPLE_RATE as PIPELINE_SAMPLE_RATE
from events import Event
from events.catalogue import DistressScored, PhraseHit, TranscriptProduced, Word
from events.kafka.bus import Bus
from events.kafka.connection import BusError
from events.kafka.log import TopicLog
from frontend.schemas import Evidence, IncidentSummary, ScorePoint, TranscriptLine, TranscriptToken, Waveform

SPAN_MARGIN = timedelta(seconds=30)  # scores and transcripts are published a little after the audio they describe
MAX_SPAN = timedelta(minutes=10)  # the chart covers at most the first ten minutes of a long incident
KAFKA_TIMEOUT_S = 5.0
CHART_LABELS = 4
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class EvidenceUnavailable(Exception):
    """The topics could not be read (broker down, topic missing); the page shows what it has without them."""


class RangeNotSatisfiable(Exception):
    """A byte range starting beyond the end of the clip."""


# ------------------------------------------------------------------------------------------ topic reads


def read_stream_span(bus: Bus, topics: Sequence[str], stream_id: str, start: datetime, end: datetime) -> list[Event]:
    """The stream's events on ``topics`` whose Kafka timestamps fall in [start, end), in partition order."""
    try:
        with TopicLog(
            bus,
            topics,
            since_ms=_millis(start),
            key=stream_id.encode(),
            purpose="dashboard.evidence",
            timeout_s=KAFKA_TIMEOUT_S,
        ) as log:
            until = log.offsets_at(_millis(end))
            return [consumed.event for batch in log.read_until(until) for consumed in batch.events]
    except BusError as error:
        raise EvidenceUnavailable(f"cannot read {', '.join(topics)}: {error}") from error


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def evidence_span(incident: IncidentSummary, now: datetime, clip_pre_s: float) -> tuple[datetime, datetime]:
    """The wall-clock span whose scores and transcripts explain the incident."""
    start = incident.onset_at - timedelta(seconds=clip_pre_s) - SPAN_MARGIN
    last = min(incident.closed_at or now, incident.onset_at + MAX_SPAN)
    return start, last + SPAN_MARGIN


# ----------------------------------------------------------------------------------------- assembling


@dataclass(frozen=True, kw_only=True)
class ClipGeometry:
    """Where the clip sits in stream time: ``[onset - clip_pre_s, ...)``, as the incident actor cuts it."""

    onset_s: float
    clip_start_s: float

    @classmethod
    def of(cls, onset_sample: int, clip_pre_s: float) -> ClipGeometry:
        onset_s = onset_sample / PIPELINE_SAMPLE_RATE
        return cls(onset_s=onset_s, clip_start_s=max(0.0, onset_s - clip_pre_s))


def assemble(
    incident: IncidentSummary,
    geometry: ClipGeometry,
    events: Iterable[Event] | None,
    *,
    clip_url: str | None,
    problem: str | None,
) -> Evidence:
    """The evidence view model; ``events`` is None when the topics could not be read (``problem`` says why)."""
    scores: dict[int, DistressScored] = {}
    transcripts: dict[tuple[int, int], TranscriptProduced] = {}
    first_sample = int(geometry.clip_start_s * PIPELINE_SAMPLE_RATE)
    for event in events or ():
        if isinstance(event, DistressScored) and event.sample_offset >= first_sample:
            scores[event.sample_offset] = event  # a re-delivered window: the later copy wins
        elif isinstance(event, TranscriptProduced) and not event.is_partial and event.end_sample > first_sample:
            transcripts[(event.start_sample, event.end_sample)] = event
    points = [
        ScorePoint(
            t_s=scored.sample_offset / PIPELINE_SAMPLE_RATE - geometry.onset_s,
            score=scored.score,
            is_distress=scored.is_distress,
            labels={item.label: item.score for item in scored.labels},
        )
        for _, scored in sorted(scores.items())
    ]
    incident_phrases = [PhraseHit(**phrase.model_dump()) for phrase in incident.phrases]
    lines = [
        _line(transcript, geometry, [*transcript.phrases, *incident_phrases])
        for _, transcript in sorted(transcripts.items())
    ]
    if not lines and incident.transcript:
        lines = [_untimed_line(incident.transcript, incident_phrases)]
    return Evidence(
        clip_url=clip_url,
        clip_start_s=geometry.clip_start_s,
        clip_duration_s=incident.clip_duration_s,
        onset_in_clip_s=geometry.onset_s - geometry.clip_start_s,
        scores=points,
        top_labels=_top_labels(points),
        transcripts=lines,
        problem=problem,
    )


def _top_labels(points: Sequence[ScorePoint]) -> list[str]:
    best: dict[str, float] = {}
    for point in points:
        for label, score in point.labels.items():
            best[label] = max(score, best.get(label, 0.0))
    return sorted(best, key=lambda label: (-best[label], label))[:CHART_LABELS]


def _line(transcript: TranscriptProduced, geometry: ClipGeometry, phrases: Sequence[PhraseHit]) -> TranscriptLine:
    start_s = transcript.start_sample / PIPELINE_SAMPLE_RATE - geometry.clip_start_s
    end_s = transcript.end_sample / PIPELINE_SAMPLE_RATE - geometry.clip_start_s
    if not transcript.words:
        untimed = _untimed_line(transcript.text, phrases)
        return untimed.model_copy(update={"start_s": start_s, "end_s": end_s})
    tokens = [
        TranscriptToken(
            text=word.text,
            start_s=word.start_s - geometry.clip_start_s,
            end_s=word.end_s - geometry.clip_start_s,
            phrase=_in_phrase(word, phrases),
        )
        for word in transcript.words
    ]
    return TranscriptLine(start_s=start_s, end_s=end_s, text=transcript.text, tokens=tokens, timed=True)


def _in_phrase(word: Word, phrases: Sequence[PhraseHit]) -> bool:
    return any(word.start_s < phrase.end_s and word.end_s > phrase.start_s for phrase in phrases)


def _untimed_line(text: str, phrases: Sequence[PhraseHit]) -> TranscriptLine:
    """Without word times, phrases are found by their matched text (case-insensitive)."""
    marked = [False] * len(text)
    folded = text.casefold()
    for phrase in phrases:
        needle = phrase.matched_text.casefold()
        position = folded.find(needle) if needle else -1
        while position >= 0:
            marked[position : position + len(needle)] = [True] * len(needle)
            position = folded.find(needle, position + len(needle))
    tokens: list[TranscriptToken] = []
    start = 0
    for index in range(1, len(text) + 1):
        if index == len(text) or marked[index] != marked[start]:
            tokens.append(TranscriptToken(text=text[start:index], start_s=None, end_s=None, phrase=marked[start]))
            start = index
    return TranscriptLine(start_s=0.0, end_s=0.0, text=text, tokens=tokens, timed=False)


# --------------------------------------------------------------------------------------------- clips


def waveform(wav_bytes: bytes, points: int) -> Waveform:
    """(min, max) peaks of ``points`` equal slices of a mono PCM16 WAV, for drawing without decoding audio."""
    with wave.open(io.BytesIO(wav_bytes), "rb") as reader:
        if reader.getnchannels() != 1 or reader.getsampwidth() != 2:
            raise ValueError("evidence clips are mono 16-bit WAV")
        rate = reader.getframerate()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    if samples.size == 0:
        return Waveform(duration_s=0.0, sample_rate=rate, peaks=[])
    slices = np.array_split(samples, min(points, samples.size))
    peaks = [(round(float(piece.min()), 4), round(float(piece.max()), 4)) for piece in slices]
    return Waveform(duration_s=samples.size / rate, sample_rate=rate, peaks=peaks)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range a ``Range`` header asks for, or None to send everything.

    Multiple or malformed ranges are ignored (RFC 9110 allows that); a range starting at or past the end raises
    ``RangeNotSatisfiable``.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:  # the final N bytes
        length = int(last)
        if length == 0:
            raise RangeNotSatisfiable(f"empty suffix range {header!r}")
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size:
        raise RangeNotSatisfiable(f"range {header!r} starts beyond the clip's {size} bytes")
    if end < start:
        return None
    return start, end


class EvidenceCache:
    """Evidence of closed incidents, which no longer changes (reading the topics costs a Kafka round trip)."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, datetime], Evidence] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, datetime]) -> Evidence | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[str, datetime], evidence: Evidence) -> None:
        with self._lock:
            self._items[key] = evidence
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
