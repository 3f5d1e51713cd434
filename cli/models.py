"""`distress models train|evaluate|info`: reproduce, measure and inspect the acoustic distress classifier."""

from __future__ import annotations

import importlib.util
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import soundfile
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from cli.errors import CliError
from domain.audio import SAMPLE_RATE
from models.classifier import (
    ClassifierError,
    DistressClassifier,
    default_checkpoint_path,
    parameter_count,
    sha256_of,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from actors.offline import Detector
    from events.catalogue import DistressScored
    from models.fusion import Accumulation
    from models.training.dataset import Dataset, Split
    from models.training.decision import Record, Replay
    from models.training.evaluate import ProductChain
    from models.training.synth import Audio

app = typer.Typer(help="Train, evaluate and inspect the acoustic distress classifier.", no_args_is_help=True)

# None is the training's own data directory (models.training.dataset.DEFAULT_DATA_DIR, .local/data): the default is
# resolved inside the command, so that `distress models info` never imports the training package.
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Where the dataset and TTS cache live (default: .local/data)."),
]
# The splits no checkpoint learns from; the training split would flatter every network alike.
HELD_OUT_SPLITS: dict[str, Split] = {"validation": "validation", "test": "test"}
EventsPerLabelOption = Annotated[
    int,
    typer.Option(
        "--events-per-label",
        min=0,
        help="Distress events in everyday context run through the product's chain, per label.",
    ),
]
CheckpointOption = Annotated[
    Path | None, typer.Option("--checkpoint", help="Checkpoint file (default: the shipped one).")
]


class _ProgressBars:
    """One rich progress bar per stage (voices, clips per split, features, training steps)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _require_training() -> None:
    """``train``, ``evaluate`` and ``compare`` need the ``[train]`` extra (matplotlib draws the model card's plots)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise CliError(
            "this command needs the training extra (matplotlib is missing): pip install -e '.[train]'",
            kind="model",
            exit_code=1,
        )


@app.command("train")
def train_command(
    output: Annotated[
        Path | None, typer.Option("--output", help="Checkpoint to write (default: the shipped asset path).")
    ] = None,
    data_dir: DataDirOption = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Override the number of epochs.")] = None,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            min=1,
            max=64,
            help="Torch CPU threads; only 1 reproduces the checkpoint bit for bit.",
        ),
    ] = 1,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            min=0,
            help="Training seed (default: the shipped checkpoint's). The dataset and its splits stay the same, so "
            "networks of several seeds compare (`distress models compare`).",
        ),
    ] = None,
    band_mixstyle: Annotated[
        float,
        typer.Option(
            "--band-mixstyle",
            min=0.0,
            max=1.0,
            help="Share of training patches given another patch's per-band level and spread (Freq-MixStyle); "
            "0, the shipped recipe, turns it off.",
        ),
    ] = 0.0,
) -> None:
    """Build the dataset (cached) and train, calibrate and save the checkpoint with its .sha256."""
    _require_training()
    from models.training.dataset import DEFAULT_DATA_DIR
    from models.training.errors import DatasetError
    from models.training.train import TrainConfig, train

    console = Console(stderr=True)
    config = TrainConfig(threads=threads, band_mixstyle_probability=band_mixstyle)
    if epochs is not None:
        config = replace(config, epochs=epochs)
    if seed is not None:
        config = replace(config, seed=seed)
    target = output or default_checkpoint_path()
    try:
        with _progress(console) as progress:
            result = train(config, target, data_dir or DEFAULT_DATA_DIR, _ProgressBars(progress))
    except (DatasetError, ClassifierError, ValueError) as error:
        raise CliError(str(error), kind="model", exit_code=1) from error
    summary = {
        "checkpoint": str(result.checkpoint),
        "sha256": result.sha256,
        "parameters": result.parameters,
        "best_epoch": result.best_epoch,
        "validation": result.validation,
        "seconds": round(result.seconds, 1),
    }
    typer.echo(json.dumps(summary, indent=2))


