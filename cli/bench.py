"""`distress bench NAME`: the benchmarks in ``benchmarks/``, each measured against a baseline in the same run."""

from __future__ import annotations

import importlib
import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Run a benchmark (ratios against baselines measured in the same run).", no_args_is_help=True)

BENCHMARKS = {
    "features": "Feature extraction vs librosa and torchaudio.",
    "asr": "Speech-to-text real-time factor and WER.",
    "replay": "Projection rebuild throughput into SQLite and PostgreSQL.",
    "yamnet": "YAMNet's CPU cost per patch (float and as shipped) vs the CNN, and streams per core.",
}


def _run(name: str, json_output: bool) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    result: dict[str, Any] = module.run()
    if json_output:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    table = Table(title=f"benchmark: {name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if not isinstance(value, dict | list):
            table.add_row(key, f"{value:.3g}" if isinstance(value, float) else str(value))
    Console().print(table)


def _register(name: str, help_text: str) -> None:
    def command(json_output: bool = typer.Option(False, "--json", help="Print the full result as JSON.")) -> None:
        _run(name, json_output)

    command.__doc__ = help_text
    app.command(name)(command)


for _name, _help in BENCHMARKS.items():
    _register(_name, _help)


@app.command("streams")
def streams_command(
    json_output: bool = typer.Option(False, "--json", help="Print the full result (every trial) as JSON."),
    max_streams: int | None = typer.Option(
        None, "--max-streams", min=1, help="Largest number of streams to try (default 256)."
    ),
    quick: bool = typer.Option(False, "--quick", help="Shorter audio and no bisection (a rough answer sooner)."),
) -> None:
    """Concurrent real-time streams the pipeline sustains (acoustic, then with ASR); needs the broker up."""
    from benchmarks.streams import render, run  # here: it loads Ray and the whole pipeline

    result = run(max_streams=max_streams, quick=quick)  # its failures are reported by cli.errors (exit code 1)
    typer.echo(json.dumps(result, indent=2) if json_output else render(result))


@app.command("whisper-tags")
def whisper_tags_command(
    split: str = typer.Option("validation", "--split", help="validation (to decide) or test (to report)."),
    clips_per_label: int = typer.Option(40, "--clips-per-label", min=2, help="Clips of each label (seed 0)."),
    json_output: bool = typer.Option(False, "--json", help="Print the full result as JSON."),
) -> None:
    """Whisper's non-speech tags ("(screaming)") as a zero-shot distress signal beside the distress-yamnet head,
    on dataset 4's clips: does "head or tag" beat the head alone at as many benign clips flagged?"""
    from benchmarks.whisper_tags import render, run
    from cli.errors import CliError
    from cli.models import HELD_OUT_SPLITS

    if split not in HELD_OUT_SPLITS:
        raise CliError(f"--split must be one of {sorted(HELD_OUT_SPLITS)}, got {split!r}")
    result = run(HELD_OUT_SPLITS[split], clips_per_label)
    typer.echo(json.dumps(result, indent=2) if json_output else render(result))
