"""`mastofargate backup [--wait]` (a backup now) and `mastofargate backup verify` (the restore drill now)."""

from __future__ import annotations

from typing import Annotated

import typer

from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption

Opt = typer.Option
DryRun = Annotated[bool, Opt("--dry-run", help="Say what would run; change nothing.")]
Timeout = Annotated[float, Opt("--timeout", help="Longest wait for any one step, in seconds.", min=1)]

app = typer.Typer(
    help="Take a backup of the database now; 'backup verify' restores one and checks it.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@app.callback()
def backup(
    ctx: typer.Context,
    config: ConfigOption = DEFAULT_CONFIG,
    wait: Annotated[bool, Opt("--wait", help="Wait until the backup is complete and show it.")] = False,
    label: Annotated[str, Opt("--label", help="Name part of the backup (letters, digits, . _ -).")] = "manual",
    dump: Annotated[
        bool, Opt("--dump", help="RDS: a pg_dump into the backup bucket instead of a snapshot (to copy off AWS).")
    ] = False,
    dry_run: DryRun = False,
    timeout: Timeout = 3600.0,
) -> None:
    """A backup now: an RDS snapshot, or for the Postgres task a pg_dump -Fc into the backup bucket (a
    one-off task). Without --wait it says what is running and how to follow it. Exit 0 ok, 1 failed, 2 usage,
    3 timed out."""
    if ctx.invoked_subcommand is not None:
        return
    from mastofargate.config import load_config
    from mastofargate.deploy import backup_run
    from mastofargate.deploy.backup_jobs import LABEL_CHARS
    from mastofargate.deploy.context import Run
    from mastofargate.errors import UsageError
    from mastofargate.ui import make_output

    if not label or LABEL_CHARS.search(label) or len(label) > 100:
        raise UsageError(f"--label {label!r}: use 1-100 letters, digits, '.', '_' or '-'.")
    run = Run.for_config(load_config(config), make_output(), verb="backup")
    if dry_run:
        run.out.line(f"Would take: {backup_run.describe_plan(run, label, dump=dump)}")
        run.out.line("Dry run: nothing was changed.")
        return
    with run.interruptible():
        result = backup_run.take(run, label, wait=wait, timeout=timeout, dump=dump)
    if result.done:
        run.out.line(f"Backup complete: {result.describe()}")
    elif result.kind == "rds-snapshot":
        run.out.line(
            f"Snapshot {result.id} is being created by RDS; 'mastofargate backups' lists it as available when done."
        )
    else:
        run.out.line(
            f"The dump runs as task {result.id}; follow it with 'mastofargate logs backup', and "
            "'mastofargate backups' lists it once its manifest is written."
        )


@app.command("verify")
def verify(
    config: ConfigOption = DEFAULT_CONFIG,
    source: Annotated[
        str | None,
        Opt("--from", help="Restore point to check (an ID from 'mastofargate backups'); default: the newest."),
    ] = None,
    dry_run: DryRun = False,
    timeout: Timeout = 3600.0,
) -> None:
    """The restore drill now: the newest (or the given) backup restored into a throw-away database and
    checked: Mastodon's tables, schema version against the running image, accounts and statuses counted.
    The result is published as the DrillSucceeded metric. Exit 0 verified, 1 it did not, 2 usage."""
    from mastofargate.config import load_config
    from mastofargate.deploy import drill
    from mastofargate.deploy.context import Run
    from mastofargate.ui import make_output

    run = Run.for_config(load_config(config), make_output(), verb="backup verify")
    chosen = drill.choose(run, source)
    for line in drill.describe(run, chosen):
        run.out.line(line)
    if dry_run:
        run.out.line("Dry run: nothing was changed.")
        return
    with run.interruptible():
        report = drill.run_drill(run, chosen, timeout=timeout)
    for line in report:
        run.out.line(line)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="backup")
