"""The distress CNN and its shipped checkpoint: shapes, integrity, calibration, directional behaviour."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from cli.main import app
from models.classifier import (
    DISTRESS_LABELS,
    LABELS,
    MODEL_ID,
    MODEL_VERSION,
    N_MELS,
    PATCH_FRAMES,
    Calibration,
    ClassifierError,
    DistressClassifier,
    DistressNet,
    default_checkpoint_path,
    distress_targets,
    parameter_count,
    sha256_of,
)
from models.features import log_mel
from models.training import synth
from models.training.game_sounds import to_mono_16k
from models.training.metrics import count_decisions, roc_auc, roc_curve, threshold_at_fpr


@pytest.fixture(scope="module")
def classifier() -> DistressClassifier:
    return DistressClassifier.load()


def patch_of(audio: np.ndarray, level_dbfs: float) -> np.ndarray:
    """The runtime's view of a sound: last PATCH_FRAMES log-mel frames of a 1 s clip at a given level."""
    clip = np.zeros(16000, dtype=np.float32)
    sound = audio[:16000]
    offset = (16000 - len(sound)) // 2
    clip[offset : offset + len(sound)] = sound
    clip = clip * (10 ** (level_dbfs / 20) / synth.rms(clip))
    return log_mel(clip)[-PATCH_FRAMES:]


def test_label_set_covers_the_required_classes() -> None:
    assert set(LABELS) >= {"scream", "shout", "crying", "speech", "glass", "impact", "background"}
    assert set(LABELS) > DISTRESS_LABELS
    assert "speech" not in DISTRESS_LABELS and "background" not in DISTRESS_LABELS
    targets = distress_targets(np.arange(len(LABELS)))
    assert [LABELS[i] for i in np.flatnonzero(targets)] == sorted(DISTRESS_LABELS, key=LABELS.index)


def test_network_output_shapes() -> None:
    network = DistressNet().eval()
    logits, distress = network(torch.randn(3, PATCH_FRAMES, N_MELS))
    assert logits.shape == (3, len(LABELS))
    assert distress.shape == (3,)
    assert 50_000 < parameter_count(network) < 1_000_000


def test_shipped_checkpoint_is_small_versioned_and_matches_its_sha256(classifier: DistressClassifier) -> None:
    path = default_checkpoint_path()
    assert path.name == f"{MODEL_ID}-{MODEL_VERSION}.pt"
    recorded = path.with_name(path.name + ".sha256").read_text().split()
    assert recorded == [sha256_of(path), path.name]
    assert path.stat().st_size < 5 * 1024 * 1024
    assert (classifier.model_id, classifier.model_version) == (MODEL_ID, MODEL_VERSION)
    assert 0 < classifier.threshold < 1
    assert classifier.metadata["validation"]["distress_auc"] > 0.9


def test_tampered_checkpoint_is_refused(tmp_path: Path) -> None:
    source = default_checkpoint_path()
    copy = tmp_path / source.name
    shutil.copy(source, copy)
    shutil.copy(source.with_name(source.name + ".sha256"), tmp_path)
    with copy.open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ClassifierError, match="sha256"):
        DistressClassifier.load(copy)
    with pytest.raises(ClassifierError, match="no checkpoint"):
        DistressClassifier.load(tmp_path / "missing.pt")


def test_predict_returns_calibrated_scores_naming_the_model(classifier: DistressClassifier) -> None:
    rng = np.random.default_rng(0)
    scores = classifier.predict(patch_of(synth.coloured_noise(rng, 16000, 1.0), -40))
    assert scores.labels == LABELS
    assert sum(scores.probabilities) == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= scores.distress_probability <= 1.0
    assert (scores.model_id, scores.model_version) == (MODEL_ID, MODEL_VERSION)
    assert scores.probability(scores.top_label) == max(scores.probabilities)
    with pytest.raises(ClassifierError, match="unknown label"):
        scores.probability("laughter")


