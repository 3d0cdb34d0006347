"""`mastofargate rollback`: back to the image tags of the previous deploy, through the same safe flow."""

from __future__ import annotations

from typing import Annotated

import typer

from mastofargate.commands.deploy import DryRun, Timeout, Yes
from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption


def rollback(
    config: ConfigOption = DEFAULT_CONFIG,
    yes: Yes = False,
    dry_run: DryRun = False,
    timeout: Timeout = 3600.0,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Start the rollout and return.")] = False,
) -> None:
    """Deploy the previous image tags again (from the deploy history). Migrations are skipped and NOT
    reverted: the previous version runs on the current database schema."""
    from mastofargate.config import load_config
    from mastofargate.deploy import flow

    cfg = load_config(config)
    opts = flow.Options(config_path=config, yes=yes, dry_run=dry_run, timeout=timeout, no_wait=no_wait, admin=False)
    flow.report(flow.rollback(cfg, opts), cfg)


def register(app: typer.Typer) -> None:
    app.command("rollback")(rollback)
