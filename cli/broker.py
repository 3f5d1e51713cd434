"""`distress broker up|status|down`: the embedded single-node Kafka broker (``events.kafka.broker.LocalBroker``)
managed on 127.0.0.1.

When ``DISTRESS_KAFKA_BOOTSTRAP`` names another cluster, nothing is started and status reports on that cluster
instead.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import typer

from config import Settings, load_settings
from events.kafka.broker import PROBE_TIMEOUT_S, BrokerError, BrokerStatus, LocalBroker
from events.kafka.bus import Bus


def reachable_bus(settings: Settings, timeout_s: float = PROBE_TIMEOUT_S) -> Bus:
    """The event bus of ``settings`` once its cluster has answered, or a ``BrokerError`` within ``timeout_s``."""
    if not LocalBroker(settings).reachable(timeout_s=timeout_s):
        raise BrokerError(
            f"cannot reach Kafka at {settings.bootstrap_servers}; start it with `distress broker up` "
            "(or set DISTRESS_KAFKA_BOOTSTRAP)"
        )
    return settings.bus()


# ------------------------------------------------------------------------------------------------ commands

app = typer.Typer(help="Manage the embedded single-node Kafka broker.", no_args_is_help=True)


def _print_status(status: BrokerStatus, json_output: bool) -> None:
    if json_output:
        typer.echo(json.dumps(asdict(status)))
        return
    state = "up" if status.reachable else ("running, not reachable" if status.running else "down")
    where = "managed locally" if status.managed else "external cluster"
    typer.echo(f"broker {state} at {status.bootstrap_servers} ({where})")
    if status.managed and status.pid:
        typer.echo(f"  pid {status.pid}, data {status.data_dir}, log {status.log_file}")


@app.command("up")
def up_command(
    timeout: float = typer.Option(90.0, help="Seconds to wait for the broker to accept requests."),
    json_output: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """Format (first time) and start the broker in the background; does nothing if it is already up."""
    settings = load_settings()
    broker = LocalBroker(settings)
    if not settings.uses_local_broker:
        typer.echo(f"using external Kafka cluster {settings.bootstrap_servers}; no local broker started", err=True)
        _print_status(broker.status(), json_output)
        return
    _print_status(broker.up(timeout_s=timeout), json_output)


@app.command("status")
def status_command(json_output: bool = typer.Option(False, "--json", help="Print the status as JSON.")) -> None:
    """Whether the broker is running and answering; exit code 1 when it is not reachable."""
    status = LocalBroker(load_settings()).status()
    _print_status(status, json_output)
    if not status.reachable:
        raise typer.Exit(1)


@app.command("down")
def down_command(timeout: float = typer.Option(60.0, help="Seconds to wait before killing the broker.")) -> None:
    """Stop the broker; its data is kept for the next `up`."""
    stopped = LocalBroker(load_settings()).down(timeout_s=timeout)
    typer.echo("broker stopped" if stopped else "broker was not running")
