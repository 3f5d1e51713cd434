"""Streaming normalisation: exact sample accounting, a real anti-aliasing resampler, downmix and sanitising."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import soxr

from actors.capture.blocks import AudioBlock
from actors.capture.normalise import TARGET_SAMPLE_RATE, NormalisedAudio, Normaliser, expected_samples
from tests.support.audio import tone


def normalise(blocks: list[AudioBlock]) -> tuple[NormalisedAudio, Normaliser]:
    normaliser = Normaliser()
    pieces = [normaliser.push(block) for block in blocks] + [normaliser.finish()]
    for previous, following in itertools.pairwise(pieces):
        assert previous.end == following.start  # contiguous output
    return (
        NormalisedAudio(
            0,
            np.concatenate([piece.samples for piece in pieces]),
            np.concatenate([piece.nonfinite_positions for piece in pieces]),
        ),
        normaliser,
    )


def split(samples: np.ndarray, rate: int, seed: int) -> list[AudioBlock]:
    """Blocks of random sizes (1 to 5000 frames), as a network source would deliver them."""
    rng = np.random.default_rng(seed)
    cuts = np.cumsum(rng.integers(1, 5000, size=samples.shape[0]))
    return [AudioBlock(np.ascontiguousarray(part), rate) for part in np.split(samples, cuts[cuts < samples.shape[0]])]


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000])
@pytest.mark.parametrize("frames", [1, 7, 4410, 44101, 123457])
def test_output_length_is_the_rounded_duration(rate: int, frames: int) -> None:
    """The documented ±1 definition: exactly round-half-up(frames * 16000 / rate) samples."""
    samples = np.random.default_rng(frames).uniform(-0.5, 0.5, size=(frames, 1)).astype(np.float32)
    audio, normaliser = normalise(split(samples, rate, seed=rate))
    assert audio.samples.shape[0] == expected_samples(frames, rate) == normaliser.produced
    assert abs(audio.samples.shape[0] - frames * TARGET_SAMPLE_RATE / rate) <= 0.5
    assert normaliser.source_frames == frames


def test_expected_samples_rounds_half_up_in_exact_integers() -> None:
    assert expected_samples(1, 32000) == 1  # 0.5 -> 1
    assert expected_samples(3, 32000) == 2  # 1.5 -> 2
    assert expected_samples(1, 48000) == 0  # 0.33 -> 0
    assert expected_samples(44100 * 3600, 44100) == 16000 * 3600


def test_block_boundaries_do_not_change_the_output() -> None:
    samples = tone(2.0, 44100, (440.0, 3000.0))
    whole, _ = normalise([AudioBlock(samples, 44100)])
    pieces, _ = normalise(split(samples, 44100, seed=3))
    np.testing.assert_allclose(pieces.samples, whole.samples, atol=1e-6)


def test_resampling_keeps_the_pitch_and_level_and_removes_what_16_khz_cannot_hold() -> None:
    in_band = tone(1.0, 48000, (1000.0,), amplitude=0.5)
    above_nyquist = tone(1.0, 48000, (11000.0,), amplitude=0.5)  # would alias to 5 kHz without a filter
    kept, _ = normalise([AudioBlock(in_band, 48000)])
    removed, _ = normalise([AudioBlock(above_nyquist, 48000)])
    steady = kept.samples[1000:-1000]
    spectrum = np.abs(np.fft.rfft(steady))
    assert np.argmax(spectrum) * TARGET_SAMPLE_RATE / steady.shape[0] == pytest.approx(1000.0, abs=2.0)
    assert np.sqrt(np.mean(steady**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    assert np.sqrt(np.mean(removed.samples[1000:-1000] ** 2)) < 1e-3  # > 50 dB down


def test_matches_soxr_one_shot_resampling_of_the_mono_mix() -> None:
    samples = tone(1.5, 22050, (300.0, 500.0))
    audio, _ = normalise(split(samples, 22050, seed=9))
    reference = soxr.resample(samples.mean(axis=1), 22050, TARGET_SAMPLE_RATE, quality="HQ")
    assert audio.samples.shape == reference.shape
    np.testing.assert_allclose(audio.samples, reference, atol=1e-4)


def test_downmix_is_the_channel_mean() -> None:
    samples = tone(0.1, 16000, (440.0, 880.0, 1320.0))
    audio, _ = normalise([AudioBlock(samples, 16000)])
    np.testing.assert_allclose(audio.samples, samples.mean(axis=1), atol=1e-7)


def test_non_finite_values_become_silence_and_their_frames_are_counted() -> None:
    samples = tone(0.5, 16000, (440.0, 440.0))
    samples[10, 0] = np.nan
    samples[10, 1] = np.inf  # same frame, two channels: one frame
    samples[4000, 1] = -np.inf
    samples[7999, 0] = np.nan
    audio, normaliser = normalise(split(samples, 16000, seed=1))
    assert np.isfinite(audio.samples).all()
    assert audio.samples[10] == 0.0
    assert audio.samples[4000] == pytest.approx(samples[4000, 0] / 2)  # the finite channel survives
    assert audio.nonfinite_positions.tolist() == [10, 4000, 7999]
    assert normaliser.nonfinite_frames == 3


def test_non_finite_positions_map_to_the_output_instant() -> None:
    samples = tone(0.5, 48000)
    samples[[0, 2999, 3000, 23999], 0] = np.nan
    audio, _ = normalise(split(samples, 48000, seed=4))
    assert audio.nonfinite_positions.tolist() == [0, 999, 1000, 7999]
    assert np.isfinite(audio.samples).all()


def test_a_rate_change_or_a_reconnect_starts_a_new_exactly_counted_segment() -> None:
    first = tone(0.3, 44100)
    second = tone(0.7, 48000)
    third = tone(0.2, 48000)
    blocks = [*split(first, 44100, seed=5), *split(second, 48000, seed=6)]
    blocks += [AudioBlock(third, 48000, discontinuity=True)]
    audio, _ = normalise(blocks)
    expected = expected_samples(first.shape[0], 44100) + expected_samples(second.shape[0], 48000)
    assert audio.samples.shape[0] == expected + expected_samples(third.shape[0], 48000)


def test_finish_without_audio_is_empty() -> None:
    audio = Normaliser().finish()
    assert audio.start == 0 and audio.samples.size == 0


def test_audio_block_rejects_malformed_samples() -> None:
    with pytest.raises(ValueError, match="2-D float32"):
        AudioBlock(np.zeros(10, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="2-D float32"):
        AudioBlock(np.zeros((10, 1), dtype=np.float64), 16000)
    with pytest.raises(ValueError, match="at least one frame"):
        AudioBlock(np.zeros((0, 1), dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="sample_rate"):
        AudioBlock(np.zeros((1, 1), dtype=np.float32), 0)