def test_batch_prediction_equals_single_predictions(classifier: DistressClassifier) -> None:
    rng = np.random.default_rng(1)
    patches = np.stack([patch_of(synth.coloured_noise(rng, 16000, e), -30) for e in (0.0, 1.0, 2.0)])
    batched = classifier.predict_batch(patches)
    for patch, scores in zip(patches, batched, strict=True):
        single = classifier.predict(patch)
        assert single.distress_probability == pytest.approx(scores.distress_probability, abs=1e-5)


def test_screams_and_glass_score_above_noise_and_speech(classifier: DistressClassifier, tmp_path: Path) -> None:
    """Directional check on freshly generated sounds (new seeds: none of these exact clips was trained on)."""
    rng = np.random.default_rng(12345)
    screams = [synth.scream(rng, synth.random_voice(rng, kind)) for kind in ("adult_female", "adult_male", "child")]
    glass = [synth.glass_break(rng) for _ in range(3)]
    noise = [synth.coloured_noise(rng, 16000, e) for e in (0.0, 1.0, 2.0)] + [synth.room_tone(rng, 16000)]
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), "I will be home at six, see you then."], check=True)
    data, rate = soundfile.read(wav, dtype="float32")
    speech = to_mono_16k(data, rate)
    speech = speech[np.argmax(np.abs(speech) > 0.05) :]

    def distress(sounds: list[np.ndarray], level: float) -> np.ndarray:
        patches = np.stack([patch_of(s, level) for s in sounds])
        return classifier.score_arrays(patches)[1]

    scream_p, glass_p = distress(screams, -20), distress(glass, -20)
    benign_p = np.concatenate([distress(noise, -35), distress([speech], -25)])
    assert scream_p.min() > benign_p.max()
    assert glass_p.min() > benign_p.max()
    assert np.all(scream_p > 0.5) and np.all(glass_p > 0.5)  # calibrated: more likely distress than not
    # The shipped operating point is strict (no alarm in a benign validation stream): most, not all, pass it.
    assert np.sum(scream_p >= classifier.threshold) >= 2
    assert np.all(benign_p < classifier.threshold)
    top = [classifier.predict(patch_of(s, -20)).top_label for s in screams]
    assert top.count("scream") >= 2


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (np.zeros((98, N_MELS), np.float32), "shape"),
        (np.zeros((PATCH_FRAMES, 40), np.float32), "shape"),
        (np.zeros((1, PATCH_FRAMES, N_MELS), np.float32), "shape"),
        (np.full((PATCH_FRAMES, N_MELS), np.nan, np.float32), "NaN"),
        (np.zeros((PATCH_FRAMES, N_MELS), np.int32), "floating"),
    ],
)
def test_bad_patches_raise_clear_errors(classifier: DistressClassifier, patch: np.ndarray, message: str) -> None:
    with pytest.raises(ClassifierError, match=message):
        classifier.predict(patch)


def test_stream_scoring_matches_patch_scoring(classifier: DistressClassifier) -> None:
    rng = np.random.default_rng(4)
    audio = np.concatenate([synth.room_tone(rng, 16000) * 0.01, synth.glass_break(rng)[:16000] * 0.3])
    frames = log_mel(audio.astype(np.float32))
    probabilities, streamed = classifier.stream_scores(frames, hop_frames=25)
    starts = range(0, len(frames) - PATCH_FRAMES + 1, 25)
    assert len(streamed) == len(probabilities) == len(starts)
    for start, row, probability in zip(starts, probabilities, streamed, strict=True):
        expected = classifier.predict(frames[start : start + PATCH_FRAMES])
        assert probability == pytest.approx(expected.distress_probability, abs=1e-5)
        assert row == pytest.approx(expected.probabilities, abs=1e-5)
    with pytest.raises(ClassifierError, match="hop_frames"):
        classifier.stream_scores(frames, hop_frames=0)
    with pytest.raises(ClassifierError, match="log-mel frames"):
        classifier.stream_scores(frames[:50], hop_frames=10)


