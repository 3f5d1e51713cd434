"""distress-fused: both members on each window of the product's chain, their log-odds mixed as the file says."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from actors.features import FeatureStage
from actors.offline import Detector
from config import load_settings
from events.catalogue import DistressScored
from models.acoustic import CNN_FRONT_END, FUSED_FRONT_END, YAMNET_FRONT_END, front_end_for, load_acoustic_model
from models.classifier import ClassifierError, sha256_of
from models.fused import FusedCheckpoint, FusedDistressModel, default_fused_path
from models.training import synth
from tests.support.features import CATALOGUE, chunk_events, handle

FUSED = default_fused_path()


def scream_in_a_room(path: Path) -> Path:
    """A synthetic scream 2 s into 5 s of quiet room noise."""
    rng = np.random.default_rng(11)
    scream = synth.scream(rng, synth.random_voice(rng, "adult_female"))[:16_000]
    room = (3e-3 * np.random.default_rng(2).standard_normal(5 * 16_000)).astype(np.float32)
    room[2 * 16_000 : 2 * 16_000 + scream.size] += scream
    soundfile.write(path, room, 16_000)
    return path


def windows(model_path: Path, recording: Path) -> dict[int, DistressScored]:
    detector = Detector(load_settings(scorer={"model_path": str(model_path)}), with_asr=False)
    return {event.sample_offset: event for event in detector.events(recording) if isinstance(event, DistressScored)}


def test_the_shipped_fused_checkpoint_names_its_intact_members() -> None:
    checkpoint = FusedCheckpoint.load(FUSED)
    assert {name: path.name for name, path in checkpoint.member_paths.items()} == {
        "yamnet": "distress-yamnet-2.2.0.npz",
        "cnn": "distress-cnn-1.5.0.pt",
    }
    assert front_end_for(FUSED) is FUSED_FRONT_END and FUSED_FRONT_END.n_mels == 128
    assert isinstance(load_acoustic_model(FUSED), FusedDistressModel)


def test_each_window_is_the_weighted_mean_of_the_members_log_odds_on_the_same_audio(tmp_path: Path) -> None:
    """Through `distress detect`'s chain: the fused run's windows against the head's and the CNN's own runs."""
    recording = scream_in_a_room(tmp_path / "scream.wav")
    fused, head, cnn = (
        windows(path, recording) for path in (FUSED, *FusedCheckpoint.load(FUSED).member_paths.values())
    )
    weights = FusedCheckpoint.load(FUSED).weights
    assert fused.keys() == head.keys() == cnn.keys() and len(fused) == 5

    def logit(p: float) -> float:
        return math.log(p / (1 - p))

    for offset, window in fused.items():
        mixed = (
            weights["yamnet"] * logit(head[offset].acoustic_probability)
            + weights["cnn"] * logit(cnn[offset].acoustic_probability)
        ) / sum(weights.values())
        assert logit(window.acoustic_probability) == pytest.approx(mixed, abs=1e-3)
        assert window.labels == head[offset].labels  # the head names the sound: it knows all nine labels
        assert (window.model_id, window.model_version) == ("distress-fused", "1.0.0")
    strongest = max(fused.values(), key=lambda window: window.acoustic_probability)
    assert strongest.sample_offset == 2 * 16_000 and strongest.labels[0].label in {"scream", "crying"}


def test_the_feature_stage_puts_both_log_mels_side_by_side() -> None:
    signal = (0.1 * np.random.default_rng(4).standard_normal(24_000)).astype(np.float32)
    chunks = chunk_events(signal, [16_000, 8_000])
    fused = handle(FeatureStage(CATALOGUE, FUSED_FRONT_END), chunks)
    alone = [handle(FeatureStage(CATALOGUE, front_end), chunks) for front_end in (YAMNET_FRONT_END, CNN_FRONT_END)]
    for event, yamnet, power in zip(fused, *alone, strict=True):
        assert (event.log_mel, event.n_mels, event.frames) == ("yamnet+power", 128, yamnet.frames)
        bands = np.frombuffer(event.log_mel_f16, "<f2").reshape(event.frames, 128)
        np.testing.assert_array_equal(bands[:, :64], np.frombuffer(yamnet.log_mel_f16, "<f2").reshape(-1, 64))
        np.testing.assert_array_equal(bands[:, 64:], np.frombuffer(power.log_mel_f16, "<f2").reshape(-1, 64))
        assert event.summary == yamnet.summary


def copy_of_fused(folder: Path) -> Path:
    for path in FusedCheckpoint.load(FUSED).member_paths.values():
        shutil.copy(path, folder / path.name)
    shutil.copy(FUSED, folder / FUSED.name)
    return folder / FUSED.name


def test_a_member_that_differs_from_the_recorded_sha256_is_refused(tmp_path: Path) -> None:
    copy = copy_of_fused(tmp_path)
    head = tmp_path / "distress-yamnet-2.2.0.npz"
    expected = sha256_of(head)
    head.write_bytes(head.read_bytes() + b"\0")
    with pytest.raises(ClassifierError, match=rf"its yamnet member .* expected {expected}"):
        FusedCheckpoint.load(copy)


def test_a_fused_file_without_its_fields_is_refused_with_its_name(tmp_path: Path) -> None:
    copy = copy_of_fused(tmp_path)
    document = json.loads(copy.read_text())
    del document["accumulation"]
    copy.write_text(json.dumps(document))
    with pytest.raises(ClassifierError, match=rf"cannot read fused checkpoint {re.escape(str(copy))}.*accumulation"):
        FusedCheckpoint.load(copy)
    (tmp_path / "distress-yamnet-2.2.0.npz").unlink()
    copy.write_text(FUSED.read_text())
    with pytest.raises(ClassifierError, match=r"its yamnet member .* is missing"):
        FusedCheckpoint.load(copy)
