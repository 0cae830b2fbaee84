"""Registry-free images: what `prefectstack images build` builds, and how.

The tags come from docker-compose.local-images.yml (the file compose runs
them from), so a tag is written once; the Prefect image's carries the Prefect
release (`${PREFECT_VERSION}`), which is also its build argument. Each image is
built by `docker build` from a Dockerfile under deploy/ on top of a Debian base
made with debootstrap (base_image.py); the classic builder is used because it
needs no buildx plugin and no registry, and its `Step i/n` lines drive the
progress display.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..paths import REPO_ROOT
from ..releases.versions import bundled

LOCAL_COMPOSE_FILE = "docker-compose.local-images.yml"
PREFIX = "prefectstack-local/"
BASE_IMAGE = f"{PREFIX}debian:bookworm"
# Holds only the CA bundle; build stages copy it to reach PyPI and npm over
# TLS, and no final image contains it.
BUILD_CA_IMAGE = f"{PREFIX}build-ca:latest"


class ImageError(Exception):
    pass


@dataclass(frozen=True)
class Recipe:
    dockerfile: str  # relative to the repository root
    context: str
    target: str | None = None
    needs_prefect: bool = False  # starts FROM the local Prefect image


RECIPES = {
    "prefect": Recipe("deploy/images/prefect/Dockerfile", "."),
    "postgres": Recipe("deploy/images/postgres/Dockerfile", "deploy"),
    "redis": Recipe("deploy/images/redis/Dockerfile", "deploy/images/redis"),
    "nginx": Recipe("deploy/images/nginx/Dockerfile", "deploy/images/nginx"),
    "pgbackups": Recipe(
        "deploy/images/pgbackups/Dockerfile", "deploy/images/pgbackups", needs_prefect=True
    ),
    "pgadmin": Recipe("deploy/images/pgadmin/Dockerfile", "deploy"),
    "redis-ui": Recipe("deploy/images/redis-ui/Dockerfile", "deploy"),
    "nginx-exporters": Recipe("deploy/nginx-exporters/Dockerfile", "deploy/nginx-exporters"),
    **{
        name: Recipe("deploy/images/monitoring/Dockerfile", "deploy/images/monitoring", name)
        for name in ("prometheus", "alertmanager", "postgres-exporter", "redis-exporter")
    },
}


@dataclass(frozen=True)
class Image:
    name: str  # e.g. "postgres"
    tag: str  # the full reference, e.g. "prefectstack-local/postgres:15.18"
    services: tuple[str, ...]
    recipe: Recipe


class _ComposeLoader(yaml.SafeLoader):
    """YAML loader that accepts compose's `!reset` / `!override` tags."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: None)
_ComposeLoader.add_constructor(
    "!override", lambda loader, node: loader.construct_object(node.value, deep=True)
)


def planned(root: Path = REPO_ROOT, prefect_version: str | None = None) -> list[Image]:
    """Every local image the override file names, the Prefect image first, that
    one for PREFECT_VERSION (default: the release uv.lock bundles)."""
    path = root / LOCAL_COMPOSE_FILE
    model = yaml.load(path.read_text(), Loader=_ComposeLoader)
    by_tag: dict[str, list[str]] = {}
    for service, spec in (model.get("services") or {}).items():
        ref = ((spec or {}).get("image") or "").replace(
            "${PREFECT_VERSION}", prefect_version or bundled()
        )
        if ref.startswith(PREFIX):
            by_tag.setdefault(ref, []).append(service)
    images = []
    for ref, services in by_tag.items():
        name = ref[len(PREFIX) :].split(":", 1)[0]
        if name not in RECIPES:
            raise ImageError(f"{path.name}: no recipe builds {ref} ({', '.join(services)})")
        images.append(Image(name, ref, tuple(services), RECIPES[name]))
    return sorted(images, key=lambda i: (i.name != "prefect", i.recipe.needs_prefect, i.name))


