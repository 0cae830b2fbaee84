"""The `prefectstack` command line (Typer: typed options, help and completion).

One module per family of commands; importing them registers them on `app`, in
the order `prefectstack --help` lists them.
"""
# ruff: noqa: I001, F401

from .app import app
from . import config_commands
from . import stack_commands
from . import backup_commands
from . import ops_commands
from . import bench_commands
from . import images_commands

__all__ = ["app"]
