"""What every command shares: consoles, options, error reporting, loading the
configuration and the native stack."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..settings import SettingsError, StackSettings, load_settings

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

EnvFile = Annotated[
    Path,
    typer.Option(
        "--env-file",
        "-e",
        envvar="PREFECTSTACK_ENV_FILE",
        help="The stack's .env (every setting; relative paths in it are relative to its folder).",
    ),
]
DEFAULT_ENV = Path(".env")
Mode = Annotated[
    str,
    typer.Option(
        "--mode",
        envvar="PREFECTSTACK_MODE",
        help="native (this machine's processes) or compose (through docker compose).",
    ),
]


def check_mode(mode: str) -> None:
    if mode not in ("native", "compose"):
        raise fail([f"--mode {mode}: use native or compose"])


def fail(problems: list[str], code: int = 1) -> typer.Exit:
    for line in problems:
        err.print(f"[red]error:[/red] {line}", highlight=False)
    return typer.Exit(code)


def settings_from(env_file: Path) -> StackSettings:
    try:
        return load_settings(env_file)
    except SettingsError as exc:
        err.print(f"[red]invalid configuration in {exc.source}[/red]")
        raise fail(exc.problems) from None


def native(env_file: Path):
    from ..native.stack import NativeStack
    from ..native.tools import MissingTools

    settings = settings_from(env_file)

    def report(service: str, message: str) -> None:
        # Progress goes to stderr (as docker compose does), results to stdout.
        err.print(f"  [bold]{service:<18}[/bold] {message}", highlight=False)

    stack = NativeStack(settings, report)
    try:
        stack.tools  # noqa: B018 - locate binaries before anything starts
    except MissingTools as exc:
        raise fail(exc.problems) from None
    return stack


def guarded(action):
    from ..native.stack import StackError
    from ..native.supervisor import SupervisorError

    try:
        return action()
    except StackError as exc:
        raise fail(exc.problems) from None
    except SupervisorError as exc:
        raise fail([str(exc)]) from None


def compose_guard(action):
    from ..compose.operations import ComposeError

    try:
        return action()
    except ComposeError as exc:
        raise fail(getattr(exc, "problems", None) or [str(exc)]) from None


def postgres(env_file: Path, mode: str):
    """(settings, a PostgreSQL client for the mode, the native stack or None)."""
    from ..backups.pg import NativePg

    check_mode(mode)
    if mode == "compose":
        from ..compose import operations as compose_ops

        s = settings_from(env_file)
        return s, compose_guard(lambda: compose_ops.pg(s)), None
    stack = native(env_file)
    s = stack.s
    client = NativePg(
        stack.tools.pg_bindir,
        host="127.0.0.1",
        port=s.postgres_port,
        user=s.postgres_user,
        password=s.postgres_password.get_secret_value(),
    )
    return s, client, stack