def select(images: list[Image], only: list[str]) -> list[Image]:
    if not only:
        return images
    known = {i.name for i in images}
    unknown = sorted(set(only) - known)
    if unknown:
        raise ImageError(f"unknown image {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [i for i in images if i.name in only]


def docker_env() -> dict[str, str]:
    return {**os.environ, "DOCKER_BUILDKIT": "0"}


def exists(ref: str) -> bool:
    probe = subprocess.run(["docker", "image", "inspect", ref], capture_output=True, check=False)
    return probe.returncode == 0


def image_size(ref: str) -> int | None:
    probe = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    return int(probe.stdout.strip()) if probe.returncode == 0 else None


def build_argv(image: Image, prefect_tag: str, *, no_cache: bool, root: Path) -> list[str]:
    recipe = image.recipe
    argv = [
        "docker", "build",
        "-t", image.tag,
        "-f", str(root / recipe.dockerfile),
        "--build-arg", f"BASE={BASE_IMAGE}",
        "--build-arg", f"BUILD_CA={BUILD_CA_IMAGE}",
        "--build-arg", f"PREFECT_IMAGE={prefect_tag}",
        "--build-arg", f"PREFECT_VERSION={prefect_tag.rsplit(':', 1)[1]}",
    ]  # fmt: skip
    if recipe.target:
        argv += ["--target", recipe.target]
    if no_cache:
        argv.append("--no-cache")
    return [*argv, str(root / recipe.context)]


def build(
    image: Image,
    prefect_tag: str,
    *,
    no_cache: bool = False,
    root: Path = REPO_ROOT,
    on_step: Callable[[int, int, str], None] = lambda i, n, text: None,
) -> None:
    """docker build one image; on failure raise with the end of its output."""
    tail: deque[str] = deque(maxlen=40)
    proc = subprocess.Popen(
        build_argv(image, prefect_tag, no_cache=no_cache, root=root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=docker_env(),
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        tail.append(line.rstrip())
        # "Step 3/21 : RUN apt-get ..."
        if line.startswith("Step ") and "/" in line.split(" ", 2)[1]:
            done, total = line.split(" ", 2)[1].split("/")
            on_step(int(done), int(total), line.split(":", 1)[-1].strip()[:60])
    if proc.wait() != 0:
        raise ImageError(f"building {image.tag} failed:\n" + "\n".join(tail))


def build_ca_image(ca_bundle: Path, workdir: Path) -> None:
    if not ca_bundle.is_file():
        raise ImageError(f"CA bundle {ca_bundle} does not exist (pass --ca-bundle)")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "ca.pem").write_bytes(ca_bundle.read_bytes())
    (workdir / "Dockerfile").write_text("FROM scratch\nCOPY ca.pem /ca.pem\n")
    result = subprocess.run(
        ["docker", "build", "-q", "-t", BUILD_CA_IMAGE, str(workdir)],
        capture_output=True,
        text=True,
        env=docker_env(),
        check=False,
    )
    if result.returncode != 0:
        raise ImageError(f"building {BUILD_CA_IMAGE} failed: {result.stderr.strip()[-1000:]}")


def default_ca_bundle() -> Path:
    """The bundle pip and requests are told to use, else the system's."""
    for key in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if os.environ.get(key):
            return Path(os.environ[key])
    return Path("/etc/ssl/certs/ca-certificates.crt")


def build_prefect(version: str, say: Callable[[str], None]) -> str:
    """The local Prefect image of one release (for `upgrade`); returns its tag."""
    if not exists(BASE_IMAGE):
        raise ImageError(f"{BASE_IMAGE} is missing: run `prefectstack images build` first")
    image = next(i for i in planned(prefect_version=version) if i.name == "prefect")
    with tempfile.TemporaryDirectory(prefix="prefectstack-ca-") as tmp:
        build_ca_image(default_ca_bundle(), Path(tmp))
    say(f"building {image.tag}")
    build(image, image.tag, on_step=lambda done, total, text: say(f"  step {done}/{total}: {text}"))
    return image.tag
