"""`distress models evaluate`, `compare` and `info` on a small checkpoint trained here."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from models.classifier import DISTRESS_LABELS, LABELS, Architecture, DistressClassifier
from models.training.dataset import build_dataset, tiny_config
from models.training.evaluate import evaluate
from models.training.train import TrainConfig, train

SMALL = TrainConfig(
    epochs=1,
    batch_size=16,
    benign_validation_seconds=20.0,
    context_seconds=60.0,
    head_context_patches=50,
    architecture=Architecture(stem_channels=4, block_channels=(8, 8), block_strides=(2, 2), hidden=8),
    dataset=tiny_config(seed=5),
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models-cli")
    checkpoint = root / "model.pt"
    train(SMALL, checkpoint, root / "data")
    return checkpoint, root / "data"


def test_evaluate_scores_the_checkpoint_on_the_dataset_it_was_trained_for(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    checkpoint, data_dir = trained
    card_dir = tmp_path / "card"
    result = CliRunner().invoke(
        app,
        [
            "models",
            "evaluate",
            "--checkpoint",
            str(checkpoint),
            "--data-dir",
            str(data_dir),
            "--card-dir",
            str(card_dir),
            "--benign-hours",
            "0.01",
        ],
    )
    assert result.exit_code == 0, result.output
    # Scored on the tiny dataset's test split (its clips per label), not the default training config's.
    per_label = SMALL.dataset.clips_per_label["test"]
    supports = [line.rsplit("|", 2)[1].strip() for line in result.output.splitlines() if line.startswith("| ")]
    assert supports[1 : 1 + len(LABELS)] == [str(per_label)] * len(LABELS)
    assert "ROC-AUC" in result.output
    assert (card_dir / "roc.png").stat().st_size > 0 and (card_dir / "confusion.png").stat().st_size > 0


def test_evaluate_json_holds_the_numbers_of_the_table(trained: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, data_dir = trained
    common = [
        "models",
        "evaluate",
        "--checkpoint",
        str(checkpoint),
        "--data-dir",
        str(data_dir),
        "--benign-hours",
        "0.01",
        "--events-per-label",
        "0",
    ]
    table = CliRunner().invoke(app, [*common, "--card-dir", str(tmp_path / "table")])
    as_json = CliRunner().invoke(app, [*common, "--card-dir", str(tmp_path / "json"), "--json"])
    assert table.exit_code == 0 and as_json.exit_code == 0, table.output + as_json.output
    report = json.loads(as_json.stdout)  # stdout holds the JSON and nothing else
    rows = {
        line.split("|")[1].strip().rstrip(" *"): line.split("|")[2:-1]
        for line in table.stdout.splitlines()
        if line.startswith("| ")
    }
    for metrics in report["classes"]:
        precision, recall, support = (cell.strip() for cell in rows[metrics["label"]])
        assert (f"{metrics['precision']:.3f}", f"{metrics['recall']:.3f}", str(metrics["support"])) == (
            precision,
            recall,
            support,
        )
    assert f"{report['distress_auc']:.4f}" == rows["ROC-AUC"][0].strip()
    counts = report["confusion"]["counts"]
    assert report["confusion"]["labels"] == list(LABELS)
    assert [sum(row) for row in counts] == [metrics["support"] for metrics in report["classes"]]
    assert report["benign"]["windows"] > 0 and report["benign"]["incidents"] >= 0
    assert report["events"] is None and report["cost"]["parameters"] > 0
    assert Path(report["model_card"]) == tmp_path / "json" / "MODEL_CARD.md"

    # Every clip in one source's row; the distress rows' clips over the point are the recall at 5 % false positives.
    sources = report["sources"]
    assert sum(s["clips"] for s in sources) == sum(metrics["support"] for metrics in report["classes"])
    distress = [s for s in sources if s["label"] in DISTRESS_LABELS]
    everyday = [s for s in sources if s["label"] not in DISTRESS_LABELS]
    assert sum(s["over_point"] for s in distress) / sum(s["clips"] for s in distress) == pytest.approx(
        report["recall_at_5pct_fpr"]
    )
    assert sum(s["over_point"] for s in everyday) <= 0.05 * sum(s["clips"] for s in everyday)
    assert report["source_recall_at_5pct_fpr"] == pytest.approx(
        sum(s["over_point"] / s["clips"] for s in distress) / len(distress)
    )
    # The table names the distress source that misses the most clips, with the JSON's counts.
    worst = max(distress, key=lambda s: s["clips"] - s["over_point"])
    missed = worst["clips"] - worst["over_point"]
    assert [cell.strip() for cell in rows[f"{worst['label']}: {worst['source']}"]] == [
        str(worst["clips"]),
        f"{missed} ({missed / worst['clips']:.0%})",
    ]
    assert "Where the recall at 5 % false positives is lost" in (tmp_path / "table" / "MODEL_CARD.md").read_text()


def _copy_at(checkpoint: Path, target: Path, point: float) -> Path:
    """The same network at another operating point for every label."""
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    payload["threshold"] = point
    payload["label_thresholds"] = {label: point for label in DISTRESS_LABELS}
    torch.save(payload, target)
    return target


def test_compare_runs_each_checkpoint_through_its_own_chain_on_the_same_audio(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    checkpoint, data_dir = trained
    # Everyday audio crosses the eager copy's points; nothing the tiny network scores reaches the deaf copy's.
    eager = _copy_at(checkpoint, tmp_path / "eager.pt", 0.02)
    deaf = _copy_at(checkpoint, tmp_path / "deaf.pt", 0.99999)
    common = [
        "models",
        "compare",
        str(checkpoint),
        str(eager),
        str(deaf),
        str(checkpoint),
        "--data-dir",
        str(data_dir),
        "--benign-hours",
        "0.03",
        "--events-per-label",
        "2",
    ]
    result = CliRunner().invoke(app, [*common, "--json"])
    assert result.exit_code == 0, result.output
    plain, eager_row, deaf_row, again = (json.loads(line) for line in result.stdout.splitlines())
    assert plain == again  # the same checkpoint meets the same clips, hours and events

    # Clip metrics are the network's, whatever its points, and those `models evaluate` reads off the same split.
    report = evaluate(
        DistressClassifier.load(checkpoint),
        build_dataset(SMALL.dataset, data_dir),
        checkpoint,
        split="validation",
        benign_seconds=0,
        data_dir=data_dir,
    )
    for row in (plain, eager_row, deaf_row):
        assert (row["distress_auc"], row["recall_at_5pct_fpr"], row["source_recall_at_5pct_fpr"]) == (
            report.distress_auc,
            report.recall_at_5pct_fpr,
            report.source_recall_at_5pct_fpr,
        )
    assert eager_row["label_thresholds"] == {label: 0.02 for label in sorted(DISTRESS_LABELS)}

    # One benign stream of 108 s (seed 0); each row's incidents are those its own operating points opened.
    assert [(hour["seed"], hour["seconds"]) for hour in plain["benign"]] == [(0, 108.0)]
    assert eager_row["incidents"] >= 1 and deaf_row["incidents"] == 0
    assert deaf_row["events"]["recall"] == 0
    for row in (plain, eager_row, deaf_row):
        assert sum(row["false_alarms_by_label"].values()) == row["incidents"]
        assert set(row["false_alarms_by_label"]) <= DISTRESS_LABELS
        assert set(row["events"]["events"]) <= DISTRESS_LABELS and set(row["events"]["events"].values()) == {2}

    # At the eager copy's points the shipped network decides as the eager copy does: same network, same points.
    moved = CliRunner().invoke(app, [*common[:3], *common[6:], "--points-of", str(eager), "--json"])
    assert moved.exit_code == 0, moved.output
    (at_eager_points,) = (json.loads(line) for line in moved.stdout.splitlines())
    assert (at_eager_points["checkpoint"], at_eager_points["points_of"]) == (str(checkpoint), str(eager))
    assert plain["points_of"] is None
    named = {"checkpoint", "sha256", "points_of"}
    assert {key: value for key, value in at_eager_points.items() if key not in named} == {
        key: value for key, value in eager_row.items() if key not in named
    }

    table = CliRunner().invoke(app, common)
    assert table.exit_code == 0, table.output
    rows = [line.split("|")[1:-1] for line in table.stdout.splitlines()[2:]]
    assert [cells[0].split()[0] for cells in rows] == ["model.pt", "eager.pt", "deaf.pt", "model.pt"]
    assert [int(cells[4].split()[0]) for cells in rows] == [
        row["incidents"] for row in (plain, eager_row, deaf_row, again)
    ]
    assert [cells[6].strip() for cells in rows] == [
        f"{row['events']['recall']:.3f}" for row in (plain, eager_row, deaf_row, again)
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--split", "train"], "--split must be one of validation, test, got 'train'"),
        ([], "no checkpoint at"),
    ],
)
def test_compare_names_what_is_wrong(
    trained: tuple[Path, Path], tmp_path: Path, arguments: list[str], message: str
) -> None:
    checkpoint, data_dir = trained
    missing = tmp_path / "missing.pt"
    result = CliRunner().invoke(
        app, ["models", "compare", str(checkpoint), str(missing), "--data-dir", str(data_dir), *arguments]
    )
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())


def test_info_json_names_the_dataset_digest(trained: tuple[Path, Path]) -> None:
    checkpoint, _ = trained
    result = CliRunner().invoke(app, ["models", "info", "--checkpoint", str(checkpoint), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["dataset_digest"] == SMALL.dataset.digest()


@pytest.mark.parametrize("command", ["train", "evaluate", "compare"])
def test_training_commands_name_the_train_extra_when_it_is_missing(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name == "matplotlib" else find_spec(name, *rest)
    )
    result = CliRunner().invoke(app, ["models", command, *(["model.pt"] if command == "compare" else [])])
    assert result.exit_code == 1
    assert "pip install -e '.[train]'" in result.output


def test_inference_and_models_info_import_nothing_of_training() -> None:
    """The runtime (the offline detector, `distress models info`) runs without the ``[train]`` extra."""
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "import actors.offline\n"
        "from cli.main import app\n"
        "result = CliRunner().invoke(app, ['models', 'info', '--json'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(name for name in sys.modules if name.startswith(('models.training', 'matplotlib'))))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=Path(__file__).parents[2], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "[]"
