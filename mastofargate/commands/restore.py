"""`mastofargate restore`: a backup into a new database, checked, then switched to (deploy/restore.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption

Opt = typer.Option


def restore(
    config: ConfigOption = DEFAULT_CONFIG,
    source: Annotated[
        str | None,
        Opt("--from", help="Restore point: an ID from 'mastofargate backups' (RDS snapshot, dump), or 'latest'."),
    ] = None,
    to_time: Annotated[
        str | None, Opt("--to-time", help="RDS: a time in the point-in-time window (ISO 8601, UTC), or 'latest'.")
    ] = None,
    confirm_domain: Annotated[
        str | None, Opt("--confirm-domain", help="The server's domain, to confirm without a terminal.")
    ] = None,
    yes: Annotated[
        bool, Opt("--yes", "-y", help="Do not ask 'Restore?' again (the domain is still required).")
    ] = False,
    dry_run: Annotated[bool, Opt("--dry-run", help="Print the plan; change nothing.")] = False,
    timeout: Annotated[float, Opt("--timeout", help="Longest wait for any one step, in seconds.", min=1)] = 7200.0,
) -> None:
    """Restore a backup into a NEW database, check it (Mastodon's tables, schema version of the running
    image, accounts and statuses counted) and only then switch the server to it: a backup of the current
    database, services stopped, the restored database renamed into place, services started. The previous
    database is kept until you delete it. Exit 0 restored, 1 failed (the message says in which state), 2 usage
    (nothing done)."""
    from mastofargate.config import load_config
    from mastofargate.deploy import restore as core
    from mastofargate.deploy.context import Run
    from mastofargate.errors import MastofargateError
    from mastofargate.ui import make_output, stdin_is_tty

    cfg = load_config(config)
    if not dry_run:
        _confirm_domain(cfg.server.domain, confirm_domain, stdin_is_tty())
    run = Run.for_config(cfg, make_output(), verb="restore")
    chosen = core.resolve(run, source, to_time)
    plan = core.make_plan(run, chosen)
    core.show(run, plan)
    if dry_run:
        run.out.line("Dry run: nothing was changed.")
        return
    if not yes and stdin_is_tty() and not typer.confirm("Restore?", default=False):
        raise MastofargateError("Cancelled; nothing was changed.")
    with run.interruptible():
        notes = core.restore(run, plan, timeout=timeout)
    run.out.line("")
    run.out.line(f"Restored {cfg.server.domain}.")
    for note in notes:
        run.out.line(f"  {note}")


def _confirm_domain(domain: str, given: str | None, interactive: bool) -> None:
    """The domain typed on a terminal, or passed with --confirm-domain: a restore replaces every post."""
    from mastofargate.errors import UsageError

    if given is None:
        if not interactive:
            raise UsageError(
                "A restore needs the domain typed to confirm; without a terminal pass --confirm-domain DOMAIN. "
                "Nothing was changed."
            )
        given = typer.prompt(f"This replaces the database of {domain} with the backup. Type the domain to confirm")
    if given.strip().lower() != domain.lower():
        raise UsageError(f"{given!r} is not {domain}; nothing was changed.")


def register(app: typer.Typer) -> None:
    app.command("restore")(restore)
