"""`images build` / `images push`: work out each image's content-addressed tag, ask the registry
whether it is there, and build and push only what is missing.

The order is chosen so an unchanged run is cheap: tags come from files on disk and base-image digests
(from the local engine, or one small registry request), and the existence check is one manifest request
per image. Nothing is pulled, built or pushed unless a tag is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mastofargate.config import Config
from mastofargate.errors import UsageError
from mastofargate.images import engine
from mastofargate.images.context import IMAGES, ImageSpec, read_source
from mastofargate.images.progress import LiveDisplay, PlainDisplay, human_bytes
from mastofargate.images.registry import Registry, check_host, connect, default_host
from mastofargate.stack.registry import repository_names
from mastofargate.stack.services import POSTGRES_IMAGE

Display = PlainDisplay | LiveDisplay
PLATFORMS = {"arm64": "linux/arm64", "x86_64": "linux/amd64"}
ALLOWED_PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm64/v8")
TARGET_WEB, TARGET_RECOMPILED = "web", "web-recompiled"


@dataclass(frozen=True)
class Request:
    """What the user asked for (flags over config)."""

    config: Config
    images_dir: Path
    registry: str | None = None
    mastodon_base: str | None = None
    streaming_base: str | None = None
    postgres_base: str | None = None
    platform: str | None = None


@dataclass(frozen=True)
class ImageResult:
    image: str
    ref: str  # HOST/REPO:TAG
    tag: str
    action: Literal["up to date", "built", "pushed"]
    built: bool = False
    bytes_pushed: int = 0
    recompiled_assets: bool = False


@dataclass
class _Plan:
    spec: ImageSpec
    ref: str
    repository: str
    bases: dict[str, engine.Base] = field(default_factory=dict)


def platform_for(config: Config, override: str | None) -> str:
    if override is None:
        return PLATFORMS[config.deployment.arch]
    if override not in ALLOWED_PLATFORMS:
        raise UsageError(f"--platform {override!r} is not supported; allowed: {', '.join(ALLOWED_PLATFORMS)}")
    return override


def postgres_major(config: Config) -> str:
    return config.rds.postgres_version.split(".")[0]


def default_bases(config: Config) -> dict[str, str]:
    version = config.deployment.mastodon_version
    return {
        "MASTODON_BASE": f"ghcr.io/mastodon/mastodon:{version}",
        "STREAMING_BASE": f"ghcr.io/mastodon/mastodon-streaming:{version}",
        # the image the Postgres task ran before it ran the backup image (stack/services.py)
        "POSTGRES_BASE": POSTGRES_IMAGE.format(major=postgres_major(config)),
    }


def _plan(
    client: Any, req: Request, host: str, registry: Registry | None, only: tuple[str, ...] = IMAGES
) -> list[_Plan]:
    platform = platform_for(req.config, req.platform)
    version = req.config.deployment.mastodon_version
    refs = default_bases(req.config)
    refs["MASTODON_BASE"] = req.mastodon_base or refs["MASTODON_BASE"]
    refs["STREAMING_BASE"] = req.streaming_base or refs["STREAMING_BASE"]
    refs["POSTGRES_BASE"] = req.postgres_base or refs["POSTGRES_BASE"]
    resolved: dict[str, engine.Base] = {}

    def base(arg: str) -> engine.Base:
        ref = refs[arg]
        if ref not in resolved:
            same_registry = registry is not None and ref.startswith(registry.host + "/")
            auth = registry.auth_config if same_registry and registry is not None else None
            resolved[ref] = engine.resolve_base(client, ref, platform, auth)
        return resolved[ref]

    plans = []
    repos = repository_names(req.config.aws.name)
    for image in only:
        source = read_source(image, req.images_dir)
        tag_prefix = version
        target: str | None = None
        if image == "backup":
            # follows the Postgres major, not Mastodon's version: e.g. pg17-0123456789ab
            arg_names, target, extra, tag_prefix = ["POSTGRES_BASE"], None, {}, f"pg{postgres_major(req.config)}"
        elif image == "mastodon":
            arg_names = ["MASTODON_BASE"] + (["STREAMING_BASE"] if source.recompile_assets else [])
            target = TARGET_RECOMPILED if source.recompile_assets else TARGET_WEB
            extra = {"RECOMPILE_ASSETS": "1" if source.recompile_assets else "0"}
        else:
            arg_names, target, extra = ["STREAMING_BASE"], None, {}
        bases = {arg: base(arg) for arg in arg_names}
        spec = ImageSpec(
            source=source,
            version=tag_prefix,
            buildargs={
                **({} if image == "backup" else {"MASTODON_VERSION": version}),
                **{a: b.build_ref for a, b in bases.items()},
                **extra,
            },
            target=target,
            base_digests={a: b.digest for a, b in bases.items()},
            platform=platform,
        )
        plans.append(_Plan(spec, f"{host}/{repos[image]}:{spec.tag}", repos[image], bases))
    return plans


def _ensure_bases(client: Any, plan: _Plan, display: Display, registry: Registry | None) -> None:
    for base in plan.bases.values():
        if base.local or engine.local_image(client, base.build_ref) is not None:
            continue
        same_registry = registry is not None and base.ref.startswith(registry.host + "/")
        auth = registry.auth_config if same_registry and registry is not None else None
        engine.pull(client, base.build_ref, plan.spec.platform, display, plan.spec.image, auth)


def _warn_platform(req: Request, display: Display) -> None:
    want = PLATFORMS[req.config.deployment.arch]
    got = platform_for(req.config, req.platform)
    if not engine.same_platform(got, want):
        display.note(
            f"warning: building {got} images, but deployment.arch = {req.config.deployment.arch!r} "
            f"runs {want} tasks; Fargate cannot start them"
        )


def build_images(req: Request, display: Display) -> list[ImageResult]:
    """Build the images whose tags are not present in the local engine (no registry calls)."""
    _warn_platform(req, display)
    client = engine.connect()
    host = check_host(req.registry) if req.registry else default_host(req.config)
    results = []
    for plan in _plan(client, req, host, None):
        spec = plan.spec
        if engine.local_image(client, plan.ref) is not None:
            display.note(f"{spec.image}: {plan.ref} up to date (already built)")
            results.append(ImageResult(spec.image, plan.ref, spec.tag, "up to date"))
            continue
        _ensure_bases(client, plan, display, None)
        engine.build(client, spec, plan.ref, display)
        display.note(f"{spec.image}: built {plan.ref}")
        results.append(ImageResult(spec.image, plan.ref, spec.tag, "built", True, 0, spec.source.recompile_assets))
    return results


def push_images(req: Request, display: Display) -> list[ImageResult]:
    """Push every image whose tag the registry lacks, building it first when the engine lacks it too."""
    _warn_platform(req, display)
    client = engine.connect()
    host = check_host(req.registry) if req.registry else default_host(req.config)
    registry = connect(host)
    results = []
    for plan in _plan(client, req, host, registry):
        spec = plan.spec
        if registry.manifest_exists(plan.repository, spec.tag):
            display.note(f"{spec.image}: {plan.ref} up to date (nothing built, nothing pushed)")
            results.append(ImageResult(spec.image, plan.ref, spec.tag, "up to date"))
            continue
        built = False
        if engine.local_image(client, plan.ref) is None:
            _ensure_bases(client, plan, display, registry)
            engine.build(client, spec, plan.ref, display)
            built = True
        display.note(f"{spec.image}: pushing {plan.ref}")
        sent = engine.push(client, plan.ref, display, spec.image, registry.auth_config)
        display.note(f"{spec.image}: pushed {plan.ref} ({human_bytes(sent)} of new layers)")
        results.append(ImageResult(spec.image, plan.ref, spec.tag, "pushed", built, sent, spec.source.recompile_assets))
    return results


def image_refs(req: Request, only: tuple[str, ...] = IMAGES) -> dict[str, str]:
    """The references `push` would use for `only` these images, without building or pushing (for `images
    assets`, which needs the web image's alone: no other base is looked up)."""
    client = engine.connect()
    host = check_host(req.registry) if req.registry else default_host(req.config)
    registry = connect(host)
    return {plan.spec.image: plan.ref for plan in _plan(client, req, host, registry, only)}
