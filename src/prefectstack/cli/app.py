"""The Typer application every command module registers on."""

import typer

app = typer.Typer(
    help="Run and operate the self-hosted Prefect stack.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
