"""The hand-off between the image pipeline and the deploy: images built for --build, tags checked, and
the new image's compiled assets exported to the media bucket before the rollout (CDN_HOST serves them, and
old and new tasks must both find their own asset names while they overlap)."""

from __future__ import annotations

from mastofargate import images
from mastofargate.deploy.context import Run
from mastofargate.deploy.options import DeployOptions, Tags
from mastofargate.deploy.preflight import State, check_images, settle_backup_tag
from mastofargate.errors import MastofargateError, UsageError
from mastofargate.images.context import images_dir_for
from mastofargate.images.progress import make_display
from mastofargate.target import Target


def settle_images(run: Run, state: State, opts: DeployOptions) -> Tags:
    """Tags to deploy, now that the repositories exist: built (--build) or checked in ECR."""
    if state.tags is None and opts.images.build:
        run.out.step("Building and pushing images")
        state.tags = build_and_push(run, opts)
    if state.tags is None:
        raise UsageError(
            f"The data stack {run.target.data_stack} is ready (its image repositories exist), but no image tags "
            "were given.",
            fix="push the images ('mastofargate images push'), then run 'mastofargate deploy' again with "
            "--mastodon-tag/--streaming-tag or --images-json (or use --build)",
        )
    state.tags = settle_backup_tag(run.target, state.tags)
    if not state.images_verified:
        check_images(run.target, state.tags)
        state.images_verified = True
    return state.tags


def build_and_push(run: Run, opts: DeployOptions) -> Tags:
    """Run the image pipeline (`images push`: build what is missing, push it) and take its tags."""
    request = images.Request(config=run.target.config, images_dir=images_dir_for(opts.config_path))
    with make_display(to_stderr=False) as display:
        results = images.push_images(request, display)
    tags = {r.image: r.tag for r in results}
    if not {"mastodon", "streaming", "backup"} <= set(tags):
        raise MastofargateError("The image pipeline did not return all three images (mastodon, streaming, backup).")
    return Tags(tags["mastodon"], tags["streaming"], tags["backup"])


def image_refs(target: Target, tags: Tags) -> tuple[str, str]:
    out = target.stack_outputs(target.data_stack)
    return f"{out['MastodonRepositoryUri']}:{tags.mastodon}", f"{out['StreamingRepositoryUri']}:{tags.streaming}"


def export_assets(run: Run, tags: Tags, *, skip: bool) -> None:
    """Upload the new image's compiled assets to the media bucket; skipped with a warning when no Docker
    engine is reachable (the user uploads them, or passes --skip-assets when they are there already)."""
    if skip:
        run.out.line("  asset export skipped (--skip-assets)")
        return
    if not docker_available():
        run.out.warn(
            "asset export skipped: no Docker engine is reachable; upload the image's public/ files yourself "
            "or run the deploy where Docker runs"
        )
        return
    target = run.target
    image = image_refs(target, tags)[0]
    bucket = target.stack_outputs(target.data_stack).get("MediaBucketName", "")
    run.out.step(f"Exporting assets of {image.rsplit('/', 1)[-1]} to s3://{bucket}/assets")
    result = images.export_assets(target.config, image, bucket)
    run.out.line(f"  {result.uploaded} files uploaded, {result.skipped} already there")


def docker_available() -> bool:
    """A Docker engine answers (any failure to reach one means no)."""
    try:
        import docker

        docker.from_env(timeout=5).ping()
        return True
    except Exception:
        return False
