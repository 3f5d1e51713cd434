"""`distress alerts test|list|run`: try notification channels, list alert deliveries, host the alerting actor.

Channel identities are printed redacted (or by their configured name): an Apprise URL holds the secrets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import datetime
from typing import NoReturn

import typer
from sqlalchemy import select

from actors.alerting.actor import run_until_signalled
from actors.alerting.dispatcher import DeliveryResult, Dispatcher
from actors.alerting.messages import MessageRenderer
from actors.alerting.routing import (
    TAG_PREFIX,
    Channel,
    ChannelRegistry,
    Router,
    apprise_asset,
    load_apprise_config_channels,
    load_url_channel,
)
from cli.broker import reachable_bus
from cli.database import database
from cli.errors import CliError
from config import Settings, load_settings
from events.base import utc_now
from projections.queries import ALERTS

app = typer.Typer(help="Notification channels and alert history.", no_args_is_help=True)


def _fail(message: str) -> NoReturn:
    raise CliError(message)


@app.command("test")
def test_command(
    url: str | None = typer.Option(None, "--url", help="An Apprise URL to try (${ENV_VAR} is expanded)."),
    tag: str | None = typer.Option(None, "--tag", help="Try every service with this tag in alerting.apprise_configs."),
    json_output: bool = typer.Option(False, "--json", help="Print the per-channel results as JSON."),
) -> None:
    """Send a test notification and report per-channel success (every configured channel by default)."""
    if url is not None and tag is not None:
        _fail("give --url or --tag, not both")
    settings = load_settings()
    config = settings.alerting
    channels = _channels_to_test(settings, url, tag)
    if not channels:
        _fail("no channels configured: add alerting.channels or alerting.routes, or pass --url")
    router = Router(config, ChannelRegistry(channels))
    message = MessageRenderer(dashboard_url=config.dashboard_url, local=router.local).test(utc_now())
    dispatcher = Dispatcher(router.channels, asset=apprise_asset(config))
    with ThreadPoolExecutor(config.max_parallel_deliveries) as pool:
        results = list(
            pool.map(
                lambda channel: dispatcher.send_to(channel, title=message.title, body=message.body, severity="low"),
                channels,
            )
        )
    _print_results(results, json_output)
    if not all(result.ok for result in results):
        raise typer.Exit(1)


def _channels_to_test(settings: Settings, url: str | None, tag: str | None) -> Sequence[Channel]:
    config = settings.alerting
    asset = apprise_asset(config)
    if url is not None:
        return [load_url_channel(url, channel_id=None, what="--url", asset=asset)]
    if tag is not None:
        registry = ChannelRegistry(load_apprise_config_channels(config.apprise_configs, asset=asset))
        return registry.resolve(TAG_PREFIX + tag)
    return ChannelRegistry.from_config(config).all()


def _print_results(results: Sequence[DeliveryResult], json_output: bool) -> None:
    if json_output:
        typer.echo(
            json.dumps({"ok": all(result.ok for result in results), "channels": [asdict(result) for result in results]})
        )
        return
    for result in results:
        reason = f"  {result.reason}" if result.reason else ""
        typer.echo(f"{'ok' if result.ok else 'FAILED':7} {result.channel}{reason}")


@app.command("list")
def list_command(
    limit: int = typer.Option(50, min=1, help="Show at most this many alerts, most recently changed first."),
    incident: str | None = typer.Option(None, "--incident", help="Only the alerts of this incident."),
    json_output: bool = typer.Option(False, "--json", help="Print the alerts as JSON."),
) -> None:
    """Alerts with their delivery status, from the alerts projection (kept current by the projectors)."""
    query = select(ALERTS).order_by(ALERTS.c.updated_at.desc(), ALERTS.c.alert_key).limit(limit)
    if incident is not None:
        query = query.where(ALERTS.c.incident_id == incident)
    with database(load_settings()).connect() as connection:
        rows = [dict(row) for row in connection.execute(query).mappings()]
    if json_output:
        typer.echo(
            json.dumps(
                [
                    {
                        name: value.isoformat() if isinstance(value, datetime) else value
                        for name, value in row.items()
                        if name != "last_offset"
                    }
                    for row in rows
                ]
            )
        )
        return
    if not rows:
        typer.echo("no alerts")
    for row in rows:
        detail = f"  ({row['detail']})" if row["detail"] else ""
        typer.echo(
            f"{row['updated_at']:%Y-%m-%d %H:%M:%S} {row['status']:10} {row['kind'] or '':10} "
            f"{row['severity'] or '':8} {row['channel']}  {row['title'] or ''}{detail}"
        )


@app.command("run")
def run_command() -> None:
    """Run the alerting actor until interrupted (SIGINT or SIGTERM): rebuild the ledger, then notify."""
    settings = load_settings()
    reachable_bus(settings)  # a broker that is down is reported in seconds
    run_until_signalled(settings)
