"""The environment native mode runs one Prefect release's server processes from.

Each release gets a virtual environment of its own under .tools/prefect/,
beside the checkout's .venv (which runs the CLI): `scripts/install_native.sh`
re-syncing .venv never changes the code of running servers, and `upgrade`
builds the next release's environment while the current one serves.
prefectstack is installed editable into it, for its Prefect plugin (an entry
point needs an installed distribution); the servers read it when they start.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from ..paths import REPO_ROOT
from .requirements import requirements

ROOT = REPO_ROOT / ".tools" / "prefect"
MARKER = "prefectstack-runtime.json"


class RuntimeEnvError(Exception):
    pass


def path(version: str) -> Path:
    return ROOT / version


def bin_dir(version: str) -> Path:
    return path(version) / "bin"


def ready(version: str) -> bool:
    marker = path(version) / MARKER
    try:
        return json.loads(marker.read_text())["version"] == version
    except (OSError, ValueError, KeyError):
        return False


def _uv() -> str:
    for candidate in (REPO_ROOT / ".tools" / "uv" / "bin" / "uv", shutil.which("uv")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise RuntimeEnvError("uv is not installed: run scripts/install_native.sh")


@contextmanager
def _locked():
    """One install at a time (several stacks may share the checkout)."""
    ROOT.mkdir(parents=True, exist_ok=True)
    with open(ROOT / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(argv: list[str], what: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-1500:]
        raise RuntimeEnvError(f"{what} failed:\n{tail}")
    return result.stdout


def ensure(version: str, say: Callable[[str], None]) -> Path:
    """The release's environment, installed first when it is not there yet."""
    if ready(version):
        return path(version)
    with _locked():
        if ready(version):
            return path(version)
        target = path(version)
        shutil.rmtree(target, ignore_errors=True)  # an install that did not finish
        uv = _uv()
        say(f"installing Prefect {version} into {target}")
        python = shutil.which("python3") or "python3"
        _run([uv, "venv", "--quiet", "--python", python, str(target)], "creating the environment")
        pip = [uv, "pip", "install", "--quiet", "--python", str(target / "bin" / "python")]
        wanted = target / "requirements.in"
        wanted.write_text("\n".join(requirements(version, REPO_ROOT, uv=uv)) + "\n")
        _run([*pip, "-r", str(wanted)], f"installing Prefect {version}")
        _run([*pip, "--no-deps", "-e", str(REPO_ROOT)], "installing prefectstack's plugin")
        probe = (
            "import prefect, prefect_redis, prefectstack.prefect_plugin as p; "
            "print(prefect.__version__)"
        )
        got = _run([str(target / "bin" / "python"), "-c", probe], "checking it").strip()
        if got != version:
            raise RuntimeEnvError(f"the environment for Prefect {version} holds Prefect {got}")
        frozen = _run([uv, "pip", "freeze", "--python", str(target / "bin" / "python")], "freeze")
        (target / "requirements.lock").write_text(frozen)
        (target / MARKER).write_text(json.dumps({"version": version}))
        return target


def migrations_dir(version: str) -> Path:
    """Prefect's PostgreSQL migrations as the release ships them."""
    found = sorted(path(version).glob("lib/python3*/site-packages/prefect/server/database"))
    if not found:
        raise RuntimeEnvError(f"Prefect {version} is not installed in {path(version)}")
    return found[0] / "_migrations" / "versions" / "postgresql"
