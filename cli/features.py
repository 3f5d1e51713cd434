"""`distress features FILE [--json]`: what the model hears, one summary of the acoustic features per second.

The file is decoded, mixed to mono and resampled to 16 kHz as capture does it (``FileSource``, ``Normaliser``),
then fed to ``StreamingFeatureExtractor`` one second at a time, exactly as the feature actor sees a live stream.
Each line summarises the frames completed during that second. Exit code 2 when the file cannot be read, with
the reason in our words (cli/errors.py: one line, a JSON error object under ``--json``); 3, as for
`distress detect`, when it was only partly read (a cut-off or damaged file: ``warning:`` lines on stderr say what
was never heard, and under ``--json`` the last line is ``{"warnings": [...], "heard_s": ..., "declared_s": ...}``
after the lines of the seconds that were heard).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import asdict
from itertools import chain
from pathlib import Path
from typing import Annotated

import numpy as np
import numpy.typing as npt
import typer
from rich.console import Console
from rich.table import Table

from actors.capture.blocks import SourceError
from actors.capture.files import NO_SUCH_FILE, PERMISSION_DENIED, FileSource
from actors.capture.normalise import Normaliser
from cli.errors import EXIT_PARTLY_READ, CliError, Kind
from models.features import FeatureConfig, FeatureSummary, StreamingFeatureExtractor, summarize

DEFAULT_CONFIG = FeatureConfig()
REASON_KINDS: dict[str, Kind] = {NO_SUCH_FILE: "not_found", PERMISSION_DENIED: "permission"}  # else "input"
COLUMNS = (
    ("dBFS", "rms_dbfs_mean", "{:.1f}"),
    ("peak", "rms_dbfs_max", "{:.1f}"),
    ("ZCR", "zcr_mean", "{:.3f}"),
    ("centroid", "centroid_hz_mean", "{:.0f}"),
    ("rolloff", "rolloff_hz_mean", "{:.0f}"),
    ("flux", "flux_mean", "{:.2f}"),
    ("flat", "flatness_mean", "{:.3f}"),
    ("f0 Hz", "pitch_hz_median", "{:.0f}"),
    ("voiced", "voiced_fraction", "{:.0%}"),
)


def mono_chunks(source: FileSource, sample_rate: int, chunk_samples: int) -> Iterator[npt.NDArray[np.float32]]:
    """The file as capture hears it (decoded by ``FileSource``, mixed to mono and resampled by ``Normaliser``), in
    consecutive chunks of ``chunk_samples`` (the last one shorter)."""
    normaliser = Normaliser(target_rate=sample_rate)
    decoded = (normaliser.push(block).samples for block in source.blocks(threading.Event()))
    pending = np.zeros(0, dtype=np.float32)
    for samples in chain(decoded, (normaliser.finish().samples,)):
        pending = np.concatenate((pending, samples))
        while pending.size >= chunk_samples:
            yield pending[:chunk_samples]
            pending = pending[chunk_samples:]
    if pending.size:
        yield pending


def per_second_summaries(
    source: FileSource, config: FeatureConfig = DEFAULT_CONFIG
) -> Iterator[tuple[FeatureSummary, float]]:
    """One summary per second of the audio of ``source`` (the frames that second completes), with the seconds of
    audio it covers: 1.0, but less for the last one."""
    extractor = StreamingFeatureExtractor(config)
    for chunk in mono_chunks(source, config.sample_rate, config.sample_rate):
        yield summarize(extractor.push(chunk), config), chunk.size / config.sample_rate


def features_command(
    path: Annotated[
        Path, typer.Argument(metavar="FILE", readable=False, help="Audio file (WAV, FLAC, OGG, MP3, M4A, ...).")
    ],  # checked in our words
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object per second.")] = False,
) -> None:
    """Print per-second summaries of the acoustic features of FILE (what the model hears)."""
    source = FileSource(path)
    try:
        heard = list(per_second_summaries(source))
    except SourceError as error:
        kind = REASON_KINDS.get(error.reason, "input")
        raise CliError(f"cannot read {path}: {error.reason}", kind=kind) from error
    summaries = [summary for summary, _ in heard]
    for warning in source.warnings:
        typer.echo(f"warning: {path}: {warning}", err=True)
    if json_output:
        for second, summary in enumerate(summaries):
            typer.echo(json.dumps({"second": second, **asdict(summary)}))
        if source.warnings:  # what was not heard, as a last line, as a failure's error object would be
            heard_s = round(sum(seconds for _, seconds in heard), 3)
            typer.echo(
                json.dumps({"warnings": source.warnings, "heard_s": heard_s, "declared_s": source.declared_seconds})
            )
            raise typer.Exit(EXIT_PARTLY_READ)
        return
    table = Table(title=f"{path.name}: features per second (dBFS mean and peak, Hz, flux in log-mel units)")
    table.add_column("s", justify="right")
    for title, _, _ in COLUMNS:
        table.add_column(title, justify="right")
    for second, summary in enumerate(summaries):
        values = asdict(summary)
        table.add_row(str(second), *(style.format(values[field]) for _, field, style in COLUMNS))
    Console().print(table)
    if source.warnings:
        raise typer.Exit(EXIT_PARTLY_READ)
