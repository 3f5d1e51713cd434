"""The distress head on YAMNet: its checkpoint, its scores through the shared acoustic-model interface, training
and evaluation on a tiny dataset, and `distress models evaluate-head`."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from cli.models import product_chain, replayer, scored_windows
from domain.labels import DISTRESS_LABELS, SOUND_LABELS
from models.acoustic import (
    CNN_FRONT_END,
    FUSED_FRONT_END,
    YAMNET_FRONT_END,
    default_model_path,
    front_end_for,
    load_acoustic_model,
)
from models.classifier import Calibration, ClassifierError, default_checkpoint_path
from models.fused import FusedCheckpoint
from models.fusion import Accumulation
from models.training import synth
from models.training.dataset import benign_stream, build_dataset, tiny_config
from models.training.decision import NEEDED, VALIDATION_EVERYDAY_SEEDS, record_validation
from models.training.fuse import WEIGHTINGS, mixed_windows
from models.training.head import NO_CLASS, HeadConfig, averaged, train_head, zero_shot_scores
from models.yamnet import Yamnet, patches
from models.yamnet_head import (
    FEATURE_SIZE,
    MODEL_VERSION,
    HeadCheckpoint,
    HeadWeights,
    YamnetDistressModel,
    default_head_path,
)

TINY = replace(
    tiny_config(seed=3),
    labels=SOUND_LABELS,
    balanced_by_source=True,
    clips_per_label={"train": 16, "validation": 8, "test": 8},
)

TINY_HEAD = HeadConfig(
    epochs=4, hidden=16, everyday_train_s=120.0, benign_validation_s=60.0, context_s=120.0, context_windows=100
)


@pytest.fixture(scope="module")
def yamnet() -> Yamnet:
    return Yamnet.load()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, yamnet: Yamnet) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("head")
    dataset = build_dataset(TINY, root / "data")
    checkpoint = train_head(dataset, yamnet, TINY_HEAD)
    checkpoint.save(root / "head.npz")
    return root / "head.npz", root / "data"


def random_checkpoint(seed: int = 0, hidden: int = 8) -> HeadCheckpoint:
    rng = np.random.default_rng(seed)
    labels = len(SOUND_LABELS)
    weights = HeadWeights(
        input_mean=np.zeros(FEATURE_SIZE, np.float32),
        input_std=np.ones(FEATURE_SIZE, np.float32),
        hidden_weight=rng.normal(0, 0.05, (FEATURE_SIZE, hidden)).astype(np.float32),
        hidden_bias=np.zeros(hidden, np.float32),
        class_weight=rng.normal(0, 0.1, (hidden, labels)).astype(np.float32),
        class_bias=np.zeros(labels, np.float32),
        distress_weight=rng.normal(0, 0.1, hidden).astype(np.float32),
        distress_bias=np.zeros(1, np.float32),
    )
    return HeadCheckpoint(weights, SOUND_LABELS, Calibration(1.5, 0.8, -0.1), 0.7, "0.0.1", {"note": "test"})


def test_a_saved_head_loads_as_it_was_and_scores_the_same(tmp_path: Path, yamnet: Yamnet) -> None:
    checkpoint = random_checkpoint()
    checkpoint.save(tmp_path / "head.npz")
    loaded = HeadCheckpoint.load(tmp_path / "head.npz")
    assert (loaded.labels, loaded.calibration, loaded.threshold, loaded.version) == (
        SOUND_LABELS,
        Calibration(1.5, 0.8, -0.1),
        0.7,
        "0.0.1",
    )
    scream = synth.scream(np.random.default_rng(1), synth.random_voice(np.random.default_rng(2), "adult_female"))
    batch = patches(scream)
    before = YamnetDistressModel(yamnet, checkpoint).predict_batch(batch)
    after = YamnetDistressModel(yamnet, loaded).predict_batch(batch)
    assert before == after
    assert before[0].labels == SOUND_LABELS and before[0].model_id == "distress-yamnet"
    assert sum(before[0].probabilities) == pytest.approx(1.0, abs=1e-4)
    assert 0.0 < before[0].distress_probability < 1.0


def test_a_file_that_is_not_a_head_is_refused_with_its_name(tmp_path: Path) -> None:
    other = tmp_path / "other.npz"
    np.savez(other, something=np.zeros(3))
    with pytest.raises(ClassifierError, match=r"other\.npz is not a distress-yamnet head"):
        HeadCheckpoint.load(other)
    with pytest.raises(ClassifierError, match=r"is not a distress-yamnet head"):
        load_acoustic_model(other)


def test_a_head_that_differs_from_its_digest_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "head.npz"
    random_checkpoint().save(path)
    assert HeadCheckpoint.load(path).version == "0.0.1"  # save wrote the matching .sha256
    random_checkpoint(seed=1).save(tmp_path / "other.npz")
    path.write_bytes((tmp_path / "other.npz").read_bytes())
    with pytest.raises(ClassifierError, match=r"head\.npz has sha256 .* but head\.npz\.sha256 says"):
        HeadCheckpoint.load(path)
    with pytest.raises(ClassifierError, match="no head checkpoint at"):
        HeadCheckpoint.load(tmp_path / "missing.npz")


def test_the_shipped_head_is_intact_and_knows_every_label() -> None:
    checkpoint = HeadCheckpoint.load(default_head_path())
    assert checkpoint.labels == SOUND_LABELS and checkpoint.version == MODEL_VERSION
    assert checkpoint.metadata["dataset_config"]["balanced_by_source"] is True


def test_the_checkpoint_kind_picks_the_front_end_the_features_stage_computes(tmp_path: Path) -> None:
    assert front_end_for(tmp_path / "head.npz") is YAMNET_FRONT_END
    assert front_end_for(tmp_path / "cnn.pt") is CNN_FRONT_END
    assert front_end_for(None) is front_end_for(default_model_path()) is FUSED_FRONT_END
    assert YAMNET_FRONT_END.features.mel_of_magnitude and not CNN_FRONT_END.features.mel_of_magnitude


def test_training_chooses_on_validation_and_records_its_dataset(trained: tuple[Path, Path], yamnet: Yamnet) -> None:
    path, _ = trained
    checkpoint = HeadCheckpoint.load(path)
    assert 0.0 < checkpoint.threshold < 1.0
    assert checkpoint.metadata["dataset"] == TINY.digest()
    assert tuple(checkpoint.metadata["dataset_config"]["labels"]) == SOUND_LABELS
    model = load_acoustic_model(path)
    assert model.model_id == "distress-yamnet" and model.threshold == checkpoint.threshold


def test_the_head_also_trains_on_windows_of_a_stream_with_training_events_mixed_in(trained: tuple[Path, Path]) -> None:
    """As many windows holding an event's sound (its distress label) as of the everyday audio around them (no
    class), cut from a training-split stream and cached beside the dataset."""
    path, data_dir = trained
    assert HeadCheckpoint.load(path).metadata["context_windows_of_each_kind"] == 100
    (cache,) = data_dir.glob("*/yamnet-context-train-120s-100-seed7*.npz")
    with np.load(cache) as data:
        inputs, labels, targets = data["inputs"], data["labels"], data["targets"]
    assert inputs.shape == (200, FEATURE_SIZE) and np.isfinite(inputs).all()
    assert (targets == 1).sum() == 100 and (labels[targets == 0] == NO_CLASS).all()
    assert {SOUND_LABELS[label] for label in labels[targets == 1]} <= set(DISTRESS_LABELS)


def test_averaged_heads_are_one_head_whose_logits_are_the_mean_of_theirs() -> None:
    members = [random_checkpoint(seed).weights for seed in (0, 1, 2)]
    inputs = np.random.default_rng(3).normal(0, 3, (20, FEATURE_SIZE)).astype(np.float32)
    merged = averaged(members)
    assert merged.hidden_weight.shape == (FEATURE_SIZE, 3 * 8)
    expected = [
        np.mean(outputs, axis=0) for outputs in zip(*(member.logits(inputs) for member in members), strict=True)
    ]
    for outputs, mean in zip(merged.logits(inputs), expected, strict=True):
        np.testing.assert_allclose(outputs, mean, rtol=1e-5, atol=1e-5)
    other_inputs = replace(members[1], input_std=members[1].input_std * 2)
    with pytest.raises(ValueError, match="same inputs"):
        averaged([members[0], other_inputs])


def test_training_several_seeds_ships_them_as_one_averaged_head(trained: tuple[Path, Path], yamnet: Yamnet) -> None:
    """``members=2`` trains seed 7's head exactly as ``members=1`` does, and seed 8's beside it."""
    path, data_dir = trained
    both = train_head(build_dataset(TINY, data_dir), yamnet, replace(TINY_HEAD, members=2))
    assert both.metadata["members"] == 2 and len(both.metadata["member_validation_aucs"]) == 2
    hidden = TINY_HEAD.hidden
    assert both.weights.hidden_weight.shape == (FEATURE_SIZE, 2 * hidden)
    alone = HeadCheckpoint.load(path).weights
    np.testing.assert_allclose(both.weights.hidden_weight[:, :hidden], alone.hidden_weight, atol=1e-6)
    np.testing.assert_allclose(both.weights.class_weight[:hidden] * 2, alone.class_weight, atol=1e-6)
    assert not np.allclose(both.weights.hidden_weight[:, hidden:], alone.hidden_weight)


def test_the_decision_rule_is_chosen_on_validation_windows_opening_nothing_in_everyday_audio(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    source, data_dir = trained
    path = tmp_path / "head.npz"
    shutil.copy(source, path)
    shutil.copy(source.with_name(source.name + ".sha256"), path.with_name(path.name + ".sha256"))
    arguments = [
        "--checkpoint",
        str(path),
        "--data-dir",
        str(data_dir),
        "--everyday-seconds",
        "60",
        "--events-per-label",
        "2",
    ]
    result = CliRunner().invoke(app, ["models", "choose-rule", *arguments])
    assert result.exit_code == 0, result.output
    head = HeadCheckpoint.load(path)
    assert head.accumulation is not None and json.loads(result.stdout)["threshold"] == head.threshold
    tried = head.metadata["decision_rules_tried"]
    assert (tried[0]["point"], tried[0]["memory"], tried[0]["needed"]) == (
        head.threshold,
        head.accumulation.memory,
        head.accumulation.needed,
    )
    # On the same validation windows, the rule written into the checkpoint opens nothing in the everyday hours
    # and catches the events it was chosen for; a rule needing less evidence at its point and memory opened some.
    dataset = build_dataset(TINY, data_dir)
    windows = record_validation(scored_windows(path), dataset, data_dir, everyday_s=60.0, events_per_label=2)
    replay = replayer(path)
    assert not any(replay(hour, head.threshold, head.accumulation) for hour in windows.everyday)
    caught = sum(event.caught_by(replay(event.windows, head.threshold, head.accumulation)) for event in windows.events)
    assert caught == sum(tried[0]["validation_events_caught"].values())
    if head.accumulation.needed > NEEDED[0]:
        less = replace(head.accumulation, needed=NEEDED[NEEDED.index(head.accumulation.needed) - 1])
        assert any(replay(hour, head.threshold, less) for hour in windows.everyday)


def test_fusing_with_the_cnn_keeps_the_weighting_whose_rule_catches_most_and_the_file_scores_as_chosen(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    head, data_dir = trained
    output = tmp_path / "fused.json"
    arguments = ["--checkpoint", str(head), "--output", str(output), "--data-dir", str(data_dir)]
    arguments += ["--everyday-seconds", "60", "--events-per-label", "2"]
    result = CliRunner().invoke(app, ["models", "fuse", *arguments])
    assert result.exit_code == 0, result.output
    fused = FusedCheckpoint.load(output)
    assert fused.member_paths == {"yamnet": head.resolve(), "cnn": default_checkpoint_path().resolve()}
    tried = fused.metadata["fusions_tried"]
    assert len(tried) == len(WEIGHTINGS) and tried[0]["weights"] == fused.weights
    assert tried[0]["validation_events_caught"] == max(fusion["validation_events_caught"] for fusion in tried)
    # The chosen rule, replayed on the members' mixed validation windows, opens nothing in the everyday pieces and
    # catches what it was chosen for; the fused file, run through the chain, scores those same mixed windows.
    dataset = build_dataset(TINY, data_dir)
    head_windows, cnn_windows = (
        record_validation(scored_windows(path), dataset, data_dir, everyday_s=60.0, events_per_label=2)
        for path in (head, default_checkpoint_path())
    )
    windows = mixed_windows(head_windows, cnn_windows, fused.weights)
    replay = replayer(head)
    assert not any(replay(hour, fused.threshold, fused.accumulation) for hour in windows.everyday)
    rule = (fused.threshold, fused.accumulation)
    caught = sum(event.caught_by(replay(event.windows, *rule)) for event in windows.events)
    assert caught == tried[0]["validation_events_caught"]
    piece = benign_stream(TINY, 60.0, "validation", data_dir, seed=VALIDATION_EVERYDAY_SEEDS[0])
    chained = scored_windows(output)(piece)
    assert [window.sample_offset for window in chained] == [window.sample_offset for window in windows.everyday[0]]
    assert [window.acoustic_probability for window in chained] == pytest.approx(
        [window.acoustic_probability for window in windows.everyday[0]], abs=1e-6
    )


def test_replaying_recorded_windows_under_the_model_s_own_rule_opens_what_the_chain_opened(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    scream = synth.scream(rng, synth.random_voice(rng, "adult_female"))
    audio = (rng.standard_normal(16_000 * 12) * 0.003).astype(np.float32)
    audio[5 * 16_000 : 5 * 16_000 + scream.size] += scream
    checkpoint = default_checkpoint_path()  # the CNN: windows judged alone
    opened = product_chain(checkpoint)(audio)
    assert opened, "the shipped model should open an incident on this scream"
    scorer = load_acoustic_model(checkpoint)
    onsets = replayer(checkpoint)(scored_windows(checkpoint)(audio), scorer.threshold, Accumulation(memory=0, needed=0))
    assert onsets == [incident.onset_s for incident in opened]


def test_zero_shot_is_the_highest_distress_class_probability() -> None:
    scores = np.zeros((2, 521), np.float32)
    scores[0, 11] = 0.7  # Screaming
    scores[0, 0] = 0.9  # Speech: not a distress class
    scores[1, 394] = 0.4  # Fire alarm
    assert zero_shot_scores(scores).tolist() == pytest.approx([0.7, 0.4])


def test_evaluate_head_prints_zero_shot_beside_the_head_on_the_test_split(trained: tuple[Path, Path]) -> None:
    path, data_dir = trained
    args = ["models", "evaluate-head", "--checkpoint", str(path), "--data-dir", str(data_dir)]
    table = CliRunner().invoke(app, [*args, "--benign-hours", "0", "--events-per-label", "0"])
    assert table.exit_code == 0, table.output
    assert "YAMNet zero-shot" in table.output and "trained head" in table.output
    assert "product decision" not in table.output
    cnn = default_checkpoint_path()
    result = CliRunner().invoke(
        app, [*args, "--json", "--benign-hours", "0.02", "--events-per-label", "1", "--beside", str(cnn)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout holds the JSON and nothing else
    product, beside = report["product"], report["beside"]
    assert (product["checkpoint"], beside["checkpoint"]) == (str(path), str(cnn))
    assert beside["events"]["events"] == product["events"]["events"]  # the same events, the other model's answers
    assert beside["benign_hours"] == 0.02 and beside["false_incidents"] == sum(
        beside["false_incidents_by_label"].values()
    )
    assert product["benign_hours"] == 0.02 and product["false_incidents"] == sum(
        product["false_incidents_by_label"].values()
    )
    assert set(product["events"]["events"]) == set(SOUND_LABELS) - {"background", "speech"}
    assert set(product["events"]["events"].values()) == {1}
    assert [float(length) for length in product["screams_by_length"]] == [0.1, 0.2, 0.3, 0.5, 1.0]
    rows = report["rows"]
    assert [row["scorer"].split()[0] for row in rows] == ["YAMNet", "distress-yamnet"]
    for row in rows:
        assert 0.0 <= row["roc_auc"] <= 1.0 and 0.0 <= row["recall_at_5_fpr"] <= 1.0
        assert set(row["recall_by_label"]) <= set(SOUND_LABELS) - {"background", "speech"}
        assert row["sources"] >= 7  # every distress label has a source in the tiny test split


def test_evaluate_head_refuses_the_training_split(trained: tuple[Path, Path]) -> None:
    path, data_dir = trained
    result = CliRunner().invoke(
        app, ["models", "evaluate-head", "--checkpoint", str(path), "--data-dir", str(data_dir), "--split", "train"]
    )
    assert result.exit_code == 2 and "--split must be one of" in result.output
