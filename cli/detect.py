"""`distress detect PATH...`: the full offline chain on recordings, for triage and evaluation (no Kafka needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from actors.offline import DetectionError, Detector
from config import load_settings


def detect_command(
    paths: Annotated[list[Path], typer.Argument(help="Audio files (WAV, FLAC, OGG, MP3, M4A, ...).")],
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per input file per line.")] = False,
    no_asr: Annotated[bool, typer.Option("--no-asr", help="Acoustic evidence only (faster).")] = False,
) -> None:
    """Decide for each recording whether it holds distress, with the evidence; exit code 2 if any file failed."""
    detector = Detector(load_settings(), with_asr=not no_asr)
    table = Table("file", "distress", "score", "onset s", "reason")
    failed = False
    for path in paths:
        try:
            detection = detector.detect(path)
        except DetectionError as error:
            failed = True
            if json_output:
                typer.echo(json.dumps({"path": str(path), "error": str(error)}))
            else:
                table.add_row(str(path), "[red]error[/red]", "", "", str(error))
            continue
        if json_output:
            typer.echo(json.dumps(detection.as_json()))
        else:
            table.add_row(str(path), "[bold red]yes[/bold red]" if detection.distress else "no",
                          f"{detection.score:.2f}",
                          "" if detection.onset_s is None else f"{detection.onset_s:.1f}", detection.reason)
    if not json_output:
        Console().print(table)
    if failed:
        raise typer.Exit(2)