def product_chain(checkpoint: Path, operating_point: float | None = None) -> ProductChain:
    """The incidents the product would open on a recording with ``checkpoint``: the chain of `distress detect
    --no-asr` (features, scorer with fusion and hysteresis, incident rules) at the configured settings; with
    ``operating_point``, the checkpoint's is replaced by it (for every label), as `replay --rescore` does."""
    from domain.labels import DISTRESS_LABELS
    from events.catalogue import IncidentOpened
    from models.training.evaluate import OpenedIncident

    detector = _detector(checkpoint)
    if operating_point is not None:
        detector.scorer.fusion_config = replace(
            detector.scorer.fusion_config, acoustic_operating_point=operating_point, label_operating_points={}
        )

    def opened(event: IncidentOpened) -> OpenedIncident:
        distress = [item for item in event.labels if item.label in DISTRESS_LABELS]
        top = max(distress, key=lambda item: item.score).label if distress else "none"
        return OpenedIncident(event.onset_sample / SAMPLE_RATE, top)

    def chain(audio: Audio) -> list[OpenedIncident]:
        with tempfile.TemporaryDirectory(prefix="distress-evaluate-") as work:
            recording = Path(work) / "recording.wav"
            soundfile.write(recording, audio, SAMPLE_RATE, subtype="FLOAT")
            return [opened(event) for event in detector.events(recording) if isinstance(event, IncidentOpened)]

    return chain


def _detector(checkpoint: Path) -> Detector:
    from actors.offline import Detector
    from config import load_settings

    settings = load_settings()
    scorer = settings.scorer.model_copy(update={"model_path": checkpoint})
    return Detector(settings.model_copy(update={"scorer": scorer}), with_asr=False)


def scored_windows(checkpoint: Path) -> Record:
    """The scored windows of a recording through the same chain as :func:`product_chain`."""
    from events.catalogue import DistressScored

    detector = _detector(checkpoint)

    def record(audio: Audio) -> list[DistressScored]:
        with tempfile.TemporaryDirectory(prefix="distress-decide-") as work:
            recording = Path(work) / "recording.wav"
            soundfile.write(recording, audio, SAMPLE_RATE, subtype="FLOAT")
            return [event for event in detector.events(recording) if isinstance(event, DistressScored)]

    return record


def replayer(checkpoint: Path) -> Replay:
    """Incident onsets (s) under another operating point and accumulation, on windows :func:`scored_windows`
    recorded: the scorer's fusion and the incident rules at the configured settings."""
    from actors.whatif import fuse_again

    detector = _detector(checkpoint)
    fusion, incidents = detector.scorer.fusion_config, detector.settings.incidents

    def onsets(windows: Sequence[DistressScored], point: float, accumulation: Accumulation) -> list[float]:
        trial = replace(fusion, acoustic_operating_point=point, label_operating_points={}, accumulation=accumulation)
        return [event.onset_sample / SAMPLE_RATE for event in fuse_again(windows, trial, incidents)]

    return onsets


@app.command("evaluate")
def evaluate_command(
    checkpoint: CheckpointOption = None,
    data_dir: DataDirOption = None,
    card_dir: Annotated[
        Path | None,
        typer.Option("--card-dir", help="Where to write MODEL_CARD.md and plots (default: beside the checkpoint)."),
    ] = None,
    benign_hours: Annotated[
        float,
        typer.Option(
            "--benign-hours",
            min=0.0,
            help="Length of the benign stream in hours: several, so its false-alarm rate is not one hour's luck.",
        ),
    ] = 3.0,
    events_per_label: EventsPerLabelOption = 40,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON (with the model card's path), not the table.")
    ] = False,
) -> None:
    """Score the held-out test split, print the table and write the model card with ROC/confusion plots."""
    _require_training()
    from actors.offline import DetectionError
    from config import SettingsError
    from models.training.card import write_model_card
    from models.training.dataset import DEFAULT_DATA_DIR, build_dataset
    from models.training.errors import DatasetError
    from models.training.evaluate import (
        evaluate,
        format_sources,
        format_table,
        second_stage_note,
        trained_dataset_config,
    )

    path = checkpoint or default_checkpoint_path()
    data_dir = data_dir or DEFAULT_DATA_DIR
    try:
        classifier = DistressClassifier.load(path)
        dataset = build_dataset(trained_dataset_config(classifier), data_dir)
        report = evaluate(
            classifier,
            dataset,
            path,
            benign_seconds=benign_hours * 3600,
            data_dir=data_dir,
            chain=product_chain(path),
            events_per_label=events_per_label,
        )
    except (DatasetError, ClassifierError, SettingsError, DetectionError, ValueError) as error:
        raise CliError(str(error), kind="model", exit_code=1) from error
    card = write_model_card(report, classifier, path, card_dir or path.parent, second_stage_note(classifier, report))
    if json_output:
        typer.echo(json.dumps({**report.as_json(), "model_card": str(card)}, indent=2))
    else:
        typer.echo(format_table(report))
        typer.echo(f"\n{format_sources(report)}")
        typer.echo(f"\nmodel card: {card}")


