"""Registry-free images for compose: images build, images list."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .app import app
from .common import console, err, fail

images_app = typer.Typer(
    help="Local images for hosts that cannot pull: built from Debian, PyPI and npm packages.",
    no_args_is_help=True,
)
app.add_typer(images_app, name="images")


@images_app.command("build")
def images_build(
    only: Annotated[
        list[str] | None, typer.Argument(help="Images to build (default: all), e.g. nginx prefect")
    ] = None,
    mirror: Annotated[
        str | None,
        typer.Option(help="Debian mirror for the base image (default: this host's apt mirror)"),
    ] = None,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(help="CA bundle for PyPI and npm over TLS (default: the one pip uses)"),
    ] = None,
    rebuild_base: Annotated[
        bool, typer.Option(help="Make the Debian base again with debootstrap")
    ] = False,
    no_cache: Annotated[bool, typer.Option(help="Build every layer again")] = False,
    prefect_version: Annotated[
        str | None,
        typer.Option(
            help="Prefect release of the Prefect image (default: the one uv.lock "
            "bundles; PREFECT_VERSION in .env names the one compose runs)"
        ),
    ] = None,
) -> None:
    """Build every image docker-compose.local-images.yml names (layers are cached)."""
    from ..compose import base_image, images

    try:
        everything = images.planned(prefect_version=prefect_version)
        plan = images.select(everything, only or [])
        prefect = next(i.tag for i in everything if i.name == "prefect")
        if rebuild_base or not images.exists(images.BASE_IMAGE):
            mirror = mirror or base_image.host_mirror()
            with console.status(f"making {images.BASE_IMAGE} with debootstrap ({mirror})"):
                base_image.build_base(mirror, report=lambda line: err.print(f"  {line}"))
            console.print(f"[green]built[/green] {images.BASE_IMAGE}")
        with tempfile.TemporaryDirectory(prefix="prefectstack-ca-") as tmp:
            images.build_ca_image(ca_bundle or images.default_ca_bundle(), Path(tmp))
        needs_prefect = any(i.recipe.needs_prefect for i in plan)
        if needs_prefect and all(i.name != "prefect" for i in plan) and not images.exists(prefect):
            raise images.ImageError(f"build {prefect} first: prefectstack images build prefect")
        with Progress(
            TextColumn("{task.description:<18}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[step]}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            for image in plan:
                task = progress.add_task(image.name, total=None, step="")
                if not console.is_terminal:  # logs (CI): one line per image instead of a bar
                    console.print(f"building {image.tag}")

                def on_step(done: int, total: int, text: str, task=task) -> None:
                    progress.update(task, completed=done - 1, total=total, step=text)

                images.build(image, prefect, no_cache=no_cache, on_step=on_step)
                progress.update(task, completed=1, total=1, step=f"[green]{image.tag}[/green]")
    except images.ImageError as exc:
        raise fail(str(exc).splitlines()) from None
    console.print(
        "Use them: COMPOSE_FILE=docker-compose.yml:docker-compose.local-images.yml in .env"
    )


@images_app.command("list")
def images_list() -> None:
    """The local images, which services run them, and whether they are built."""
    from ..compose import images

    table = Table("image", "services", "built")
    for image in images.planned():
        size = images.image_size(image.tag)
        table.add_row(
            image.tag,
            ", ".join(image.services),
            f"{size / 1e6:.0f} MB" if size is not None else "[red]no[/red]",
        )
    console.print(table)
