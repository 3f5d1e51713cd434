"""`distress dashboard`: serve the operator dashboard and HTTP API; make password hashes and tokens for it.

Exit codes: 0 on a clean stop; 2 for bad arguments or configuration; 1 when the address cannot be listened on.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError

from cli.errors import CliError, describe_os_error
from config import load_settings
from config.dashboard import DashboardToken, DashboardUser
from frontend.auth import ONE_TIME_OPERATOR, AuthError, hash_password, new_token, token_digest
from frontend.server import DashboardServer, issue_sign_in_link, rotate_session_key, session_key_path

app = typer.Typer(help="The operator dashboard and HTTP API.", invoke_without_command=True)


def _fail(message: str) -> NoReturn:
    raise CliError(message)


@app.callback()
def dashboard_command(
    context: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on (default: dashboard.host).")] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=0, max=65535, help="Port to listen on; 0 picks a free one (default: dashboard.port)."
        ),
    ] = None,
) -> None:
    """Serve the operator dashboard and HTTP API until Ctrl-C."""
    if context.invoked_subcommand is not None:
        return
    settings = load_settings()
    try:
        server = DashboardServer(settings, host=host, port=port)
    except OSError as error:
        address = f"{host or settings.dashboard.host}:{settings.dashboard.port if port is None else port}"
        kind, reason = describe_os_error(error)
        raise CliError(f"cannot listen on {address}: {reason}", kind=kind, exit_code=1) from error
    typer.echo(f"dashboard: {server.url}", err=True)
    if server.one_time_token:
        typer.echo(
            "no operator accounts configured (dashboard.users / dashboard.tokens); this link signs you in "
            f"as '{ONE_TIME_OPERATOR}', once, within {settings.dashboard.sign_in_link_minutes:g} minutes:"
            f"\n  {server.sign_in_url}",
            err=True,
        )
    try:
        server.serve()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it already handled by shutting down cleanly
        typer.echo("dashboard stopped", err=True)


def _checked_name(name: str) -> str:
    try:
        DashboardToken(name=name, token_sha256="0" * 64)
    except ValidationError as error:
        _fail(f"--name {name!r}: {error.errors()[0]['msg']}")
    if name == "system":
        _fail("--name 'system' is reserved for automatic decisions")
    return name


def _password() -> str:
    """The password typed twice, hidden, on a terminal; otherwise the first line of stdin, without a prompt."""
    if sys.stdin.isatty():
        return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        _fail("no password: type it at a terminal, or give it as the first line of stdin")
    return password


@app.command("hash-password")
def hash_password_command(
    name: Annotated[str, typer.Option("--name", help="The operator's name, recorded on every command they give.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print the entry as JSON.")] = False,
) -> None:
    """Ask for a password and print a dashboard.users entry holding only its salted scrypt hash.

    Without a terminal (a pipe, a script) the password is the first line read from stdin, asked for only once.
    """
    _checked_name(name)
    password = _password()
    try:
        user = DashboardUser(name=name, password_hash=hash_password(password))
    except AuthError as error:
        _fail(str(error))
    if json_output:
        typer.echo(json.dumps(user.model_dump()))
    else:
        typer.echo(f'[[dashboard.users]]\nname = "{user.name}"\npassword_hash = "{user.password_hash}"')


@app.command("new-token")
def new_token_command(
    name: Annotated[str, typer.Option("--name", help="Who (or which script) uses the token; recorded as actor.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print token and entry as JSON.")] = False,
) -> None:
    """Make a bearer token: prints it once (hand it over) and the dashboard.tokens entry (only its SHA-256)."""
    _checked_name(name)
    token = new_token()
    entry = DashboardToken(name=name, token_sha256=token_digest(token))
    if json_output:
        typer.echo(json.dumps({"token": token, "entry": entry.model_dump()}))
        return
    typer.echo(f"token (shown once): {token}", err=True)
    typer.echo(f'[[dashboard.tokens]]\nname = "{entry.name}"\ntoken_sha256 = "{entry.token_sha256}"')


@app.command("rotate-key")
def rotate_key_command() -> None:
    """Sign every browser out for good: all sessions end now, and a new key signs sessions from the next start."""
    settings = load_settings()
    ended = rotate_session_key(settings)
    typer.echo(
        f"{ended} session(s) ended; new session key in {session_key_path(settings)}: restart the dashboard "
        "so that it signs with it",
        err=True,
    )


@app.command("sign-in-link")
def sign_in_link_command(
    url: Annotated[
        str | None, typer.Option("--url", help="The dashboard's address (default: alerting.dashboard_url).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the link and its expiry as JSON.")] = False,
) -> None:
    """A new one-time sign-in link for a dashboard already running on this database (the one printed at its start
    works once and expires)."""
    settings = load_settings()
    base = url or settings.alerting.dashboard_url
    link = f"{base.rstrip('/')}/login#token={issue_sign_in_link(settings)}"
    minutes = settings.dashboard.sign_in_link_minutes
    if json_output:
        typer.echo(json.dumps({"link": link, "operator": ONE_TIME_OPERATOR, "valid_minutes": minutes}))
        return
    typer.echo(f"this link signs you in as '{ONE_TIME_OPERATOR}', once, within {minutes:g} minutes:\n  {link}")
