"""`distress streams`: every stream's status, last activity, sound level and last labels (from the projection)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from cli.database import database
from cli.incidents import print_json
from config import load_settings
from projections.queries import list_streams


def streams_command(json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Streams with status, last activity, level (dBFS) and the labels of their latest score."""
    with database(load_settings()).connect() as connection:
        streams = list_streams(connection)
    if json_output:
        print_json(streams)
        return
    table = Table("stream", "status", "last activity (UTC)", "level dBFS", "score", "last labels")
    for stream in streams:
        labels = ", ".join(f"{item['label']} {item['score']:.2f}" for item in stream["last_labels"])
        table.add_row(
            stream["stream_id"],
            stream["status"],
            (stream["last_activity_at"] or "-")[:19],
            "-" if stream["rms_dbfs"] is None else f"{stream['rms_dbfs']:.1f}",
            "-" if stream["last_score"] is None else f"{stream['last_score']:.2f}",
            labels or "-",
        )
    Console().print(table)
