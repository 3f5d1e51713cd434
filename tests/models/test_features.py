"""models.features: agreement with librosa, streaming == whole signal, edge cases and bad input.

Tolerances against librosa (float64 reference on the same frames, see the module docstring for the alignment;
ours runs a float32 FFT, as librosa does on float32 audio): log-mel 1e-3 (natural-log units, 0.1 % in energy),
MFCC 1e-3, RMS 1e-5 relative, ZCR exact (1e-7), centroid 0.01 Hz, roll-off the same FFT bin on every frame,
flatness 1e-3 relative, flux 1e-5. Pitch: within 0.5 % of the true frequency on
tones and chirps, and within 3 % of librosa.yin on every frame both call voiced: librosa 0.11's difference
function drops a tail-energy term and reads up to 2.7 % sharp on 25 ms frames, where we use classic YIN.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import librosa
import numpy as np
import numpy.typing as npt
import pytest
import soundfile

from benchmarks.features import speech_signal
from models.features import (
    FeatureConfig,
    FrameFeatures,
    StreamingFeatureExtractor,
    extract_features,
    log_mel,
    summarize,
)
from tests.support.cli import features

CONFIG = FeatureConfig()
RATE = CONFIG.sample_rate
PER_FRAME = ("rms", "dbfs", "zcr", "centroid", "rolloff", "flux", "flatness", "pitch_hz", "voicing")
Signal = npt.NDArray[np.float32]


def tone(frequency: float, seconds: float, amplitude: float = 0.5) -> Signal:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def chirp(low: float, high: float, seconds: float) -> tuple[Signal, npt.NDArray[np.float64]]:
    """A linear chirp and its instantaneous frequency at every sample."""
    t = np.arange(int(seconds * RATE)) / RATE
    rate = (high - low) / seconds
    signal = 0.5 * np.sin(2 * np.pi * (low * t + rate * t**2 / 2))
    return signal.astype(np.float32), low + rate * t


@pytest.fixture(scope="module")
def speech() -> Signal:
    """3 s of espeak-ng speech with a little noise, so no frame is digitally silent."""
    noise = 0.001 * np.random.default_rng(3).standard_normal(3 * RATE)
    return (speech_signal(3.0, RATE) + noise).astype(np.float32)


@pytest.fixture(scope="module")
def mixture() -> Signal:
    """Tones, noise and a loud burst: broadband and tonal frames in one signal."""
    rng = np.random.default_rng(5)
    signal = tone(220, 2.0, 0.3) + tone(1760, 2.0, 0.1) + 0.05 * rng.standard_normal(2 * RATE)
    signal[RATE : RATE + 2000] += 0.8 * rng.standard_normal(2000)
    return np.clip(signal, -1, 1).astype(np.float32)


def librosa_magnitude(signal: Signal) -> npt.NDArray[np.float64]:
    """librosa's |STFT| of the same frames: pad so that its centred 400-sample window covers our frame."""
    pad = (CONFIG.n_fft - CONFIG.win_length) // 2
    magnitude: npt.NDArray[np.float64] = np.abs(
        librosa.stft(
            np.pad(signal.astype(np.float64), pad),
            n_fft=CONFIG.n_fft,
            hop_length=CONFIG.hop_length,
            win_length=CONFIG.win_length,
            window="hann",
            center=False,
        )
    )
    return magnitude


