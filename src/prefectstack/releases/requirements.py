"""What a Prefect server environment of one release installs.

The release uv.lock pins: exactly the lock. Another verified release: that
Prefect, the locked prefect-redis and prefectstack's own direct dependencies
from pyproject.toml, resolved afresh (the lock pins Prefect's dependencies for
its own release: 3.9.0 wants apprise < 2, the lock has 2.0.1). prefectstack
itself goes on top without dependencies.

Standard library only: the image builds run it as a script before anything is
installed (`python requirements.py VERSION ROOT` prints one requirement a line).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

# Pinned by the release chosen, not by pyproject.toml's ranges.
RELEASE_PACKAGES = ("prefect", "prefect-redis")


def locked(package: str, root: Path) -> str:
    """The version uv.lock at ROOT pins for PACKAGE."""
    lock = tomllib.loads((root / "uv.lock").read_text())
    for entry in lock["package"]:
        if entry["name"] == package:
            return entry["version"]
    raise LookupError(f"uv.lock pins no {package}")


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0].lower()


def requirements(version: str, root: Path, uv: str = "uv") -> list[str]:
    if version == locked("prefect", root):
        out = subprocess.run(
            [uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return [line for line in out.splitlines() if line and not line.lstrip().startswith("#")]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    own = [d for d in project["dependencies"] if _name(d) not in RELEASE_PACKAGES]
    return [f"prefect=={version}", f"prefect-redis=={locked('prefect-redis', root)}", *own]


if __name__ == "__main__":
    version, root = sys.argv[1], Path(sys.argv[2])
    print("\n".join(requirements(version, root, uv=sys.argv[3] if len(sys.argv) > 3 else "uv")))
