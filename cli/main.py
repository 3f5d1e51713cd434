"""The `distress` command: one entry point for operators and scripts (every query has `--json`)."""

from __future__ import annotations

import typer

from cli import alerts, bench, broker, capture, dashboard, detect, features, incidents, models, replay, run, streams
from config import SettingsError, load_settings
from config.logging import configure_logging

app = typer.Typer(
    name="distress",
    help="Real-time audio distress detection: capture, detect, alert, review.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(broker.app, name="broker")
app.add_typer(alerts.app, name="alerts")
app.add_typer(bench.app, name="bench")
app.add_typer(dashboard.app, name="dashboard")
app.command("capture")(capture.capture_command)
app.command("detect")(detect.detect_command)
app.command("features")(features.features_command)
app.command("run")(run.run_command)
app.command("status")(run.status_command)
app.command("demo")(run.demo_command)
app.add_typer(incidents.app, name="incidents")
app.add_typer(models.app, name="models")
app.command("streams")(streams.streams_command)
app.command("replay")(replay.replay_command)
app.command("project")(replay.project_command)


@app.callback()
def main() -> None:
    """Configure logging from the settings before any command runs."""
    try:
        settings = load_settings()
    except SettingsError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    configure_logging(settings.log_level, json_lines=settings.log_json)