def librosa_log_mel(magnitude: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    mel = librosa.feature.melspectrogram(
        S=magnitude**2, sr=RATE, n_fft=CONFIG.n_fft, n_mels=64, fmin=125.0, fmax=7500.0, htk=True, norm=None
    )
    return np.log(mel + 1e-6)


@pytest.mark.parametrize("signal_name", ["speech", "mixture"])
def test_every_feature_matches_librosa(signal_name: str, request: pytest.FixtureRequest) -> None:
    signal: Signal = request.getfixturevalue(signal_name)
    ours = extract_features(signal)
    magnitude = librosa_magnitude(signal)
    bin_hz = librosa.fft_frequencies(sr=RATE, n_fft=CONFIG.n_fft)
    win, hop = CONFIG.win_length, CONFIG.hop_length
    reference_log_mel = librosa_log_mel(magnitude)
    assert magnitude.shape[1] == ours.n_frames == CONFIG.frames_in(signal.size)

    np.testing.assert_allclose(ours.log_mel, reference_log_mel.T, rtol=0, atol=1e-3)
    np.testing.assert_allclose(ours.mfcc, librosa.feature.mfcc(S=reference_log_mel, n_mfcc=13).T, rtol=0, atol=1e-3)
    reference_rms = librosa.feature.rms(y=signal.astype(np.float64), frame_length=win, hop_length=hop, center=False)[0]
    np.testing.assert_allclose(ours.rms, reference_rms, rtol=1e-5)
    np.testing.assert_allclose(ours.dbfs, 20 * np.log10(np.maximum(reference_rms, 1e-5)), rtol=0, atol=1e-4)
    reference_zcr = librosa.feature.zero_crossing_rate(
        signal.astype(np.float64), frame_length=win, hop_length=hop, center=False
    )[0]
    np.testing.assert_allclose(ours.zcr, reference_zcr, rtol=0, atol=1e-7)
    reference_centroid = librosa.feature.spectral_centroid(S=magnitude, freq=bin_hz)[0]
    np.testing.assert_allclose(ours.centroid, reference_centroid, rtol=0, atol=0.01)
    reference_rolloff = librosa.feature.spectral_rolloff(S=magnitude, freq=bin_hz, roll_percent=0.85)[0]
    np.testing.assert_array_equal(ours.rolloff, reference_rolloff.astype(np.float32))
    reference_flatness = librosa.feature.spectral_flatness(S=magnitude, power=2.0, amin=1e-10)[0]
    np.testing.assert_allclose(ours.flatness, reference_flatness, rtol=1e-3, atol=1e-9)
    reference_flux = librosa.onset.onset_strength(
        S=ours.log_mel.T.astype(np.float64), lag=1, max_size=1, center=False, aggregate=np.mean
    )
    np.testing.assert_allclose(ours.flux, reference_flux, rtol=0, atol=1e-5)


@pytest.mark.parametrize("frequency", [90.0, 150.0, 220.0, 440.0, 1000.0, 1500.0])
def test_yin_pitch_of_a_tone_is_its_frequency(frequency: float) -> None:
    frames = extract_features(tone(frequency, 0.5))
    assert np.all(frames.pitch_hz > 0)
    np.testing.assert_allclose(frames.pitch_hz, frequency, rtol=0.005)
    assert frames.voicing.min() > 0.95


def test_yin_pitch_follows_a_chirp_and_agrees_with_librosa() -> None:
    signal, instantaneous = chirp(100.0, 800.0, 2.0)
    frames = extract_features(signal)
    centres = np.arange(frames.n_frames) * CONFIG.hop_length + CONFIG.win_length // 2
    assert np.all(frames.pitch_hz > 0)
    np.testing.assert_allclose(frames.pitch_hz, instantaneous[centres], rtol=0.01)
    assert_pitch_close_to_librosa(signal, frames)


def test_yin_pitch_on_speech_agrees_with_librosa(speech: Signal) -> None:
    frames = extract_features(speech)
    voiced = frames.pitch_hz > 0
    assert 0.2 < voiced.mean() < 0.9  # speech alternates voiced and unvoiced sounds
    # Parabolic refinement may move the period up to one lag past the search range.
    lowest, highest = RATE / (CONFIG.yin_max_period + 1), RATE / CONFIG.yin_min_period
    assert np.all((frames.pitch_hz[voiced] >= lowest) & (frames.pitch_hz[voiced] <= highest))
    assert_pitch_close_to_librosa(speech, frames)


def assert_pitch_close_to_librosa(signal: Signal, frames: FrameFeatures) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns that fewer than two periods of fmin fit in a frame
        reference = librosa.yin(
            signal.astype(np.float64),
            fmin=CONFIG.yin_fmin,
            fmax=CONFIG.yin_fmax,
            sr=RATE,
            frame_length=CONFIG.win_length,
            hop_length=CONFIG.hop_length,
            trough_threshold=CONFIG.yin_threshold,
            center=False,
        )
    voiced = frames.pitch_hz > 0
    np.testing.assert_allclose(frames.pitch_hz[voiced], reference[voiced], rtol=0.03)


def test_noise_is_unvoiced_and_flat() -> None:
    noise = (0.3 * np.random.default_rng(7).standard_normal(RATE)).astype(np.float32)
    frames = extract_features(noise)
    assert (frames.pitch_hz > 0).mean() < 0.02
    assert frames.voicing.mean() < 0.5
    assert frames.flatness.mean() > 0.4
    assert frames.zcr.mean() > 0.4


def test_full_scale_sine_reads_minus_three_dbfs() -> None:
    frames = extract_features(tone(1000.0, 0.2, amplitude=1.0))
    np.testing.assert_allclose(frames.dbfs, 20 * np.log10(np.sqrt(0.5)), atol=0.01)


def test_flux_peaks_at_an_onset() -> None:
    signal = np.zeros(RATE, dtype=np.float32)
    signal[RATE // 2 :] = 0.5 * np.random.default_rng(2).standard_normal(RATE // 2)
    frames = extract_features(signal)
    onset_frame = int(np.argmax(frames.flux))
    first_frame_with_noise = (RATE // 2 - CONFIG.win_length) // CONFIG.hop_length + 1
    assert first_frame_with_noise <= onset_frame <= first_frame_with_noise + 2
    assert frames.flux[onset_frame] > 5.0
    assert frames.flux[:first_frame_with_noise].max() == 0.0


def concatenated(parts: list[FrameFeatures]) -> dict[str, npt.NDArray[np.float32]]:
    names = ("log_mel", "mfcc", *PER_FRAME)
    return {name: np.concatenate([getattr(part, name) for part in parts]) for name in names}


# Hops that make YIN's integration windows overlap by less than a hop (rows shared between frames), by more
# than a hop, and not at all: each takes its own path through the kernel.
STREAMING_CONFIGS = [CONFIG, FeatureConfig(hop_length=80), FeatureConfig(hop_length=240)]


@pytest.mark.parametrize("config", STREAMING_CONFIGS, ids=lambda config: f"hop{config.hop_length}")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_in_random_chunks_equals_the_whole_signal(seed: int, config: FeatureConfig, speech: Signal) -> None:
    rng = np.random.default_rng(seed)
    signal = speech.copy()
    signal[RATE // 2 : RATE // 2 + 1000] = 0.0  # digital silence: YIN skips frames and restarts its sharing
    whole = extract_features(signal, config)
    sizes = rng.choice([0, 1, 7, 159, 160, 399, 400, 401, 1000, 4000], size=200)
    cuts = np.minimum(np.cumsum(sizes), signal.size)
    extractor = StreamingFeatureExtractor(config)
    parts = []
    expected_first = 0
    for start, stop in zip(np.r_[0, cuts], np.r_[cuts, signal.size], strict=True):
        part = extractor.push(signal[start:stop])
        assert part.first_frame == expected_first
        expected_first += part.n_frames
        parts.append(part)
    streamed = concatenated(parts)
    for name, values in streamed.items():
        np.testing.assert_array_equal(values, getattr(whole, name), err_msg=name)


@pytest.mark.parametrize("config", STREAMING_CONFIGS, ids=lambda config: f"hop{config.hop_length}")
def test_yin_is_accurate_whatever_the_hop(config: FeatureConfig) -> None:
    frames = extract_features(tone(180.0, 0.5), config)
    np.testing.assert_allclose(frames.pitch_hz, 180.0, rtol=0.005)


def test_chunk_shorter_than_a_window_completes_a_frame_later() -> None:
    extractor = StreamingFeatureExtractor()
    signal = tone(300.0, 0.1)
    first = extractor.push(signal[:399])
    assert first.n_frames == 0
    assert first.log_mel.shape == (0, CONFIG.n_mels)
    assert first.mfcc.shape == (0, CONFIG.n_mfcc)
    second = extractor.push(signal[399:400])
    assert (second.first_frame, second.n_frames) == (0, 1)
    np.testing.assert_array_equal(second.log_mel, extract_features(signal[:400]).log_mel)


def test_empty_chunk_yields_no_frames_and_keeps_the_position() -> None:
    extractor = StreamingFeatureExtractor()
    extractor.push(tone(300.0, 0.05))
    empty = extractor.push(np.zeros(0, dtype=np.float32))
    assert empty.n_frames == 0
    assert empty.first_frame == CONFIG.frames_in(int(0.05 * RATE))
    assert all(getattr(empty, name).shape == (0,) for name in PER_FRAME)


def test_reset_starts_a_new_stream() -> None:
    extractor = StreamingFeatureExtractor()
    extractor.push(tone(500.0, 0.3))
    extractor.reset()
    again = extractor.push(tone(300.0, 0.2))
    fresh = extract_features(tone(300.0, 0.2))
    assert again.first_frame == 0
    np.testing.assert_array_equal(again.log_mel, fresh.log_mel)
    np.testing.assert_array_equal(again.flux, fresh.flux)


def test_silence_has_finite_floor_values() -> None:
    frames = extract_features(np.zeros(RATE // 2, dtype=np.float32))
    for name in ("log_mel", "mfcc", *PER_FRAME):
        assert np.all(np.isfinite(getattr(frames, name))), name
    assert np.all(frames.dbfs == np.float32(CONFIG.dbfs_floor))
    np.testing.assert_allclose(frames.log_mel, np.log(1e-6), rtol=1e-6)
    assert np.all(frames.pitch_hz == 0) and np.all(frames.voicing == 0)
    assert np.all(frames.centroid == 0) and np.all(frames.rolloff == 0) and np.all(frames.flux == 0)


def test_signals_far_beyond_full_scale_stay_finite() -> None:
    loud = (1000.0 * np.random.default_rng(4).standard_normal(RATE // 4)).astype(np.float32)
    frames = extract_features(loud)
    for name in ("log_mel", "mfcc", *PER_FRAME):
        assert np.all(np.isfinite(getattr(frames, name))), name
    assert frames.dbfs.min() > 55.0  # 1000x full scale is +60 dBFS


def test_log_mel_alone_equals_the_full_extraction(mixture: Signal) -> None:
    np.testing.assert_array_equal(log_mel(mixture), extract_features(mixture).log_mel)


def test_float64_input_is_computed_as_float32(mixture: Signal) -> None:
    np.testing.assert_array_equal(extract_features(mixture.astype(np.float64)).mfcc, extract_features(mixture).mfcc)


def test_summary_of_a_tone() -> None:
    summary = summarize(extract_features(tone(250.0, 1.0, amplitude=0.1)))
    assert summary.pitch_hz_median == pytest.approx(250.0, rel=0.005)
    assert summary.voiced_fraction == 1.0
    assert summary.rms_dbfs_mean == pytest.approx(20 * np.log10(0.1 / np.sqrt(2)), abs=0.05)
    assert summary.rms_dbfs_max >= summary.rms_dbfs_mean
    assert summary.centroid_hz_mean == pytest.approx(250.0, rel=0.1)
    assert summary.zcr_mean == pytest.approx(2 * 250.0 / RATE, rel=0.05)


def test_summary_of_silence_and_of_no_frames_is_nan_free() -> None:
    silence = summarize(extract_features(np.zeros(RATE, dtype=np.float32)))
    nothing = summarize(extract_features(np.zeros(10, dtype=np.float32)))
    for summary in (silence, nothing):
        assert summary.rms_dbfs_mean == summary.rms_dbfs_max == CONFIG.dbfs_floor
        assert summary.pitch_hz_median == 0.0 and summary.voiced_fraction == 0.0
        assert all(np.isfinite(value) for value in vars(summary).values())


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((2, 800), dtype=np.float32), "mono"),
        (np.zeros(800, dtype=np.int16), "floating point"),
        (np.array([0.0, np.nan, 0.1], dtype=np.float32), "1 non-finite"),
        (np.array([np.inf] * 3), "3 non-finite"),
    ],
)
def test_bad_input_is_rejected_with_the_reason(bad: npt.NDArray[np.generic], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        extract_features(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        StreamingFeatureExtractor().push(bad)  # type: ignore[arg-type]


def test_a_list_is_not_a_signal() -> None:
    with pytest.raises(TypeError, match="numpy array"):
        extract_features([0.0] * 800)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hop_length": 0}, "hop_length"),
        ({"win_length": 600}, "exceeds n_fft"),
        ({"fmax": 9000.0}, "fmax"),
        ({"n_mfcc": 80}, "n_mfcc"),
        ({"rolloff_percent": 1.0}, "rolloff_percent"),
        ({"dbfs_floor": 0.0}, "dbfs_floor"),
        ({"yin_fmin": 30.0}, "yin_fmin"),
        ({"yin_threshold": 0.0}, "yin_threshold"),
        ({"n_mels": 256}, "mel band"),
    ],
)
def test_impossible_configs_are_rejected(overrides: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        extract_features(tone(200.0, 0.1), FeatureConfig(**overrides))  # type: ignore[arg-type]


# ------------------------------------------------------------------------ the `distress features` command


def test_features_command_prints_one_json_line_per_second(tmp_path: Path) -> None:
    """A stereo 22.05 kHz file is mixed down and resampled: 2.5 s of a 300 Hz tone read as 300 Hz, 3 lines."""
    t = np.arange(int(2.5 * 22050)) / 22050
    left = 0.4 * np.sin(2 * np.pi * 300 * t)
    path = tmp_path / "tone.wav"
    soundfile.write(path, np.stack([left, left], axis=1), 22050)
    result = features(str(path), "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["second"] for line in lines] == [0, 1, 2]
    for line in lines:
        assert line["pitch_hz_median"] == pytest.approx(300.0, rel=0.005)
        assert line["voiced_fraction"] == 1.0
        assert line["rms_dbfs_mean"] == pytest.approx(20 * np.log10(0.4 / np.sqrt(2)), abs=0.1)


def test_features_command_table_and_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    soundfile.write(path, tone(440.0, 1.0), RATE)
    table = features(str(path))
    assert table.exit_code == 0 and "440" in table.output
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    result = features(str(broken))
    assert result.exit_code == 2
    assert "cannot read" in result.output
