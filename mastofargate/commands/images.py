"""`mastofargate images build | push | assets`: the pre-baked images and their assets (`make images`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption

if TYPE_CHECKING:
    from mastofargate.images import Request

Opt = typer.Option

sub = typer.Typer(
    name="images",
    help="Build and push the pre-baked Mastodon images and the backup image (content-addressed tags); upload assets.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

RegistryOption = Annotated[
    str | None,
    Opt("--registry", metavar="HOST", help="Registry host (default: the account's ECR in the config's region)."),
]
MastodonBaseOption = Annotated[
    str | None,
    Opt(
        "--mastodon-base",
        metavar="IMAGE",
        help="Base of the web image (default ghcr.io/mastodon/mastodon:<mastodon_version>).",
    ),
]
StreamingBaseOption = Annotated[
    str | None,
    Opt(
        "--streaming-base",
        metavar="IMAGE",
        help="Base of the streaming image (default ghcr.io/mastodon/mastodon-streaming:<mastodon_version>).",
    ),
]
PostgresBaseOption = Annotated[
    str | None,
    Opt(
        "--postgres-base",
        metavar="IMAGE",
        help="Base of the backup image (default public.ecr.aws/docker/library/postgres:<major>-bookworm).",
    ),
]
PlatformOption = Annotated[
    str | None,
    Opt("--platform", help="linux/arm64 or linux/amd64 (default: from deployment.arch)."),
]
JsonOption = Annotated[bool, Opt("--json", help="Print only the image references as JSON on stdout.")]


def _request(
    config: Path,
    registry: str | None,
    mastodon_base: str | None,
    streaming_base: str | None,
    platform: str | None,
    postgres_base: str | None = None,
) -> Request:
    from mastofargate.config import load_config
    from mastofargate.images import Request
    from mastofargate.images.context import images_dir_for

    return Request(
        config=load_config(config),
        images_dir=images_dir_for(config),
        registry=registry,
        mastodon_base=mastodon_base,
        streaming_base=streaming_base,
        postgres_base=postgres_base,
        platform=platform,
    )


@sub.command("build")
def build(
    config: ConfigOption = DEFAULT_CONFIG,
    registry: RegistryOption = None,
    mastodon_base: MastodonBaseOption = None,
    streaming_base: StreamingBaseOption = None,
    postgres_base: PostgresBaseOption = None,
    platform: PlatformOption = None,
    as_json: JsonOption = False,
) -> None:
    """Build the images whose tags the local engine does not have yet (nothing is pushed)."""
    from mastofargate.images import build_images
    from mastofargate.images.progress import make_display

    req = _request(config, registry, mastodon_base, streaming_base, platform, postgres_base)
    with make_display(to_stderr=as_json) as display:
        results = build_images(req, display)
    if as_json:
        typer.echo(json.dumps({r.image: r.ref for r in results}))


@sub.command("push")
def push(
    config: ConfigOption = DEFAULT_CONFIG,
    registry: RegistryOption = None,
    mastodon_base: MastodonBaseOption = None,
    streaming_base: StreamingBaseOption = None,
    postgres_base: PostgresBaseOption = None,
    platform: PlatformOption = None,
    as_json: JsonOption = False,
) -> None:
    """Push the images the registry lacks, building them first when needed; an unchanged run does nothing."""
    from mastofargate.images import push_images
    from mastofargate.images.progress import human_bytes, make_display

    req = _request(config, registry, mastodon_base, streaming_base, platform, postgres_base)
    with make_display(to_stderr=as_json) as display:
        results = push_images(req, display)
        built = sum(r.built for r in results)
        pushed = [r for r in results if r.action == "pushed"]
        sent = sum(r.bytes_pushed for r in results)
        display.note(f"images: {built} built, {len(pushed)} pushed, {human_bytes(sent)} of layers sent")
    if as_json:
        typer.echo(json.dumps({r.image: r.ref for r in results}))


@sub.command("assets")
def assets(
    config: ConfigOption = DEFAULT_CONFIG,
    bucket: Annotated[
        str | None, Opt("--bucket", help="Target bucket (default: the data stack's media bucket).")
    ] = None,
    image: Annotated[
        str | None, Opt("--image", metavar="REF", help="Web image to export from (default: what push would use).")
    ] = None,
    registry: RegistryOption = None,
    mastodon_base: MastodonBaseOption = None,
    platform: PlatformOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upload the web image's compiled assets to s3://BUCKET/assets/ (existing identical files are skipped)."""
    from mastofargate.images import default_bucket, export_assets, image_refs
    from mastofargate.ui import console, err_console, is_ci

    req = _request(config, registry, mastodon_base, None, platform)
    out = err_console() if as_json else console()
    target_bucket = bucket or default_bucket(req.config)
    ref = image or image_refs(req, only=("mastodon",))["mastodon"]
    out.print(f"assets: exporting from {ref} to s3://{target_bucket}/assets/", markup=False, highlight=False)
    if is_ci() or not out.is_terminal:
        result = export_assets(req.config, ref, target_bucket)
    else:
        from rich.progress import Progress

        with Progress(console=out, transient=True) as bar:
            task = bar.add_task("assets", total=None)
            result = export_assets(
                req.config,
                ref,
                target_bucket,
                on_progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    from mastofargate.images.progress import human_bytes

    out.print(
        f"assets: uploaded {result.uploaded} files ({human_bytes(result.bytes)}), "
        f"skipped {result.skipped} already in the bucket",
        markup=False,
        highlight=False,
    )
    if as_json:
        typer.echo(
            json.dumps(
                {"bucket": target_bucket, "uploaded": result.uploaded, "skipped": result.skipped, "bytes": result.bytes}
            )
        )


def register(app: typer.Typer) -> None:
    app.add_typer(sub, name="images")
