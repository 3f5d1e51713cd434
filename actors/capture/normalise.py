"""Streaming normalisation of any source to 16 kHz mono float32, with exact sample accounting.

Per block: non-finite values (NaN, +-inf) become 0.0 — corrupt data is replaced by silence rather than by a
full-scale value — then the channels are averaged (downmix), then soxr resamples the mono signal.

Sample accounting. A source *segment* is a run of blocks at one rate with no discontinuity (a reconnect or a
rate change starts a new one, and flushes the previous segment's resampler). soxr's streaming output for a
segment of ``n`` source frames at rate ``r`` is exactly ``round_half_up(n * 16000 / r)`` samples (the resampler's
"±1": at most half a sample from the exact duration), so the samples a stream publishes are the sum of that over
its segments; for a single file, ``round_half_up(frames * 16000 / rate)``.

Non-finite positions. Source frame ``i`` of a segment (any channel non-finite) maps to output position
``segment_start + floor(i * 16000 / r)``, so the chunker can count it in the chunk that covers that instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import soxr

from actors.capture.blocks import AudioBlock
from domain.audio import SAMPLE_RATE

TARGET_SAMPLE_RATE: Final = SAMPLE_RATE  # what every source is resampled to

Float32Array = npt.NDArray[np.float32]
Int64Array = npt.NDArray[np.int64]

_EMPTY_SAMPLES: Float32Array = np.zeros(0, dtype=np.float32)
_EMPTY_POSITIONS: Int64Array = np.zeros(0, dtype=np.int64)


def expected_samples(source_frames: int, source_rate: int, target_rate: int = TARGET_SAMPLE_RATE) -> int:
    """Output samples of one segment: ``source_frames * target / source`` rounded half up, in exact integers."""
    return (2 * source_frames * target_rate + source_rate) // (2 * source_rate)


@dataclass(frozen=True)
class NormalisedAudio:
    """Consecutive 16 kHz mono samples starting at absolute output sample ``start``.

    ``samples`` are finite but not clipped (resampling can overshoot full scale; PCM16 encoding clips).
    ``nonfinite_positions`` are absolute output positions of source frames that held NaN or infinity.
    """

    start: int
    samples: Float32Array
    nonfinite_positions: Int64Array

    @property
    def end(self) -> int:
        return self.start + int(self.samples.shape[0])


class Normaliser:
    """Turns ``AudioBlock``s of any rate and channel count into one continuous 16 kHz mono signal."""

    def __init__(self, target_rate: int = TARGET_SAMPLE_RATE, quality: str = "HQ") -> None:
        if target_rate <= 0:
            raise ValueError(f"target_rate must be positive, got {target_rate}")
        self.target_rate = target_rate
        self.quality = quality
        self.source_frames = 0  # every source frame pushed
        self.nonfinite_frames = 0
        self.produced = 0  # every output sample returned
        self._resampler: soxr.ResampleStream | None = None
        self._segment_rate = 0
        self._segment_frames = 0  # source frames of the current segment
        self._segment_start = 0  # output position of the current segment's first sample

    def push(self, block: AudioBlock) -> NormalisedAudio:
        """The output this block completes (possibly empty: the resampler holds back its filter delay)."""
        flushed = None
        if self._resampler is None or block.sample_rate != self._segment_rate or block.discontinuity:
            flushed = self._flush_segment() if self._resampler is not None else None
            self._start_segment(block.sample_rate)
        assert self._resampler is not None
        mono, bad_frames = _sanitise_and_downmix(block.samples)
        positions = self._segment_start + (self._segment_frames + bad_frames) * self.target_rate // self._segment_rate
        self._segment_frames += block.frames
        self.source_frames += block.frames
        self.nonfinite_frames += int(bad_frames.shape[0])
        audio = self._emit(self._resampler.resample_chunk(mono), positions.astype(np.int64))
        return audio if flushed is None else _concatenate(flushed, audio)

    def finish(self) -> NormalisedAudio:
        """The resampler's remaining output at the end of the stream."""
        if self._resampler is None:
            return NormalisedAudio(self.produced, _EMPTY_SAMPLES, _EMPTY_POSITIONS)
        return self._flush_segment()

    def _start_segment(self, rate: int) -> None:
        self._resampler = soxr.ResampleStream(rate, self.target_rate, 1, dtype="float32", quality=self.quality)
        self._segment_rate = rate
        self._segment_frames = 0
        self._segment_start = self.produced

    def _flush_segment(self) -> NormalisedAudio:
        assert self._resampler is not None
        audio = self._emit(self._resampler.resample_chunk(_EMPTY_SAMPLES, last=True), _EMPTY_POSITIONS)
        self._resampler = None
        return audio

    def _emit(self, samples: Float32Array, positions: Int64Array) -> NormalisedAudio:
        audio = NormalisedAudio(self.produced, np.ascontiguousarray(samples, dtype=np.float32), positions)
        self.produced = audio.end
        return audio


def _sanitise_and_downmix(samples: Float32Array) -> tuple[Float32Array, Int64Array]:
    """Mono mean of the channels with non-finite values zeroed, and the indices of frames that had any."""
    finite = np.isfinite(samples)
    if finite.all():
        clean = samples
        bad_frames: Int64Array = _EMPTY_POSITIONS
    else:
        clean = np.where(finite, samples, np.float32(0.0))
        bad_frames = np.flatnonzero(~finite.all(axis=1)).astype(np.int64)
    mono = clean[:, 0] if clean.shape[1] == 1 else clean.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32), bad_frames


def _concatenate(first: NormalisedAudio, second: NormalisedAudio) -> NormalisedAudio:
    if first.end != second.start:
        raise ValueError(f"normalised audio is not contiguous: {first.end} != {second.start}")
    return NormalisedAudio(
        first.start,
        np.concatenate((first.samples, second.samples)),
        np.concatenate((first.nonfinite_positions, second.nonfinite_positions)),
    )
