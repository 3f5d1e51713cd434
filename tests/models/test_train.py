"""Training: bit-for-bit reproducible on one thread, and the optional spectral augmentations do what they
claim."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.classifier import (
    DISTRESS_LABELS,
    LABELS,
    PATCH_FRAMES,
    Architecture,
    DistressClassifier,
    default_checkpoint_path,
)
from models.features import log_mel
from models.training.dataset import EventStream, PlacedEvent, benign_stream, tiny_config
from models.training.metrics import STREAM_HOP_FRAMES
from models.training.train import (
    IGNORED_CLASS,
    LOG_MEL_FLOOR,
    LOG_POWER_PER_DB,
    TrainConfig,
    _augmented_batch,
    _mean_log_power,
    _mix_band_statistics,
    _with_context,
    context_windows,
    train,
)

QUICK = TrainConfig(
    epochs=2,
    batch_size=16,
    level_db=6.0,
    eq_db=4.0,
    overlay_probability=0.5,
    band_mixstyle_probability=0.4,
    benign_validation_seconds=20.0,
    context_seconds=60.0,
    head_context_patches=50,
    architecture=Architecture(stem_channels=4, block_channels=(8, 8), block_strides=(2, 2), hidden=8),
    dataset=tiny_config(),
)


def test_training_on_one_thread_reproduces_the_checkpoint_bit_for_bit(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # Same file name: torch.save names the archive's root folder after it.
    first = train(QUICK, tmp_path / "first" / "model.pt", data_dir)
    again = train(QUICK, tmp_path / "again" / "model.pt", data_dir)
    assert first.sha256 == again.sha256
    assert (tmp_path / "first" / "model.pt").read_bytes() == (tmp_path / "again" / "model.pt").read_bytes()
    loaded = DistressClassifier.load(tmp_path / "first" / "model.pt")
    assert loaded.metadata["train_config"]["level_db"] == QUICK.level_db
    assert len(loaded.metadata["history"]) == QUICK.epochs and 1 <= first.best_epoch <= QUICK.epochs
    # Each distress label's operating point sits just above the benign validation windows it tops (or at the cap),
    # and the checkpoint's threshold is the highest of them.
    benign = log_mel(benign_stream(QUICK.dataset, QUICK.benign_validation_seconds, "validation", data_dir))
    probabilities, distress = loaded.stream_scores(benign, STREAM_HOP_FRAMES)
    thresholds = loaded.thresholds(probabilities)
    assert set(loaded.label_thresholds) == DISTRESS_LABELS
    assert max(loaded.label_thresholds.values()) == loaded.threshold
    assert np.all((distress < thresholds) | (thresholds == 0.99))


def test_the_shipped_recipe_is_recorded_as_its_checkpoint_recorded_it() -> None:
    # Options added since 1.5.0 stay out of the record while off, so retraining 1.5.0 still writes its bytes.
    shipped = DistressClassifier.load(default_checkpoint_path())
    assert shipped.metadata["train_config"] == TrainConfig().recorded()
    mixed = replace(TrainConfig(), band_mixstyle_probability=0.4).recorded()
    assert (mixed["band_mixstyle_probability"], mixed["band_mixstyle_alpha"]) == (0.4, 0.3)


def _features(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(-6.0, 1.0, size=(n, PATCH_FRAMES + 2, 64)).astype(np.float32)


def test_gain_and_equaliser_shift_levels_within_their_bounds_and_not_below_silence() -> None:
    features = _features(np.random.default_rng(0), 32)
    indices = np.arange(32)
    fill = features.mean(axis=(0, 1))
    plain = TrainConfig(freq_mask_bands=0, time_mask_frames=0)
    reference = _augmented_batch(np.random.default_rng(1), features, indices, indices[:0], fill, plain)
    gained = _augmented_batch(
        np.random.default_rng(1), features, indices, indices[:0], fill, replace(plain, level_db=6.0)
    )
    shift = (gained - reference).numpy()
    # One constant per patch (a gain), never more than 6 dB.
    assert np.allclose(shift, shift[:, :1, :1], atol=1e-4)
    assert np.abs(shift).max() <= 6.0 * LOG_POWER_PER_DB + 1e-5 and np.abs(shift).max() > 1.0 * LOG_POWER_PER_DB
    equalised = _augmented_batch(
        np.random.default_rng(1), features, indices, indices[:0], fill, replace(plain, eq_db=4.0)
    )
    curve = (equalised - reference).numpy()
    # An equaliser: the same curve over every frame, different across bands.
    assert np.allclose(curve, curve[:, :1, :], atol=1e-4) and curve[:, 0, :].std(axis=1).min() > 0
    silent = np.full_like(features, LOG_MEL_FLOOR)
    quieter = _augmented_batch(
        np.random.default_rng(1), silent, indices, indices[:0], fill, replace(plain, level_db=6.0, eq_db=4.0)
    )
    assert float(quieter.min()) == pytest.approx(LOG_MEL_FLOOR)  # nothing is quieter than silence


def test_background_overlay_adds_power_below_the_clip() -> None:
    rng = np.random.default_rng(2)
    features = _features(rng, 40)
    indices, pool = np.arange(20), np.arange(20, 40)
    fill = features.mean(axis=(0, 1))
    plain = TrainConfig(freq_mask_bands=0, time_mask_frames=0)
    reference = _augmented_batch(np.random.default_rng(3), features, indices, pool, fill, plain).numpy()
    config = replace(plain, overlay_probability=1.0, overlay_snr_db=(10.0, 10.0))
    overlaid = _augmented_batch(np.random.default_rng(3), features, indices, pool, fill, config).numpy()
    assert np.all(overlaid >= reference - 1e-5)  # adding a sound never removes power
    # At 10 dB SNR the mean power rises by 10*log10(1.1) = 0.41 dB.
    rise_db = (_mean_log_power(overlaid) - _mean_log_power(reference)) / LOG_POWER_PER_DB
    assert rise_db == pytest.approx(np.full(20, 10 * np.log10(1.1)), abs=0.05)


def test_band_mixstyle_gives_a_patch_a_blend_of_its_own_and_another_patchs_band_statistics() -> None:
    rng = np.random.default_rng(5)
    shape = rng.normal(0.0, 1.0, size=(24, PATCH_FRAMES, 64))
    means, spreads = rng.uniform(-6.0, -1.0, size=(24, 1, 64)), rng.uniform(0.3, 1.0, size=(24, 1, 64))
    batch = torch.from_numpy((shape * spreads + means).astype(np.float32))
    config = TrainConfig(band_mixstyle_probability=0.5)
    mixed = _mix_band_statistics(np.random.default_rng(6), batch, config).numpy()
    original = batch.numpy()
    changed = [row for row in range(24) if not np.allclose(mixed[row], original[row], atol=1e-3)]
    assert 4 <= len(changed) <= 20  # about half the patches
    own_mean, own_spread = original.mean(axis=1), original.std(axis=1)
    for row in changed:
        # Each band keeps its shape over time: the same frames are loud, by an affine map with positive scale.
        correlation = [np.corrcoef(original[row, :, band], mixed[row, :, band])[0, 1] for band in range(64)]
        assert min(correlation) > 0.9999
        # Its band means and spreads are one blend, with the same weight, of its own and one other patch's.
        target = np.concatenate([mixed[row].mean(axis=0), mixed[row].std(axis=0)])
        fits = []
        ours = np.concatenate([own_mean[row], own_spread[row]])
        for partner in range(24):
            theirs = np.concatenate([own_mean[partner], own_spread[partner]])
            weight = float(np.dot(target - theirs, ours - theirs) / max(np.dot(ours - theirs, ours - theirs), 1e-12))
            if 0.0 <= weight <= 1.0:
                fits.append(np.abs(weight * ours + (1 - weight) * theirs - target).max())
        assert min(fits) < 1e-3
    # Near-silent patches given a loud patch's spread would reach below silence: they stop at it.
    quiet = LOG_MEL_FLOOR + np.abs(rng.normal(0.0, 0.01, size=(8, PATCH_FRAMES, 64)))
    quiet[::2] = np.maximum(rng.normal(LOG_MEL_FLOOR + 2.0, 3.0, size=(4, PATCH_FRAMES, 64)), LOG_MEL_FLOOR)
    always = replace(config, band_mixstyle_probability=1.0)
    floored = _mix_band_statistics(np.random.default_rng(7), torch.from_numpy(quiet.astype(np.float32)), always)
    assert float(floored.min()) == pytest.approx(LOG_MEL_FLOOR)  # nothing is quieter than silence


def test_context_windows_label_a_window_by_the_event_sound_heard_in_it() -> None:
    rng = np.random.default_rng(4)
    context = (rng.normal(0, 1e-3, 12 * 16000)).astype(np.float32)  # -60 dBFS room tone
    event = np.zeros(2 * 16000, dtype=np.float32)
    event[4000:8000] = 0.3 * np.sin(np.arange(4000) * 2 * np.pi * 1000 / 16000)  # 0.25 s tone in a 2 s event
    glass = LABELS.index("glass")
    windows = context_windows(EventStream(context, (PlacedEvent(5 * 16000, glass, event),)))
    tone_frames = (5 * 16000 + 4000) // 160, (5 * 16000 + 8000) // 160  # frames 525-550
    assert np.all(windows.positive_labels == glass)
    # Every window holding 0.1 s of the tone is the event; none without it, even inside the event's span.
    positive = set(windows.positive_starts.tolist())
    assert {tone_frames[0] - 50, tone_frames[0], tone_frames[1] - 20} <= positive
    assert tone_frames[1] + 5 not in positive and tone_frames[0] - PATCH_FRAMES not in positive
    negative = set(windows.negative_starts.tolist())
    assert not positive & negative and tone_frames[1] + 5 not in negative
    # Everyday windows touch no sample of the event, its silent second included.
    assert 0 in negative and 400 - PATCH_FRAMES in negative and 500 - PATCH_FRAMES not in negative
    assert 6 * 16000 // 160 + 10 not in negative and 7 * 16000 // 160 + 2 in negative
    assert windows.patches(np.array([0, 10])).shape == (2, PATCH_FRAMES, 64)
    assert IGNORED_CLASS < 0


def test_training_windows_need_a_stream_long_enough_for_both_kinds() -> None:
    silence = np.zeros(16000, dtype=np.float32)
    with pytest.raises(ValueError, match="context_seconds"):
        context_windows(EventStream(silence, ()))


def test_context_windows_join_the_batch_with_the_labels_of_what_they_hold() -> None:
    rng = np.random.default_rng(5)
    # Room tone whose level changes every second, so every window is a different patch.
    context = (rng.normal(0, 1, 20 * 16000) * np.repeat(10 ** rng.uniform(-4, -1, 20), 16000)).astype(np.float32)
    event = (0.2 * np.sin(np.arange(16000) * 2 * np.pi * 700 / 16000)).astype(np.float32)
    scream = LABELS.index("scream")
    windows = context_windows(EventStream(context, (PlacedEvent(8 * 16000, scream, event),)))
    config = TrainConfig(freq_mask_bands=0, time_mask_frames=0)
    clips = (torch.zeros((2, PATCH_FRAMES, 64)), torch.tensor([0, scream]), torch.tensor([0.0, 1.0]))
    fill = np.zeros(64, dtype=np.float32)
    batch, labels, distress = _with_context(
        np.random.default_rng(1),
        windows,
        8,
        clips,
        np.zeros((1, PATCH_FRAMES, 64), np.float32),
        np.zeros(0, dtype=np.int64),
        fill,
        config,
    )
    replay = np.random.default_rng(1)
    chosen = replay.integers(0, len(windows.positive_starts), size=8)
    everyday = replay.choice(windows.negative_starts, size=8)
    assert torch.equal(batch[:2], clips[0])
    assert torch.equal(batch[2:10], torch.from_numpy(windows.patches(windows.positive_starts[chosen])))
    assert torch.equal(batch[10:], torch.from_numpy(windows.patches(everyday)))
    assert labels.tolist() == [0, scream] + [scream] * 8 + [IGNORED_CLASS] * 8
    assert distress.tolist() == [0.0, 1.0] + [1.0] * 8 + [0.0] * 8
