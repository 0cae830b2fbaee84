"""Where the deployment assets live (the repository's deploy/ directory)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def deploy_dir() -> Path:
    """deploy/ of the checkout this package runs from (editable install), or
    the directory named by PREFECTSTACK_DEPLOY_DIR."""
    override = os.environ.get("PREFECTSTACK_DEPLOY_DIR")
    path = Path(override) if override else REPO_ROOT / "deploy"
    if not (path / "prefect" / "prefect.env").is_file():
        raise FileNotFoundError(
            f"deployment assets not found in {path}: run prefectstack from its "
            "checkout (uv sync installs it editable) or set PREFECTSTACK_DEPLOY_DIR"
        )
    return path


def asset(*parts: str) -> Path:
    return deploy_dir().joinpath(*parts)
