"""The Whisper-AT second stage: Whisper's mel on our frame grid, the bridge, the gate and the encoder check."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

from models.classifier import LABELS, PATCH_FRAMES, ClassifierError, DistressClassifier, default_checkpoint_path
from models.encoder_stage import WHISPER_MELS, MelBridge, whisper_log_mel
from models.features import log_mel
from models.training import synth
from models.training.evaluate import cnn_only
from tests.models.conftest import whisper_directory


def _scream(rng: np.random.Generator) -> np.ndarray:
    """One second of a synthetic adult scream at a loud level."""
    sound = synth.scream(rng, synth.random_voice(rng, "adult_female"))[:16000]
    return np.asarray(synth.normalise_peak(np.pad(sound, (0, 16000 - len(sound))), 0.5), dtype=np.float32)


@pytest.fixture(scope="module")
def classifier() -> DistressClassifier:
    return DistressClassifier.load()


def test_whisper_log_mel_is_librosas_slaney_mel_on_our_frame_grid() -> None:
    rng = np.random.default_rng(3)
    signal = synth.scream(rng, synth.random_voice(rng, "adult_female"))[:16000] * np.float32(0.3)
    ours = whisper_log_mel(signal)
    power = librosa.feature.melspectrogram(
        y=signal, sr=16000, n_fft=400, hop_length=160, center=False, n_mels=WHISPER_MELS, power=2.0
    )
    reference = np.log10(np.maximum(power, 1e-10)).T
    assert ours.shape == reference.shape == (log_mel(signal).shape[0], WHISPER_MELS)
    np.testing.assert_allclose(ours, reference, atol=2e-3)


def test_bridge_recovers_an_affine_map_and_applies_whispers_clamp_and_scale() -> None:
    rng = np.random.default_rng(0)
    ours = rng.normal(-8.0, 3.0, size=(4000, 64)).astype(np.float32)
    weights = rng.normal(0.0, 0.1, size=(64, WHISPER_MELS)).astype(np.float32)
    bias = rng.normal(-3.0, 0.5, size=WHISPER_MELS).astype(np.float32)
    bridge = MelBridge.fit(ours, ours @ weights + bias, ridge=1e-6)
    np.testing.assert_allclose(bridge.weights[:-1], weights, atol=1e-3)
    np.testing.assert_allclose(bridge.weights[-1], bias, atol=1e-3)

    patches = ours[: 2 * PATCH_FRAMES].reshape(2, PATCH_FRAMES, 64)
    encoder_input = bridge.whisper_input(patches)
    assert encoder_input.shape == (2, WHISPER_MELS, PATCH_FRAMES) and encoder_input.dtype == np.float32
    log10 = encoder_input * 4.0 - 4.0  # undo Whisper's scaling
    for patch, mapped in zip(patches, log10, strict=True):
        expected = (patch @ weights + bias).T
        clamped = np.maximum(expected, expected.max() - 8.0)
        np.testing.assert_allclose(mapped, clamped, atol=1e-2)


def test_the_shipped_checkpoint_runs_the_second_stage_only_past_the_gate(classifier: DistressClassifier) -> None:
    stage = classifier.second_stage
    assert stage is not None and 0.0 < stage.blend.gate < 0.5
    rng = np.random.default_rng(5)
    quiet = log_mel(synth.coloured_noise(rng, 16000, 1.0) * np.float32(0.001))[-PATCH_FRAMES:]
    scream = log_mel(_scream(rng))[-PATCH_FRAMES:]
    patches = np.stack([quiet, scream])
    cnn_probabilities, cnn_distress = cnn_only(classifier).score_arrays(patches)
    probabilities, distress = classifier.score_arrays(patches)
    assert cnn_distress[0] < stage.blend.gate <= cnn_distress[1]
    # Below the gate: the CNN's own logit, only re-calibrated; the class probabilities are the CNN's.
    cnn_logit = np.log(cnn_distress[0] / (1 - cnn_distress[0]))
    expected = torch.sigmoid(
        torch.tensor(cnn_logit / stage.blend.cnn_scale * stage.blend.platt_scale + stage.blend.platt_bias)
    )
    assert distress[0] == pytest.approx(float(expected), abs=1e-5)
    np.testing.assert_allclose(probabilities[0], cnn_probabilities[0], atol=1e-6)
    # Past it the head changes both, and a scream stays far on the distress side.
    assert not np.allclose(probabilities[1], cnn_probabilities[1], atol=1e-4)
    assert distress[1] > 0.9 and probabilities[1].argmax() == LABELS.index("scream")


def test_a_checkpoint_refuses_an_encoder_it_was_not_trained_with(tmp_path: Path) -> None:
    other = whisper_directory(tmp_path / "other-whisper")
    (other / "model.bin").write_bytes(b"not the weights the head was trained on")
    with pytest.raises(ClassifierError, match="second stage was trained on the Whisper encoder with model"):
        DistressClassifier.load(default_checkpoint_path(), encoder=other)
    with pytest.raises(ClassifierError, match="needs a Whisper encoder"):
        DistressClassifier.load(default_checkpoint_path(), encoder=tmp_path / "missing")


def test_the_second_stage_survives_a_payload_round_trip(classifier: DistressClassifier) -> None:
    again = DistressClassifier.from_payload(classifier.to_payload())
    rng = np.random.default_rng(9)
    patches = np.stack([log_mel(_scream(rng))[-PATCH_FRAMES:] for _ in range(3)])
    np.testing.assert_array_equal(classifier.score_arrays(patches)[1], again.score_arrays(patches)[1])
