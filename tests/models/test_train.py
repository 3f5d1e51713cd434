"""Training: bit-for-bit reproducible on one thread, and the optional spectral augmentations do what they
claim."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.classifier import PATCH_FRAMES, Architecture, DistressClassifier
from models.dataset import tiny_config
from models.train import LOG_MEL_FLOOR, LOG_POWER_PER_DB, TrainConfig, _augmented_batch, _mean_log_power, train

QUICK = TrainConfig(
    epochs=2,
    batch_size=16,
    level_db=6.0,
    eq_db=4.0,
    overlay_probability=0.5,
    benign_validation_seconds=20.0,
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
