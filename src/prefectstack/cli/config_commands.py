"""Configuration: init, check, client-config, tls, generate."""

from __future__ import annotations

from typing import Annotated

import typer

from .app import app
from .common import DEFAULT_ENV, EnvFile, console, err, fail, settings_from


@app.command()
def init(
    env_file: EnvFile = DEFAULT_ENV,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing file, keeping a timestamped copy.")
    ] = False,
) -> None:
    """Create .env from .env.example with a strong random value for every secret."""
    from ..init_env import InitError, create_env
    from ..paths import REPO_ROOT

    try:
        result = create_env(REPO_ROOT / ".env.example", env_file, force=force)
    except InitError as exc:
        raise fail([str(exc)]) from None
    if result.backup:
        console.print(f"kept the previous file as {result.backup}")
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(
        f"wrote {result.path} (mode 600) with generated secrets: {', '.join(result.generated)}.\n"
        f"Your credentials are in that file; the Prefect UI login is "
        f"PREFECT_SERVER_API_AUTH_STRING (user:password)."
    )


@app.command()
def check(env_file: EnvFile = DEFAULT_ENV) -> None:
    """Validate a configuration without starting anything; exit 1 on any error."""
    from ..checks import check_env_file, has_errors

    findings = check_env_file(env_file)
    colours = {"error": "red", "warning": "yellow", "info": "cyan"}
    for finding in findings:
        colour = colours[finding.level]
        console.print(
            f"[{colour}]{finding.level}[/{colour}]: {finding.key}: {finding.message}",
            highlight=False,
        )
    if has_errors(findings):
        errors = sum(f.level == "error" for f in findings)
        console.print(f"[red]{errors} error(s)[/red] in {env_file}")
        raise typer.Exit(1)
    console.print(f"[green]{env_file} is valid[/green]")


@app.command("client-config")
def client_config(
    env_file: EnvFile = DEFAULT_ENV,
    fmt: Annotated[
        str, typer.Option("--format", help="env (shell exports) or toml (prefect.toml).")
    ] = "env",
    profile: Annotated[
        str | None, typer.Option(help="Write a Prefect profile of this name instead.")
    ] = None,
    activate: Annotated[bool, typer.Option(help="Make the written profile the active one.")] = True,
    url: Annotated[
        str | None, typer.Option(help="API URL clients use (default: PREFECT_UI_API_URL).")
    ] = None,
) -> None:
    """Settings for a client machine: API URL of the load balancer and the auth string."""
    from ..client_config import as_env, as_toml, client_values, write_profile

    values = client_values(settings_from(env_file), url)
    if profile:
        write_profile(profile, values, activate=activate)
        state = " and made it active" if activate else ""
        err.print(f"wrote Prefect profile '{profile}'{state}")
    elif fmt == "env":
        print(as_env(values), end="")
    elif fmt == "toml":
        print(as_toml(values), end="")
    else:
        raise fail([f"--format {fmt}: use env or toml"])


@app.command(hidden=True)
def generate() -> None:
    """Rewrite the compose deployment's rendered configs (deploy/nginx/compose.conf, ...)."""
    from ..generated import write_all

    for path in write_all():
        console.print(f"wrote {path}")


@app.command()
def tls(env_file: EnvFile = DEFAULT_ENV) -> None:
    """Make (or renew) the self-signed certificate of TLS_SELF_SIGNED=true, or check
    TLS_CERT_FILE/TLS_KEY_FILE; print the CA clients must trust. Native `up` does this
    itself; compose needs it before `docker compose up` (docker-compose.tls.yml)."""
    from ..loadbalancer import tls as lb_tls

    s = settings_from(env_file)
    if not s.tls:
        raise fail(["TLS is off: set TLS_SELF_SIGNED=true, or TLS_CERT_FILE and TLS_KEY_FILE"])
    if s.tls_self_signed:
        found = lb_tls.ensure_self_signed(s)
    else:
        errors = [f"{key}: {msg}" for level, key, msg in lb_tls.problems(s) if level == "error"]
        if errors:
            raise fail(errors)
        found = lb_tls.files(s)
    console.print(f"certificate: {found.cert}\nkey: {found.key}")
    if found.ca is not None:
        console.print(f"clients trust: {found.ca} (client-config sets PREFECT_API_SSL_CERT_FILE)")
