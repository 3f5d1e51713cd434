"""`distress features FILE [--json]`: what the model hears, one summary of the acoustic features per second.

The file is decoded with soundfile, mixed to mono and resampled to 16 kHz with soxr while streaming, then
fed to ``StreamingFeatureExtractor`` one second at a time, exactly as the feature actor sees a live stream.
Each line summarises the frames completed during that second. Exit code 2 when the file cannot be read, with
the reason in our words (cli/errors.py: one line, a JSON error object under ``--json``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
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

from cli.errors import CliError
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


def readable_audio_path(path: Path) -> Path:
    """``path`` if it is a file this process may read, else a ``CliError`` saying what it is instead."""
    if not path.exists():
        raise CliError(f"no such file: {path}", kind="not_found")
    if path.is_dir():
        raise CliError(f"{path} is a directory, not an audio file", kind="input")
    if not os.access(path, os.R_OK):
        raise CliError(f"permission denied: {path}", kind="permission")
    return path


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """libsndfile's MP3 decoder (libmpg123) writes a line to stderr for every damaged frame it skips, hundreds
    for one file; the decoding goes on, so here that noise goes to /dev/null. Only for this single-threaded
    command: it silences the whole process's stderr meanwhile."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


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
    path: Annotated[Path, typer.Argument(
        metavar="FILE", readable=False, help="Audio file (any format soundfile reads).")],  # checked in our words
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object per second.")] = False,
) -> None:
    """Print per-second summaries of the acoustic features of FILE (what the model hears)."""
    try:
        with native_stderr_silenced():
            summaries = list(per_second_summaries(readable_audio_path(path)))
    except soundfile.LibsndfileError as error:
        reason = "not a recognised audio format" if "not recognised" in error.error_string else error.error_string
        raise CliError(f"cannot read {path}: {reason.rstrip('.')}", kind="input") from error
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