def test_a_window_is_judged_at_its_top_distress_labels_threshold(classifier: DistressClassifier) -> None:
    judged = DistressClassifier(
        classifier.network, classifier.calibration, 0.99, label_thresholds={"crying": 0.9, "glass": 0.95}
    )
    rows = np.zeros((4, len(LABELS)))
    for row, (top, runner_up) in enumerate(
        [("crying", "scream"), ("scream", "crying"), ("glass", "impact"), ("shout", "glass")]
    ):
        rows[row, LABELS.index("background")] = 0.5  # not a distress label: never picks the threshold
        rows[row, LABELS.index(top)], rows[row, LABELS.index(runner_up)] = 0.3, 0.2
    assert judged.thresholds(rows).tolist() == [0.9, 0.99, 0.95, 0.99]
    rebuilt = DistressClassifier.from_payload(judged.to_payload())
    assert rebuilt.label_thresholds == {"crying": 0.9, "glass": 0.95}
    with pytest.raises(ClassifierError, match="speech"):
        DistressClassifier(classifier.network, classifier.calibration, 0.99, label_thresholds={"speech": 0.5})
    with pytest.raises(ClassifierError, match="glass threshold"):
        DistressClassifier(classifier.network, classifier.calibration, 0.99, label_thresholds={"glass": 1.0})


def test_payload_round_trip_preserves_predictions(classifier: DistressClassifier) -> None:
    rebuilt = DistressClassifier.from_payload(classifier.to_payload())
    patch = patch_of(synth.music_like(np.random.default_rng(5), 16000), -30)
    assert rebuilt.predict(patch) == classifier.predict(patch)
    payload = classifier.to_payload()
    payload["format"] = 99
    with pytest.raises(ClassifierError, match="format"):
        DistressClassifier.from_payload(payload)


def test_calibration_and_threshold_validation() -> None:
    with pytest.raises(ClassifierError, match="temperature"):
        Calibration(temperature=0.0)
    with pytest.raises(ClassifierError, match="threshold"):
        DistressClassifier(DistressNet(), Calibration(), threshold=1.5)


def test_metric_helpers_agree_with_definitions() -> None:
    rng = np.random.default_rng(3)
    targets = (rng.random(400) < 0.4).astype(np.float32)
    scores = targets * 0.8 + rng.normal(0, 0.5, 400)
    assert roc_auc(scores, targets) == pytest.approx(roc_auc_score(targets, scores), abs=1e-9)
    fpr, tpr = roc_curve(scores, targets)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(targets, scores), abs=1e-9)
    threshold = threshold_at_fpr(scores, targets, 0.05)
    assert np.mean(scores[targets == 0] >= threshold) <= 0.05
    assert np.mean(scores[targets == 0] >= np.nextafter(threshold, -np.inf) - 1e-6) > 0.05 - 1 / 240
    assert count_decisions(np.array([0.1, 0.9, 0.95, 0.2, 0.8, 0.1, 0.7]), 0.75) == (3, 2)
    per_window = np.array([0.95, 0.95, 0.9, 0.9, 0.9, 0.9, 0.6])
    assert count_decisions(np.array([0.1, 0.9, 0.95, 0.2, 0.8, 0.1, 0.7]), per_window) == (2, 2)


def test_cli_info_reports_the_shipped_checkpoint() -> None:
    result = CliRunner().invoke(app, ["models", "info", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["model_id"] == MODEL_ID and info["model_version"] == MODEL_VERSION
    assert info["sha256"] == sha256_of(default_checkpoint_path())
    assert info["labels"] == list(LABELS)
    missing = CliRunner().invoke(app, ["models", "info", "--checkpoint", "/nonexistent.pt"])
    assert missing.exit_code == 1 and "no checkpoint" in missing.output
