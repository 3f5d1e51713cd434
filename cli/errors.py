"""How every `distress` command reports an expected failure: one line, an exit code, and JSON under ``--json``.

``guarded`` wraps each command's callback (cli/main.py applies it to every subcommand it loads), so no command
needs its own try/except for infrastructure failures. A failure is reported as

- ``error: <message>`` on stderr, exactly one line (secrets redacted), and
- with ``--json``, additionally one JSON object ``{"error": "<message>", "kind": "<kind>"}`` as the last line of
  stdout, so a script reading stdout always gets JSON;

and the process exits with the failure's code: 2 for bad arguments, configuration or input the command checks
itself, 1 when something it depends on (Kafka, the database, the disk, the network) failed. ``kind`` names the
class of failure (see ``Kind``). An unexpected exception (a bug) is reported the same way with kind ``internal``;
with ``DISTRESS_DEBUG=1`` every exception but a ``CliError`` propagates instead, with its traceback. Options Typer
cannot parse (an unknown option, a missing argument) keep Typer's own usage message and exit code 2.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import typer
from typer._click import Context
from typer._click.globals import get_current_context
from typer.exceptions import Abort, Exit, TyperException

from config.redaction import redact_text

DEBUG_ENV = "DISTRESS_DEBUG"
# Not a failure: the command answered, but its input was only partly read (a cut-off or damaged recording).
EXIT_PARTLY_READ: Final = 3

Kind = Literal[
    "usage",  # the command line or the input it names is wrong
    "config",  # the settings file or a DISTRESS_* variable is invalid
    "not_found",  # a file or directory does not exist
    "input",  # a path exists but is not what the command needs (a directory, not audio, ...)
    "permission",  # the operating system refused access
    "disk_full",  # no space left where the command writes
    "address_in_use",  # a port the command must listen on is taken
    "network",  # a connection failed (refused, timed out, unreachable)
    "broker",  # Kafka is unreachable or refused an operation
    "database",  # the projection database is unreachable or refused an operation
    "rejected",  # an operator decision the incident's history does not allow
    "alerting",  # a notification channel or route cannot be used
    "source",  # an audio source cannot be opened or read
    "runtime",  # the pipeline (Ray, its stages, metrics) could not be brought up or queried
    "model",  # a checkpoint or dataset is unusable
    "os",  # another operating-system error
    "internal",  # a bug: rerun with DISTRESS_DEBUG=1 for the traceback
]


class CliError(Exception):
    """An expected failure that a command words itself; ``kind`` and ``exit_code`` default to a usage error."""

    def __init__(self, message: str, *, kind: Kind = "usage", exit_code: int = 2) -> None:
        super().__init__(message)
        self.kind: Kind = kind
        self.exit_code = exit_code


@dataclass(frozen=True)
class Failure:
    message: str
    kind: Kind
    exit_code: int


# Failures of other layers, matched by class without importing them: a module that is not loaded cannot have
# raised its error, and `distress incidents list` should not import torch to classify a database error.
_KNOWN: tuple[tuple[str, str, Kind, int], ...] = (
    ("config.settings", "SettingsError", "config", 2),
    ("actors.commands", "CommandRejected", "rejected", 2),
    ("actors.capture.blocks", "SourceError", "source", 2),
    ("actors.offline", "DetectionError", "source", 2),
    ("actors.alerting.routing", "AlertingSetupError", "alerting", 2),
    ("frontend.auth", "AuthError", "config", 2),
    ("events.kafka.connection", "BusError", "broker", 1),
    ("projections.database", "DatabaseError", "database", 1),
    ("projections.replay", "ReplayError", "database", 1),
    ("events.kafka.admin", "MetricsError", "runtime", 1),
    ("actors.runtime.driver", "RuntimeStartError", "runtime", 1),
    ("benchmarks.streams_trial", "BenchmarkError", "runtime", 1),
    ("benchmarks.features", "BenchmarkError", "runtime", 1),
    ("models.classifier", "ClassifierError", "model", 1),
    ("models.training.errors", "DatasetError", "model", 1),
)

_OS_KINDS: dict[int, tuple[Kind, str]] = {
    errno.ENOENT: ("not_found", "no such file or directory"),
    errno.EISDIR: ("input", "is a directory, not a file"),
    errno.ENOTDIR: ("input", "a part of the path is not a directory"),
    errno.EEXIST: ("input", "already exists and is not a directory"),
    errno.EACCES: ("permission", "permission denied"),
    errno.EPERM: ("permission", "operation not permitted"),
    errno.EROFS: ("permission", "read-only file system"),
    errno.ENOSPC: ("disk_full", "no space left on device"),
    errno.EDQUOT: ("disk_full", "disk quota exceeded"),
    errno.EADDRINUSE: ("address_in_use", "address already in use"),
    errno.EADDRNOTAVAIL: ("address_in_use", "address not available on this machine"),
    errno.ECONNREFUSED: ("network", "connection refused"),
    errno.ECONNRESET: ("network", "connection reset"),
    errno.ETIMEDOUT: ("network", "timed out"),
    errno.EHOSTUNREACH: ("network", "host unreachable"),
    errno.ENETUNREACH: ("network", "network unreachable"),
}


_SQLITE_KINDS: dict[str, Kind] = {
    "SQLITE_FULL": "disk_full",
    "SQLITE_READONLY": "permission",
    "SQLITE_PERM": "permission",
}


def describe_os_error(error: OSError) -> tuple[Kind, str]:
    """An operating-system error in our words, naming the path or address it concerns."""
    kind, reason = _OS_KINDS.get(error.errno or 0, ("os", ""))
    if not reason:
        reason = error.strerror or str(error) or type(error).__name__
        if isinstance(error, TimeoutError):
            kind, reason = "network", f"timed out{f': {error}' if str(error) else ''}"
    paths = [str(name) for name in (error.filename, error.filename2) if name is not None]
    return kind, f"{' -> '.join(paths)}: {reason}" if paths else reason


def _database_reason(error: BaseException) -> tuple[Kind, str]:
    """SQLAlchemy wraps the driver's error with the statement and a link; the driver's first line says why."""
    original = getattr(error, "orig", None) or error
    kind = _SQLITE_KINDS.get(getattr(original, "sqlite_errorname", ""), "database")
    lines = str(original).strip().splitlines()
    return kind, lines[0] if lines else type(original).__name__


def describe(error: BaseException) -> Failure:
    """What to tell the user about ``error``: every expected failure has a kind; anything else is ``internal``."""
    if isinstance(error, CliError):
        return Failure(str(error), error.kind, error.exit_code)
    for module, name, kind, exit_code in _KNOWN:
        known = getattr(sys.modules.get(module), name, None)
        if isinstance(known, type) and isinstance(error, known):
            return Failure(str(error) or name, kind, exit_code)
    transport = sys.modules.get("events.kafka.connection")
    reason = transport.client_reason(error) if transport is not None else None
    if reason is not None:
        return Failure(f"Kafka: {reason}", "broker", 1)
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is not None and isinstance(error, sqlalchemy_exc.SQLAlchemyError):
        kind, reason = _database_reason(error)
        return Failure(f"database: {reason}", kind, 1)
    if isinstance(error, OSError):
        kind, reason = describe_os_error(error)
        return Failure(reason, kind, 1)
    return Failure(
        f"unexpected {type(error).__name__}: {error} (a bug: rerun with {DEBUG_ENV}=1 for the traceback and report it)",
        "internal",
        1,
    )


def one_line(message: str) -> str:
    """The message on one line, secrets redacted: a multi-line cause (a log tail, a driver's hint) is joined."""
    return redact_text("; ".join(line.strip() for line in message.splitlines() if line.strip()))


def report(failure: Failure, *, json_output: bool) -> None:
    """Print ``failure`` the documented way: one ``error:`` line on stderr, and the JSON object under ``--json``."""
    message = one_line(failure.message)
    if json_output:
        typer.echo(json.dumps({"error": message, "kind": failure.kind}))
    typer.echo(f"error: {message}", err=True)


def _wants_json(context: Context) -> bool:
    return any(
        "--json" in parameter.opts and bool(context.params.get(parameter.name or ""))
        for parameter in context.command.params
    )


_Callback = TypeVar("_Callback", bound=Callable[..., Any])


def guarded(callback: _Callback) -> _Callback:
    """``callback`` with every exception but Click's own (exits, usage errors) reported by ``report``."""

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        context = get_current_context()
        try:
            return callback(*args, **kwargs)
        except (Exit, Abort, TyperException):  # usage errors and exits: Typer reports them itself
            raise
        except Exception as error:
            if os.environ.get(DEBUG_ENV, "") not in ("", "0") and not isinstance(error, CliError):
                raise
            failure = describe(error)
            report(failure, json_output=_wants_json(context))
            raise typer.Exit(failure.exit_code) from error

    return run  # type: ignore[return-value]
