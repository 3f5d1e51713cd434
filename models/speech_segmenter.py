"""Turn a live 16 kHz audio stream into speech segments worth transcribing.

Why: running Whisper on every chunk is both slow and the main source of hallucinated text, so only
audio the VAD calls speech goes to the model. Speech is cut when the talker pauses, and long speech is
cut every `max_segment_s` at the least speech-like moment of its last second, so a result is ready
within a few seconds even while somebody keeps talking (or screaming) without a pause.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from models.vad import SAMPLE_RATE, WINDOW_SAMPLES, FloatArray, SileroVad, check_audio

SegmentEnd = Literal["silence", "max_length", "gap", "end_of_stream"]
"""Why a segment was closed: the talker paused, it reached `max_segment_s` while speech went on (a
partial result; the next segment continues it), the stream skipped samples, or the stream ended."""


@dataclass(frozen=True)
class AudioSpan:
    """Where a segment sits in its stream: chunk sequence numbers and absolute sample offsets."""

    stream_id: str
    first_sequence: int
    last_sequence: int
    start_sample: int
    end_sample: int
    """Exclusive."""

    @property
    def start_s(self) -> float:
        return self.start_sample / SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        return (self.end_sample - self.start_sample) / SAMPLE_RATE


@dataclass(frozen=True, eq=False)
class SpeechSegment:
    """Audio to transcribe, with the stream span it came from."""

    span: AudioSpan
    audio: FloatArray = field(repr=False)
    ended_by: SegmentEnd


@dataclass(frozen=True)
class SegmenterOptions:
    """Tuning of the VAD gate; the defaults favour low latency on short shouted phrases."""

    onset_threshold: float = 0.5
    """A window at or above this speech probability starts speech."""
    offset_threshold: float = 0.35
    """Speech continues until windows fall below this (hysteresis against flicker)."""
    min_silence_s: float = 0.3
    """Silence needed to end a segment."""
    min_speech_s: float = 0.15
    """Shorter bursts of 'speech' are dropped as clicks."""
    pad_s: float = 0.2
    """Audio kept before speech starts and after it ends, so first and last words are not clipped."""
    max_segment_s: float = 4.0
    """Longest segment; longer speech is flushed in pieces of at most this length."""
    min_cut_search_s: float = 1.0
    """A long segment is cut at the least speech-like window within this much of its end."""
    gate: bool = True
    """False sends all audio to the recogniser in `max_segment_s` pieces (for benchmarks and diagnosis)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.offset_threshold <= self.onset_threshold < 1.0:
            raise ValueError(
                "need 0 < offset_threshold <= onset_threshold < 1, got "
                f"offset_threshold={self.offset_threshold}, onset_threshold={self.onset_threshold}"
            )
        if self.pad_s < 0 or self.min_speech_s < 0:
            raise ValueError(f"pad_s and min_speech_s must be >= 0, got {self.pad_s}, {self.min_speech_s}")
        if self.min_silence_s < self.pad_s:
            raise ValueError(
                f"min_silence_s ({self.min_silence_s}) must be >= pad_s ({self.pad_s}): the trailing pad "
                "must already be buffered when a segment closes"
            )
        if not 2 * self.pad_s + self.min_cut_search_s < self.max_segment_s <= 28.0:
            raise ValueError(
                f"max_segment_s must lie in ({2 * self.pad_s + self.min_cut_search_s}, 28], got {self.max_segment_s}"
            )


def _samples(seconds: float) -> int:
    return round(seconds * SAMPLE_RATE)