# The validation audio a decision rule is chosen on (models.training.decision), for choose-rule and fuse.
EverydaySecondsOption = Annotated[
    float, typer.Option("--everyday-seconds", min=1.0, help="Length of each of the six everyday validation pieces.")
]
ValidationEventsOption = Annotated[
    int | None,
    typer.Option("--events-per-label", min=1, help="Validation distress events of each label (default: 40)."),
]
HeadOption = Annotated[
    Path | None, typer.Option("--checkpoint", help="Head checkpoint (default: the shipped distress-yamnet head).")
]


@app.command("train-head")
def train_head_command(
    output: HeadOption = None,
    data_dir: DataDirOption = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Training seed of the (first) head.")] = 7,
    members: Annotated[
        int,
        typer.Option(
            "--members", min=1, max=16, help="Heads trained from seeds SEED, SEED+1, ..., their logits averaged."
        ),
    ] = 1,
) -> None:
    """Build dataset 4 (cached) and train the distress head on YAMNet; epoch and calibration are chosen on
    validation, then the decision rule as `choose-rule` does."""
    _require_training()
    from models.training.dataset import DEFAULT_DATA_DIR, build_dataset, dataset_4
    from models.training.head import HeadConfig, train_head
    from models.yamnet import Yamnet
    from models.yamnet_head import default_head_path

    target = output or default_head_path()
    with _model_errors(), _progress(Console(stderr=True)) as progress:
        bars = _ProgressBars(progress)
        dataset = build_dataset(dataset_4(), data_dir or DEFAULT_DATA_DIR, bars)
        train_head(dataset, Yamnet.load(), HeadConfig(seed=seed, members=members), bars).save(target)
        _choose_rule(target, dataset, data_dir or DEFAULT_DATA_DIR, bars)
    _print_head(target, dataset)


@app.command("choose-rule")
def choose_rule_command(
    checkpoint: HeadOption = None,
    data_dir: DataDirOption = None,
    everyday_s: EverydaySecondsOption = 3600.0,
    events_per_label: ValidationEventsOption = None,
) -> None:
    """Choose how a trained head's windows add up to an incident (operating point, memory and evidence needed,
    loudness-jump weight) on validation only: the rule that catches the most validation distress events in
    everyday audio while opening no incident in six everyday validation hours; written into the checkpoint."""
    _require_training()
    from models.training.dataset import DEFAULT_DATA_DIR, DatasetConfig, build_dataset
    from models.yamnet_head import HeadCheckpoint, default_head_path

    target = checkpoint or default_head_path()
    with _model_errors(), _progress(Console(stderr=True)) as progress:
        bars = _ProgressBars(progress)
        recorded = HeadCheckpoint.load(target).metadata.get("dataset_config")
        if recorded is None:
            raise ValueError("the head checkpoint records no dataset_config: it was not made by train-head")
        dataset = build_dataset(DatasetConfig.from_dict(recorded), data_dir or DEFAULT_DATA_DIR, bars)
        _choose_rule(target, dataset, data_dir or DEFAULT_DATA_DIR, bars, everyday_s, events_per_label)
    _print_head(target, dataset)


