"""The `distress` command: one entry point for operators and scripts (every query has `--json`).

Subcommands are imported only when they are invoked: the detector pulls in torch, the runtime Ray and the
dashboard FastAPI, and a script calling `distress incidents list --json` every few seconds should not pay for them.

Every command loaded here runs through ``cli.errors.guarded``: an expected failure (bad configuration, a missing
file, Kafka or the database unreachable, a busy port, permission denied, a full disk) ends it with one ``error:``
line on stderr, a non-zero exit code and, under ``--json``, a JSON error object on stdout - never a traceback
(``DISTRESS_DEBUG=1`` shows one). A reader that closes stdout early (`distress ... --json | head -1`) is no failure:
the command stops quietly with exit code 141, as a program killed by SIGPIPE would.
"""

from __future__ import annotations

import functools
import importlib
import os
import select
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import typer
from typer._click import Command, Context  # typer vendors click: its groups take these types
from typer._click.globals import get_current_context
from typer.core import TyperGroup

from cli.errors import guarded
from config import load_settings
from config.logging import configure_logging

EXIT_BROKEN_PIPE: Final = 128 + signal.SIGPIPE


@dataclass(frozen=True)
class Subcommand:
    """Where a subcommand lives: a Typer app (a command group) or a command function in ``module``."""

    module: str
    attribute: str

    def load(self, name: str) -> Command:
        target = getattr(importlib.import_module(self.module), self.attribute)
        if isinstance(target, typer.Typer):
            command: Command = typer.main.get_group(target)  # without the completion options a top-level app gets
            command.name = name
        else:
            single = typer.Typer(add_completion=False)
            single.command(name)(target)
            command = typer.main.get_command(single)
        _guard(command)
        return command


def _guard(command: Command) -> None:
    """Configure logging before, and report failures of, ``command`` and every command under it."""
    if command.callback is not None:
        command.callback = guarded(_configured(command.callback))
    if isinstance(command, TyperGroup):
        for subcommand in command.commands.values():
            _guard(subcommand)


def _configured(callback: Callable[..., Any]) -> Callable[..., Any]:
    """Logging set up from the settings before the command runs; a group on its way to a subcommand leaves it to
    that one, whose ``--json`` decides how invalid settings are reported. Stdout closed by its reader ends the
    command quietly (``EXIT_BROKEN_PIPE``)."""

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            if get_current_context().invoked_subcommand is None:
                settings = load_settings()
                configure_logging(settings.log_level, json_lines=settings.log_json)
            return callback(*args, **kwargs)
        except BrokenPipeError:
            if not _stdout_closed():  # a socket or a child's pipe: a failure like any other
                raise
            _discard_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None

    return run


def _stdout_closed() -> bool:
    """Whether stdout is a pipe or socket whose reading end is gone (poll reports an error on it)."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a buffer (tests) or closed
        return False
    poller = select.poll()
    poller.register(descriptor, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that what is still buffered there cannot fail again when Python exits."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, sys.stdout.fileno())
    finally:
        os.close(null)


SUBCOMMANDS: dict[str, Subcommand] = {
    "run": Subcommand("cli.run", "run_command"),
    "demo": Subcommand("cli.run", "demo_command"),
    "status": Subcommand("cli.status", "status_command"),
    "detect": Subcommand("cli.detect", "detect_command"),
    "capture": Subcommand("cli.capture", "capture_command"),
    "features": Subcommand("cli.features", "features_command"),
    "incidents": Subcommand("cli.incidents", "app"),
    "streams": Subcommand("cli.streams", "streams_command"),
    "alerts": Subcommand("cli.alerts", "app"),
    "replay": Subcommand("cli.replay", "replay_command"),
    "project": Subcommand("cli.replay", "project_command"),
    "dashboard": Subcommand("cli.dashboard", "app"),
    "models": Subcommand("cli.models", "app"),
    "broker": Subcommand("cli.broker", "app"),
    "bench": Subcommand("cli.bench", "app"),
}


class LazyGroup(TyperGroup):
    """The top-level group: lists every subcommand, imports one only when it is resolved (or help lists them)."""

    def list_commands(self, ctx: Context) -> list[str]:
        return [*super().list_commands(ctx), *SUBCOMMANDS]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        subcommand = SUBCOMMANDS.get(cmd_name)
        return subcommand.load(cmd_name) if subcommand else super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="distress",
    cls=LazyGroup,
    help="Real-time audio distress detection: capture, detect, alert, review.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """Real-time audio distress detection: capture, detect, alert, review."""
