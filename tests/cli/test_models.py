"""`distress models evaluate` and `info` on a small checkpoint trained here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from models.classifier import LABELS, Architecture
from models.dataset import tiny_config
from models.train import TrainConfig, train

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
        ["models", "evaluate", "--checkpoint", str(checkpoint), "--data-dir", str(data_dir),
         "--card-dir", str(card_dir), "--benign-hours", "0.01"],
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
    common = ["models", "evaluate", "--checkpoint", str(checkpoint), "--data-dir", str(data_dir),
              "--benign-hours", "0.01", "--events-per-label", "0"]
    table = CliRunner().invoke(app, [*common, "--card-dir", str(tmp_path / "table")])
    as_json = CliRunner().invoke(app, [*common, "--card-dir", str(tmp_path / "json"), "--json"])
    assert table.exit_code == 0 and as_json.exit_code == 0, table.output + as_json.output
    report = json.loads(as_json.stdout)  # stdout holds the JSON and nothing else
    rows = {line.split("|")[1].strip().rstrip(" *"): line.split("|")[2:-1]
            for line in table.stdout.splitlines() if line.startswith("| ")}
    for metrics in report["classes"]:
        precision, recall, support = (cell.strip() for cell in rows[metrics["label"]])
        assert (f"{metrics['precision']:.3f}", f"{metrics['recall']:.3f}", str(metrics["support"])) == (
            precision, recall, support)
    assert f"{report['distress_auc']:.4f}" == rows["ROC-AUC"][0].strip()
    counts = report["confusion"]["counts"]
    assert report["confusion"]["labels"] == list(LABELS)
    assert [sum(row) for row in counts] == [metrics["support"] for metrics in report["classes"]]
    assert report["benign"]["windows"] > 0 and report["benign"]["incidents"] >= 0
    assert report["events"] is None and report["cost"]["parameters"] > 0
    assert Path(report["model_card"]) == tmp_path / "json" / "MODEL_CARD.md"


def test_info_json_names_the_dataset_digest(trained: tuple[Path, Path]) -> None:
    checkpoint, _ = trained
    result = CliRunner().invoke(app, ["models", "info", "--checkpoint", str(checkpoint), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["dataset_digest"] == SMALL.dataset.digest()