@app.command("fuse")
def fuse_command(
    head: HeadOption = None,
    cnn: Annotated[
        Path | None, typer.Option("--cnn", help="The distress-cnn checkpoint (default: the shipped one).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="The fused checkpoint to write (default: the shipped one).")
    ] = None,
    data_dir: DataDirOption = None,
    everyday_s: EverydaySecondsOption = 3600.0,
    events_per_label: ValidationEventsOption = None,
) -> None:
    """Fuse a head with the CNN, chosen on validation only: both run once over the validation hours and events
    of `choose-rule`; for each weighting of their log-odds the rule is chosen as for a head; the weighting
    that catches the most validation events with no incident in the hours is written as a distress-fused file."""
    _require_training()
    from models.fused import MODEL_VERSION, FusedCheckpoint, default_fused_path
    from models.training.dataset import DEFAULT_DATA_DIR, DatasetConfig, build_dataset
    from models.training.decision import VALIDATION_EVENTS_PER_LABEL, record_validation
    from models.training.fuse import choose_fusion
    from models.yamnet_head import HeadCheckpoint, default_head_path

    members = {"yamnet": head or default_head_path(), "cnn": cnn or default_checkpoint_path()}
    target = output or default_fused_path()
    data_dir = data_dir or DEFAULT_DATA_DIR
    with _model_errors(), _progress(Console(stderr=True)) as progress:
        bars = _ProgressBars(progress)
        recorded = HeadCheckpoint.load(members["yamnet"]).metadata.get("dataset_config")
        if recorded is None:
            raise ValueError("the head checkpoint records no dataset_config: it was not made by train-head")
        dataset = build_dataset(DatasetConfig.from_dict(recorded), data_dir, bars)
        windows = {
            name: record_validation(
                scored_windows(path),
                dataset,
                data_dir,
                everyday_s=everyday_s,
                events_per_label=events_per_label or VALIDATION_EVENTS_PER_LABEL,
                progress=bars,
            )
            for name, path in members.items()
        }
        tried = choose_fusion(windows["yamnet"], windows["cnn"], replayer(members["yamnet"]), bars)
        chosen = tried[0]
        metadata = {
            "chosen_on": f"validation of {dataset.directory.name}: six everyday pieces of {everyday_s:g} s, "
            f"{sum(chosen.trial.events.values())} distress events",
            "validation_events_caught": chosen.trial.caught,
            "validation_events": chosen.trial.events,
            "fusions_tried": [
                {
                    "weights": dict(fusion.weights),
                    "point": fusion.trial.point,
                    **asdict(fusion.trial.accumulation),
                    "validation_events_caught": sum(fusion.trial.caught.values()),
                }
                for fusion in tried
            ],
        }
        fused = FusedCheckpoint(
            MODEL_VERSION, members, chosen.weights, chosen.trial.point, chosen.trial.accumulation, metadata
        )
        fused.save(target)
    typer.echo(json.dumps({"checkpoint": str(target), "sha256": sha256_of(target), **metadata}, indent=2))


def _choose_rule(
    target: Path,
    dataset: Dataset,
    data_dir: Path,
    progress: _ProgressBars,
    everyday_s: float = 3600.0,
    events_per_label: int | None = None,
) -> None:
    from models.training.decision import VALIDATION_EVENTS_PER_LABEL, choose_decision, record_validation
    from models.yamnet_head import HeadCheckpoint

    windows = record_validation(
        scored_windows(target),
        dataset,
        data_dir,
        everyday_s=everyday_s,
        events_per_label=events_per_label or VALIDATION_EVENTS_PER_LABEL,
        progress=progress,
    )
    trials = choose_decision(windows, replayer(target), progress)
    chosen = trials[0]
    head = HeadCheckpoint.load(target)
    metadata = {
        **head.metadata,
        "window_point": head.metadata.get("window_point", head.threshold),
        "decision_rules_tried": [
            {
                "point": trial.point,
                **asdict(trial.accumulation),
                "validation_events_caught": trial.caught,
                "validation_events": trial.events,
            }
            for trial in trials[:10]
        ],
    }
    replace(head, threshold=chosen.point, accumulation=chosen.accumulation, metadata=metadata).save(target)


def _print_head(target: Path, dataset: Dataset) -> None:
    from models.yamnet_head import HeadCheckpoint

    head = HeadCheckpoint.load(target)
    summary = {
        "checkpoint": str(target),
        "sha256": sha256_of(target),
        "threshold": head.threshold,
        "accumulation": asdict(head.accumulation) if head.accumulation else None,
        "dataset": str(dataset.directory),
        **head.metadata,
    }
    typer.echo(json.dumps(summary, indent=2))


@contextmanager
def _model_errors() -> Iterator[None]:
    """The expected failures of training and evaluation as one error line (cli.errors)."""
    from actors.offline import DetectionError
    from config import SettingsError
    from models.training.errors import DatasetError
    from models.yamnet import YamnetError

    try:
        yield
    except (DatasetError, ClassifierError, YamnetError, SettingsError, DetectionError, ValueError) as error:
        raise CliError(str(error), kind="model", exit_code=1) from error


@app.command("evaluate-head")
def evaluate_head_command(
    checkpoint: HeadOption = None,
    data_dir: DataDirOption = None,
    split: Annotated[str, typer.Option("--split", help="validation or test (the held-out sources).")] = "test",
    benign_hours: Annotated[
        float,
        typer.Option(
            "--benign-hours",
            min=0.0,
            help="Hours of everyday audio run through the product's chain to count false incidents (0: none).",
        ),
    ] = 15.0,
    events_per_label: EventsPerLabelOption = 20,
    beside: Annotated[
        Path | None,
        typer.Option(
            "--beside",
            help="Another checkpoint (a head, or distress-cnn) run through the same product evaluation, as a "
            "second product table: which model should a site run?",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the rows as JSON, not the table.")] = False,
) -> None:
    """YAMNet zero-shot beside the trained head on the held-out split of the dataset the head was trained on:
    clip ROC-AUC and recall at 5 % false positives, overall, with each source counting once, and by label."""
    _require_training()
    from models.training.dataset import DEFAULT_DATA_DIR, DatasetConfig, build_dataset
    from models.training.head import evaluate_head, format_rows
    from models.training.product import format_product, product_evaluation
    from models.yamnet import Yamnet
    from models.yamnet_head import HeadCheckpoint, YamnetDistressModel, default_head_path

    if split not in HELD_OUT_SPLITS:
        raise CliError(f"--split must be one of {sorted(HELD_OUT_SPLITS)}, got {split!r}")
    path = checkpoint or default_head_path()
    data_dir = data_dir or DEFAULT_DATA_DIR
    with _model_errors():
        model = YamnetDistressModel(Yamnet.load(), HeadCheckpoint.load(path))
        with _progress(Console(stderr=True)) as progress:
            bars = _ProgressBars(progress)
            recorded = model.checkpoint.metadata.get("dataset_config")
            if recorded is None:
                raise ValueError("the head checkpoint records no dataset_config: it was not made by train-head")
            dataset = build_dataset(DatasetConfig.from_dict(recorded), data_dir, bars)
            rows = evaluate_head(model, dataset, HELD_OUT_SPLITS[split], bars)
            products = {
                checkpoint_path: product_evaluation(
                    product_chain(checkpoint_path),
                    dataset,
                    HELD_OUT_SPLITS[split],
                    data_dir,
                    benign_hours=benign_hours,
                    events_per_label=events_per_label,
                    progress=bars,
                )
                for checkpoint_path in ([path] if beside is None else [path, beside])
                if benign_hours or events_per_label
            }
    if json_output:
        result: dict[str, object] = {
            "split": split,
            "dataset": str(dataset.directory),
            "rows": [asdict(row) for row in rows],
        }
        for key, (checkpoint_path, product) in zip(("product", "beside"), products.items(), strict=False):
            result[key] = {
                "checkpoint": str(checkpoint_path),
                **asdict(product),
                "false_incidents_per_hour": product.false_incidents_per_hour,
                "shortest_scream_s": product.shortest_scream_s,
            }
        typer.echo(json.dumps(result))
    else:
        typer.echo(format_rows(rows, split))
        for checkpoint_path, product in products.items():
            typer.echo(f"\n{checkpoint_path.name}\n{format_product(product, split)}")


@app.command("compare")
def compare_command(
    checkpoints: Annotated[list[Path], typer.Argument(help="Checkpoints to compare (e.g. one recipe's seeds).")],
    data_dir: DataDirOption = None,
    split: Annotated[
        str, typer.Option("--split", help="validation (choose here) or test (the card's split: report, never choose).")
    ] = "validation",
    benign_hours: Annotated[
        float,
        typer.Option(
            "--benign-hours",
            min=0.0,
            help="Hours of benign audio, one stream of its own seed an hour: 15, as one network "
            "differs from another by a few false alarms in 5 h.",
        ),
    ] = 15.0,
    events_per_label: EventsPerLabelOption = 80,
    points_of: Annotated[
        Path | None,
        typer.Option(
            "--points-of",
            help="Run every checkpoint at this checkpoint's operating points instead of "
            "its own: is a network better, or only set at other points?",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per checkpoint, a line each.")
    ] = False,
) -> None:
    """Run checkpoints through the product's chain on the same validation clips, benign hours and events."""
    _require_training()
    import torch

    from actors.offline import DetectionError
    from config import SettingsError
    from models.training.compare import Candidate, at_points_of, common_split, compare, format_comparison
    from models.training.dataset import DEFAULT_DATA_DIR, build_dataset
    from models.training.errors import DatasetError
    from models.training.evaluate import trained_dataset_config

    def candidate(index: int, path: Path, reference: DistressClassifier | None, work: Path) -> Candidate:
        classifier = DistressClassifier.load(path)
        if reference is None:
            return Candidate(path, classifier, product_chain(path))
        # The chain loads its model from a file, so it runs a copy that carries the reference's points.
        moved = at_points_of(classifier, reference)
        copy = work / f"{index}-{path.name}"
        torch.save(moved.to_payload(), copy)
        return Candidate(path, moved, product_chain(copy), points_of)

    console = Console(stderr=True)
    data_dir = data_dir or DEFAULT_DATA_DIR
    held_out = HELD_OUT_SPLITS.get(split)
    if held_out is None:
        raise CliError(f"--split must be one of {', '.join(HELD_OUT_SPLITS)}, got {split!r}", exit_code=1)
    try:
        with tempfile.TemporaryDirectory(prefix="distress-compare-") as work, _progress(console) as progress:
            reference = DistressClassifier.load(points_of) if points_of is not None else None
            candidates = [candidate(index, path, reference, Path(work)) for index, path in enumerate(checkpoints)]
            # Seeds of one recipe share a dataset: load it once, not once per checkpoint (its training split is GBs).
            configs = [trained_dataset_config(candidate.classifier) for candidate in candidates]
            loaded: dict[str, Dataset] = {
                digest: build_dataset(config, data_dir)
                for digest, config in {config.digest(): config for config in configs}.items()
            }
            datasets = [loaded[config.digest()] for config in configs]
            common_split(datasets, checkpoints, held_out)
            comparisons = compare(
                candidates, datasets[0], held_out, benign_hours, events_per_label, data_dir, _ProgressBars(progress)
            )
    except (DatasetError, ClassifierError, SettingsError, DetectionError, ValueError) as error:
        raise CliError(str(error), kind="model", exit_code=1) from error
    if json_output:
        for comparison in comparisons:
            typer.echo(json.dumps(comparison.as_json()))
    else:
        typer.echo(format_comparison(comparisons, split))


@app.command("info")
def info_command(
    checkpoint: CheckpointOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Model id, version, sha256, size, labels and operating point of a checkpoint."""
    path = checkpoint or default_checkpoint_path()
    try:
        classifier = DistressClassifier.load(path)
    except ClassifierError as error:
        raise CliError(str(error), kind="model", exit_code=1) from error
    info = {
        "model_id": classifier.model_id,
        "model_version": classifier.model_version,
        "checkpoint": str(path),
        "sha256": sha256_of(path),
        "bytes": path.stat().st_size,
        "parameters": parameter_count(classifier.network),
        "labels": list(classifier.labels),
        "threshold": classifier.threshold,
        "label_thresholds": classifier.label_thresholds,
        "calibration": vars(classifier.calibration),
        "validation": classifier.metadata.get("validation", {}),
        "dataset_digest": classifier.metadata.get("dataset_digest"),
        "second_stage": classifier.metadata.get("second_stage"),
    }
    if json_output:
        typer.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        typer.echo(f"{key:>16}: {value}")
