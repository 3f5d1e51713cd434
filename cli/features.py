"""`distress features FILE [--json]`: what the model hears, one summary of the acoustic features per second.

The file is decoded with soundfile, mixed to mono and resampled to 16 kHz with soxr while streaming, then
fed to ``StreamingFeatureExtractor`` one second at a time, exactly as the feature actor sees a live stream.
Each line summarises the frames completed during that second. Exit code 2 when the file cannot be read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import numpy as np
import numpy.typing as npt
import soundfile
import soxr
import typer
from rich.console import Console
from rich.table import Table

from models.features import FeatureConfig, FeatureSummary, StreamingFeatureExtractor, summarize

READ_BLOCK_SECONDS = 1.0
DEFAULT_CONFIG = FeatureConfig()
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


def mono_chunks(path: Path, sample_rate: int, chunk_samples: int) -> Iterator[npt.NDArray[np.float32]]:
    """The file as consecutive mono chunks of ``chunk_samples`` at ``sample_rate`` (the last one shorter)."""
    with soundfile.SoundFile(path) as audio:
        resampler = (
            soxr.ResampleStream(audio.samplerate, sample_rate, 1, dtype="float32")
            if audio.samplerate != sample_rate
            else None
        )
        block_frames = max(1, int(READ_BLOCK_SECONDS * audio.samplerate))
        pending = np.zeros(0, dtype=np.float32)
        while True:
            block = audio.read(block_frames, dtype="float32", always_2d=True)
            last = block.shape[0] < block_frames
            mono = block.mean(axis=1, dtype=np.float32)
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=last)
            pending = np.concatenate((pending, mono))
            while pending.size >= chunk_samples:
                yield pending[:chunk_samples]
                pending = pending[chunk_samples:]
            if last:
                break
        if pending.size:
            yield pending


def per_second_summaries(path: Path, config: FeatureConfig = DEFAULT_CONFIG) -> Iterator[FeatureSummary]:
    """One summary per second of audio in ``path``: the frames that second completes."""
    extractor = StreamingFeatureExtractor(config)
    for chunk in mono_chunks(path, config.sample_rate, config.sample_rate):
        yield summarize(extractor.push(chunk), config)


def features_command(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="Audio file (any format soundfile reads).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object per second.")] = False,
) -> None:
    """Print per-second summaries of the acoustic features of FILE (what the model hears)."""
    try:
        summaries = list(per_second_summaries(path))
    except (soundfile.LibsndfileError, OSError, ValueError) as error:
        typer.echo(f"error: cannot read {path}: {error}", err=True)
        raise typer.Exit(2) from error
    if json_output:
        for second, summary in enumerate(summaries):
            typer.echo(json.dumps({"second": second, **asdict(summary)}))
        return
    table = Table(title=f"{path.name}: features per second (dBFS mean and peak, Hz, flux in log-mel units)")
    table.add_column("s", justify="right")
    for title, _, _ in COLUMNS:
        table.add_column(title, justify="right")
    for second, summary in enumerate(summaries):
        values = asdict(summary)
        table.add_row(str(second), *(style.format(values[field]) for _, field, style in COLUMNS))
    Console().print(table)
