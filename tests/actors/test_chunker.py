"""Fixed windows: contiguous offsets, a shorter flagged last chunk, per-chunk counts and the PCM16 wire format."""

from __future__ import annotations

import numpy as np
import pytest

from actors.capture.chunker import Chunk, Chunker, count_clipped, decode_pcm16, encode_pcm16
from actors.capture.normalise import NormalisedAudio

NO_POSITIONS = np.zeros(0, dtype=np.int64)


def feed(chunker: Chunker, signal: np.ndarray, sizes: list[int], nonfinite: list[int] | None = None) -> list[Chunk]:
    """Push ``signal`` in pieces of ``sizes``; non-finite positions arrive with the first piece."""
    chunks: list[Chunk] = []
    start = 0
    for index, size in enumerate(sizes):
        positions = np.array(nonfinite or [], dtype=np.int64) if index == 0 else NO_POSITIONS
        chunks += chunker.push(NormalisedAudio(start, signal[start : start + size], positions))
        start += size
    assert start == signal.shape[0]
    last = chunker.finish()
    return chunks + ([last] if last is not None else [])


def ramp(length: int) -> np.ndarray:
    return (np.arange(length, dtype=np.float32) / length).astype(np.float32)


def test_windows_are_contiguous_and_the_last_is_shorter_and_flagged() -> None:
    signal = ramp(40000)
    chunks = feed(Chunker(16000), signal, [1, 9999, 3, 29997])
    assert [(c.sequence, c.sample_offset, c.samples.shape[0], c.is_last) for c in chunks] == [
        (0, 0, 16000, False),
        (1, 16000, 16000, False),
        (2, 32000, 8000, True),
    ]
    np.testing.assert_array_equal(np.concatenate([c.samples for c in chunks]), signal)


def test_a_stream_that_ends_on_a_boundary_flags_its_last_full_window() -> None:
    chunker = Chunker(16000)
    chunks = feed(chunker, ramp(32000), [16000, 16000])
    assert [(c.samples.shape[0], c.is_last) for c in chunks] == [(16000, False), (16000, True)]
    assert chunker.emitted_samples == 32000 and chunker.emitted_chunks == 2


def test_a_full_window_waits_for_one_more_sample() -> None:
    chunker = Chunker(100)
    assert chunker.push(NormalisedAudio(0, ramp(100), NO_POSITIONS)) == []
    released = chunker.push(NormalisedAudio(100, ramp(1), NO_POSITIONS))
    assert [c.samples.shape[0] for c in released] == [100] and not released[0].is_last


def test_no_samples_means_no_chunk() -> None:
    assert Chunker(100).finish() is None


def test_non_finite_frames_are_counted_in_the_window_that_covers_them() -> None:
    chunks = feed(Chunker(100), ramp(250), [250], nonfinite=[0, 99, 100, 249, 250, 251])
    # 250 and 251 lie past the last sample (a source frame that rounded to no output sample): last chunk
    assert [c.nonfinite_samples for c in chunks] == [2, 1, 3]


def test_clipped_samples_are_those_at_or_beyond_16_bit_full_scale() -> None:
    signal = np.array([0.0, 0.99, 32767 / 32768, 1.0, -1.0, 1.7, -3.0, 0.5], dtype=np.float32)
    assert count_clipped(signal) == 5
    chunks = feed(Chunker(4), signal, [8])
    assert [c.clipped_samples for c in chunks] == [2, 3]


def test_audio_must_continue_where_the_last_ended() -> None:
    chunker = Chunker(10)
    chunker.push(NormalisedAudio(0, ramp(5), NO_POSITIONS))
    with pytest.raises(ValueError, match="starts at sample 6, expected 5"):
        chunker.push(NormalisedAudio(6, ramp(5), NO_POSITIONS))


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk_samples"):
        Chunker(0)


def test_pcm16_is_little_endian_scaled_by_32767_and_clipped() -> None:
    payload = encode_pcm16(np.array([0.0, 1.0, -1.0, 0.5, 2.0, -7.0, 1 / 32767], dtype=np.float32))
    assert payload == np.array([0, 32767, -32767, 16384, 32767, -32767, 1], dtype="<i2").tobytes()
    assert payload[:4] == b"\x00\x00\xff\x7f"


def test_pcm16_round_trip_is_within_half_a_step() -> None:
    signal = np.random.default_rng(0).uniform(-1, 1, 5000).astype(np.float32)
    decoded = decode_pcm16(encode_pcm16(signal))
    assert decoded.dtype == np.float32
    assert np.abs(decoded - signal).max() <= 0.5 / 32767 + 1e-7


def test_pcm16_decoding_rejects_a_torn_payload() -> None:
    with pytest.raises(ValueError, match="odd number of bytes"):
        decode_pcm16(b"\x00\x01\x02")