class SpeechSegmenter:
    """Feed consecutive chunks of one stream; get back the speech segments that are complete."""

    def __init__(self, stream_id: str, options: SegmenterOptions | None = None, vad: SileroVad | None = None) -> None:
        if not stream_id:
            raise ValueError("stream_id must be a non-empty string")
        self.stream_id = stream_id
        self.options = options or SegmenterOptions()
        self._vad = (vad or SileroVad()) if self.options.gate else None
        self._pad = _samples(self.options.pad_s)
        self._min_silence_windows = -(-_samples(self.options.min_silence_s) // WINDOW_SAMPLES)
        self._min_speech = _samples(self.options.min_speech_s)
        self._max_segment = _samples(self.options.max_segment_s)
        self._min_cut_windows = max(1, _samples(self.options.min_cut_search_s) // WINDOW_SAMPLES)
        self._next_sample: int | None = None
        self._last_sequence: int | None = None
        self._reset_stream_state(start_sample=0)

    def _reset_stream_state(self, start_sample: int) -> None:
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = start_sample
        self._scored_until = start_sample
        self._chunks: list[tuple[int, int, int]] = []  # (sequence, start_sample, end_sample)
        self._speech_start: int | None = None
        self._onset = start_sample
        self._last_voiced_end = start_sample
        self._silent_windows = 0
        self._window_starts: list[int] = []
        self._window_probabilities: list[float] = []
        if self._vad is not None:
            self._vad.reset()

    def feed(self, samples: FloatArray, sequence: int, sample_offset: int) -> list[SpeechSegment]:
        """Add one chunk (float32 mono 16 kHz) that starts at `sample_offset` in the stream."""
        samples = check_audio(samples, f"chunk {sequence} of stream {self.stream_id!r}")
        if self._last_sequence is not None and sequence <= self._last_sequence:
            raise ValueError(
                f"chunk sequence numbers must increase: got {sequence} after {self._last_sequence} "
                f"in stream {self.stream_id!r}"
            )
        if sample_offset < 0:
            raise ValueError(f"sample_offset must be >= 0, got {sample_offset}")
        segments: list[SpeechSegment] = []
        if self._next_sample is None:
            self._reset_stream_state(sample_offset)
        elif sample_offset < self._next_sample:
            raise ValueError(
                f"chunk {sequence} of stream {self.stream_id!r} starts at sample {sample_offset}, "
                f"overlapping audio already received up to sample {self._next_sample}"
            )
        elif sample_offset > self._next_sample:
            segments.extend(self._close_speech(self._next_sample, "gap"))
            self._reset_stream_state(sample_offset)
        self._last_sequence = sequence
        self._next_sample = sample_offset + samples.size
        if samples.size == 0:
            return segments
        self._chunks.append((sequence, sample_offset, self._next_sample))
        self._buffer = np.concatenate([self._buffer, samples])
        segments.extend(self._score_complete_windows())
        self._trim_buffer()
        return segments

    def finish(self) -> list[SpeechSegment]:
        """End of stream: flush speech still in progress."""
        if self._next_sample is None:
            return []
        segments = self._close_speech(self._next_sample, "end_of_stream")
        self._next_sample = None
        self._last_sequence = None
        self._reset_stream_state(0)
        return segments

    def _score_complete_windows(self) -> list[SpeechSegment]:
        buffer_end = self._buffer_start + self._buffer.size
        window_count = (buffer_end - self._scored_until) // WINDOW_SAMPLES
        if window_count == 0:
            return []
        first = self._scored_until - self._buffer_start
        audio = self._buffer[first : first + window_count * WINDOW_SAMPLES]
        # Without the gate every window counts as speech.
        probabilities = np.ones(window_count, np.float32) if self._vad is None else self._vad.process(audio)
        segments: list[SpeechSegment] = []
        for probability in probabilities:
            segments.extend(self._step(self._scored_until, float(probability)))
            self._scored_until += WINDOW_SAMPLES
        return segments

    def _step(self, window_start: int, probability: float) -> list[SpeechSegment]:
        """Advance the hysteresis state machine by one window."""
        window_end = window_start + WINDOW_SAMPLES
        options = self.options
        if self._speech_start is None:
            if probability < options.onset_threshold:
                return []
            self._speech_start = max(self._buffer_start, window_start - self._pad)
            self._onset = window_start
            self._window_starts.clear()
            self._window_probabilities.clear()
            self._silent_windows = 0
        self._window_starts.append(window_start)
        self._window_probabilities.append(probability)
        if probability >= options.offset_threshold:
            self._silent_windows = 0
            self._last_voiced_end = window_end
        else:
            self._silent_windows += 1
            if self._silent_windows >= self._min_silence_windows:
                return self._close_speech(window_end, "silence")
        if window_end + WINDOW_SAMPLES - self._speech_start > self._max_segment:  # the next window won't fit
            return self._cut_long_speech(self._speech_start)
        return []

    def _cut_long_speech(self, speech_start: int) -> list[SpeechSegment]:
        """Flush a partial segment at the least speech-like recent window; speech continues after it."""
        recent = self._window_probabilities[-self._min_cut_windows :]
        # Cut after the latest of the least speech-like windows: the flushed piece is as long as allowed.
        quietest = len(recent) - 1 - int(np.argmin(recent[::-1]))
        cut = self._window_starts[len(self._window_starts) - len(recent) + quietest] + WINDOW_SAMPLES
        segment = self._make_segment(speech_start, cut, "max_length")
        kept = [index for index, start in enumerate(self._window_starts) if start >= cut]
        self._window_starts = [self._window_starts[index] for index in kept]
        self._window_probabilities = [self._window_probabilities[index] for index in kept]
        self._speech_start = cut
        self._onset = cut
        return [segment]

    def _close_speech(self, stream_end: int, reason: SegmentEnd) -> list[SpeechSegment]:
        """End the current speech (if any) no later than `stream_end`, keeping the trailing pad."""
        start = self._speech_start
        still_voiced = self._silent_windows == 0
        self._speech_start = None
        self._silent_windows = 0
        self._window_starts.clear()
        self._window_probabilities.clear()
        if start is None:
            return []
        end = stream_end if still_voiced else min(stream_end, self._last_voiced_end + self._pad)
        if end <= start or self._last_voiced_end - self._onset < self._min_speech:
            return []
        return [self._make_segment(start, end, reason)]

    def _make_segment(self, start: int, end: int, reason: SegmentEnd) -> SpeechSegment:
        audio = self._buffer[start - self._buffer_start : end - self._buffer_start].copy()
        overlapping = [sequence for sequence, first, last in self._chunks if first < end and last > start]
        span = AudioSpan(
            stream_id=self.stream_id,
            first_sequence=overlapping[0],
            last_sequence=overlapping[-1],
            start_sample=start,
            end_sample=end,
        )
        return SpeechSegment(span=span, audio=audio, ended_by=reason)

    def _trim_buffer(self) -> None:
        """Keep only audio a future segment can still need: the current speech or the pre-roll pad."""
        keep_from = self._speech_start if self._speech_start is not None else self._scored_until - self._pad
        keep_from = max(keep_from, self._buffer_start)
        drop = keep_from - self._buffer_start
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._buffer_start = keep_from
        self._chunks = [chunk for chunk in self._chunks if chunk[2] > self._buffer_start]
