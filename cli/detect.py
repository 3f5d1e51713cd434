"""`distress detect PATH...`: the full offline chain on recordings, for triage and evaluation (no Kafka needed).

Exit codes: 0 when every recording was read whole and answered; 2 when any could not be analysed (missing,
unreadable, empty or shorter than 0.1 s: an ``error:`` line on stderr names the file and why, and its row or JSON
line says so too, while the other files are still analysed); otherwise 3 when any was only partly read (cut
off or undecodable part-way): its verdict covers only the ``heard_s`` seconds, and ``warnings`` say what is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Final

import typer
from rich.console import Console
from rich.table import Table

from actors.offline import Detection, DetectionError, Detector
from cli.errors import EXIT_PARTLY_READ, one_line
from config import load_settings

EXIT_FAILED: Final = 2


def detect_command(
    paths: Annotated[list[Path], typer.Argument(help="Audio files (WAV, FLAC, OGG, MP3, M4A, ...).")],
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per input file per line.")] = False,
    no_asr: Annotated[bool, typer.Option("--no-asr", help="Acoustic evidence only (faster).")] = False,
) -> None:
    """Decide for each recording whether it holds distress, with the evidence.

    Exit code 2 if any file failed, else 3 if any was only partly read (its "warnings" say what was never heard).
    """
    detector = Detector(load_settings(), with_asr=not no_asr)
    table = Table("file", "distress", "score", "onset s", "heard s", "reason")
    failed = partly_read = False
    for path in paths:
        try:
            detection = detector.detect(path)
        except DetectionError as error:
            failed = True
            typer.echo(f"error: {_naming(path, str(error))}", err=True)
            if json_output:
                typer.echo(json.dumps({"path": str(path), "error": str(error)}))
            else:
                table.add_row(str(path), "[red]error[/red]", "", "", "", str(error))
            continue
        partly_read = partly_read or not detection.complete
        if json_output:
            typer.echo(json.dumps(detection.as_json()))
            continue
        table.add_row(
            str(path),
            "[bold red]yes[/bold red]" if detection.distress else "no",
            f"{detection.score:.2f}",
            "" if detection.onset_s is None else f"{detection.onset_s:.1f}",
            _heard(detection),
            detection.reason,
        )
        for warning in detection.warnings:
            typer.echo(f"warning: {path}: {warning}", err=True)
    if not json_output:
        Console().print(table)
    if failed:
        raise typer.Exit(EXIT_FAILED)
    if partly_read:
        raise typer.Exit(EXIT_PARTLY_READ)


def _naming(path: Path, reason: str) -> str:
    """``reason`` on one line, led by the file it concerns unless it names it already."""
    message = one_line(reason)
    return message if str(path) in message else f"{path}: {message}"


def _heard(detection: Detection) -> str:
    """Seconds heard; in yellow, with what the file declares, when that was not all of it."""
    if detection.complete:
        return f"{detection.heard_s:.1f}"
    declared = "" if detection.declared_s is None else f" of {detection.declared_s:.1f}"
    return f"[yellow]{detection.heard_s:.1f}{declared} (partly read)[/yellow]"
