"""`mastofargate destroy`: delete the services and everything that holds no data; the data only on request.

Without --delete-data the data stack (network, database, file system, media bucket, image repositories)
and the secrets stay, so a later `deploy` brings the same server back. With --delete-data, confirmed by
typing the domain: the database's deletion protection and the stack's termination protection are
switched off, the data stack is deleted (RDS and ElastiCache leave final snapshots by their deletion
policies; the media bucket, EFS, KMS key and backup vault are retained), and the secrets are scheduled
for deletion with a recovery window.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mastofargate.commands.deploy import DryRun, Timeout, Yes
from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption


def destroy(
    config: ConfigOption = DEFAULT_CONFIG,
    delete_data: Annotated[
        bool, typer.Option("--delete-data", help="Also delete the database, network and secrets (asks for the domain).")
    ] = False,
    confirm_domain: Annotated[
        str | None,
        typer.Option("--confirm-domain", help="The server's domain, to confirm --delete-data without a terminal."),
    ] = None,
    yes: Yes = False,
    dry_run: DryRun = False,
    timeout: Timeout = 3600.0,
) -> None:
    """Delete the app stack (services, load balancer, tasks, logs). Keeps the database, file system, media
    bucket and secrets unless --delete-data (confirmed by typing the domain)."""
    from mastofargate.config import load_config
    from mastofargate.deploy import stacks, teardown
    from mastofargate.deploy.context import Run
    from mastofargate.deploy.preflight import require_confirmation_possible
    from mastofargate.errors import MastofargateError
    from mastofargate.ui import make_output, stdin_is_tty

    cfg = load_config(config)
    require_confirmation_possible(yes=yes, dry_run=dry_run, interactive=stdin_is_tty(), verb="destroy")
    if delete_data and not dry_run:
        _confirm_domain(cfg.server.domain, confirm_domain)
    run = Run.for_config(cfg, make_output(), verb="destroy")
    target = run.target
    app = stacks.read_state(target, target.app_stack)
    data = stacks.read_state(target, target.data_stack)
    teardown.show_plan(run, app, data, delete_data)
    if dry_run:
        run.out.line("Dry run: nothing was changed.")
        return
    if not stacks.exists(app) and not (delete_data and data is not None):
        run.out.line("Nothing to delete.")
        return
    if not yes and not typer.confirm("Delete this?", default=False):
        raise MastofargateError("Cancelled; nothing was deleted.")
    with run.interruptible():
        if app is not None:
            teardown.delete_app(run, timeout=timeout)
        if delete_data:
            teardown.delete_data(run, data, timeout=timeout)
    if not delete_data:
        run.out.line(
            f"Kept {target.data_stack} (database, file system, media bucket, network) and the secrets; "
            "'mastofargate deploy' brings the server back."
        )


def _confirm_domain(domain: str, given: str | None) -> None:
    from mastofargate.errors import UsageError
    from mastofargate.ui import stdin_is_tty

    if given is None:
        if not stdin_is_tty():
            raise UsageError(
                "--delete-data needs the domain typed to confirm; without a terminal pass --confirm-domain DOMAIN. "
                "Nothing was deleted."
            )
        given = typer.prompt(f"This deletes the database and every post of {domain}. Type the domain to confirm")
    if given.strip().lower() != domain:
        raise UsageError(f"{given!r} is not {domain}; nothing was deleted.")


def register(app: typer.Typer) -> None:
    app.command("destroy")(destroy)
