"""`mastofargate deploy`: plan, confirm, migrate and roll out; say why when it fails (deploy/flow.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption

Opt = typer.Option

MastodonTag = Annotated[str | None, Opt("--mastodon-tag", help="Tag of the Mastodon image in ECR to deploy.")]
StreamingTag = Annotated[str | None, Opt("--streaming-tag", help="Tag of the streaming image in ECR to deploy.")]
ImagesJson = Annotated[
    Path | None, Opt("--images-json", help="Tags from 'mastofargate images push --json' output.", dir_okay=False)
]
Yes = Annotated[bool, Opt("--yes", "-y", help="Apply without asking (CI). Without it a terminal is required.")]
DryRun = Annotated[bool, Opt("--dry-run", help="Only plan: show what would change, change nothing.")]
Timeout = Annotated[float, Opt("--timeout", help="Longest wait for any one step, in seconds.", min=1)]
AllowDataReplacement = Annotated[
    bool, Opt("--allow-data-replacement", help="Allow replacing/removing a database, bucket, file system, ...")
]


def deploy(
    config: ConfigOption = DEFAULT_CONFIG,
    mastodon_tag: MastodonTag = None,
    streaming_tag: StreamingTag = None,
    build: Annotated[bool, Opt("--build", help="Build and push the images first (needs Docker).")] = False,
    images_json: ImagesJson = None,
    yes: Yes = False,
    dry_run: DryRun = False,
    allow_data_replacement: AllowDataReplacement = False,
    admin: Annotated[bool, Opt("--admin/--no-admin", help="Create the Owner account on a first install.")] = True,
    admin_username: Annotated[
        str | None, Opt("--admin-username", help="Owner's username (default: admin email's local part).")
    ] = None,
    timeout: Timeout = 3600.0,
    no_wait: Annotated[bool, Opt("--no-wait", help="Start the rollout and return without watching it.")] = False,
    skip_assets: Annotated[
        bool, Opt("--skip-assets", help="Do not upload the image's assets to the media bucket (already there).")
    ] = False,
    data_only: Annotated[
        bool, Opt("--data-only", help="Only the data stack (network, repositories, database): before the first push.")
    ] = False,
    ci_roles: Annotated[
        bool, Opt("--ci-roles", help="Only the CI roles stack (GitHub OIDC roles for the workflows 'ci init' writes).")
    ] = False,
) -> None:
    """Deploy: preflight, secrets, plan, confirm, migrations and rollout, report. Exit 0 ok, 1 failed and
    rolled back, 2 usage, 3 timed out (state unknown), 4 stack stuck."""
    import os

    from mastofargate.config import load_config
    from mastofargate.deploy import flow
    from mastofargate.deploy.bootstrap import SMTP_PASSWORD_ENV
    from mastofargate.deploy.context import Run
    from mastofargate.deploy.options import DeployOptions, ImageChoice
    from mastofargate.deploy.preflight import require_confirmation_possible
    from mastofargate.ui import make_output, stdin_is_tty

    cfg = load_config(config)
    require_confirmation_possible(yes=yes, dry_run=dry_run, interactive=stdin_is_tty())
    opts = DeployOptions(
        config_path=config,
        images=ImageChoice(
            mastodon_tag=mastodon_tag, streaming_tag=streaming_tag, images_json=images_json, build=build
        ),
        yes=yes,
        dry_run=dry_run,
        allow_data_replacement=allow_data_replacement,
        admin=admin,
        admin_username=admin_username,
        timeout=timeout,
        no_wait=no_wait,
        data_only=data_only,
        skip_assets=skip_assets,
    )
    run = Run.for_config(cfg, make_output())
    with run.interruptible():
        if ci_roles:
            flow.apply_ci_roles(run, opts, confirm)
            return
        outcome = flow.deploy(run, opts, confirm, smtp_password=os.environ.get(SMTP_PASSWORD_ENV) or None)
    flow.report(run, outcome)


def confirm(question: str) -> bool:
    """The one prompt of deploy and rollback (the deploy layer never prompts). Ctrl-C at the prompt is a no."""
    import click

    try:
        return bool(typer.confirm(question, default=False))
    except click.exceptions.Abort:
        return False


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy)
