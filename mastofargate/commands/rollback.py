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
    from mastofargate.commands.deploy import confirm
    from mastofargate.config import load_config
    from mastofargate.deploy import flow
    from mastofargate.deploy.context import Run
    from mastofargate.deploy.options import RollbackOptions
    from mastofargate.deploy.preflight import require_confirmation_possible
    from mastofargate.ui import make_output, stdin_is_tty

    cfg = load_config(config)
    require_confirmation_possible(yes=yes, dry_run=dry_run, interactive=stdin_is_tty(), verb="rollback")
    opts = RollbackOptions(config_path=config, yes=yes, dry_run=dry_run, timeout=timeout, no_wait=no_wait)
    run = Run.for_config(cfg, make_output(), verb="rollback")
    with run.interruptible():
        outcome = flow.rollback(run, opts, confirm)
    flow.report(run, outcome)


def register(app: typer.Typer) -> None:
    app.command("rollback")(rollback)
