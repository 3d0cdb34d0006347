"""`mastofargate secrets export|import|prune-legacy`: the server's keys kept off AWS, encrypted with a
passphrase; and the removal of the three secrets older servers had (deploy/migrate_secrets.py).

The passphrase comes from, in order: the environment variable named by --passphrase-env; a terminal
(asked twice on export, so a typo cannot lock the keys away); else one line of standard input (scripts,
CI). It is never a flag value, which would land in shell history and `ps`.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption
from mastofargate.errors import UsageError

PassphraseEnv = Annotated[
    str | None,
    typer.Option(
        "--passphrase-env",
        metavar="NAME",
        help="Read the passphrase from this environment variable (default: ask on a terminal, else read stdin).",
    ),
]

secrets_app = typer.Typer(
    name="secrets",
    help="Export the server's keys to an encrypted file, import them into a new account or region, or remove "
    "the three secrets of a server deployed before the one secret.",
    no_args_is_help=True,
)


def read_passphrase(env_name: str | None, *, confirm: bool) -> str:
    """The passphrase from the named variable, a terminal (twice when `confirm`) or one line of stdin."""
    if env_name:
        value = os.environ.get(env_name)
        if not value:
            raise UsageError(
                f"--passphrase-env {env_name}: the variable is not set or empty.",
                fix=f"export {env_name}=... first, or leave out --passphrase-env to be asked",
            )
        return value
    if sys.stdin is not None and sys.stdin.isatty():
        first = getpass.getpass("Passphrase: ")
        if confirm and getpass.getpass("Passphrase again: ") != first:
            raise UsageError("The two passphrases differ.", fix="run the command again and type the same one twice")
        return first
    line = sys.stdin.readline() if sys.stdin is not None else ""
    value = line.rstrip("\r\n")
    if not value:
        raise UsageError(
            "No passphrase: standard input is not a terminal and gave an empty line.",
            fix="pipe the passphrase on stdin, or name a variable holding it with --passphrase-env",
        )
    return value


@secrets_app.command("export")
def export(
    to: Annotated[Path, typer.Option("--to", help="File to write (mode 0600).", dir_okay=False)],
    config: ConfigOption = DEFAULT_CONFIG,
    force: Annotated[bool, typer.Option("--force", help="Replace the file if it exists.")] = False,
    passphrase_env: PassphraseEnv = None,
) -> None:
    """Write SECRET_KEY_BASE, the VAPID pair, the Active Record encryption keys and the database and Redis
    passwords to FILE, encrypted with a passphrase (scrypt + AES-256-GCM). Keep it off AWS."""
    from mastofargate.config import load_config
    from mastofargate.deploy import keys
    from mastofargate.target import Target

    target = Target(load_config(config))
    keys.check_destination(to, force=force)  # before asking for a passphrase
    passphrase = read_passphrase(passphrase_env, confirm=True)
    written = keys.export_keys(target, to, passphrase, force=force)
    for kind, names in written.items():
        typer.echo(f"{kind}: {', '.join(names)}")
    typer.echo(f"Wrote {to} (mode 0600). Keep it and the passphrase apart, both off AWS.")


@secrets_app.command("import")
def import_(
    from_: Annotated[Path, typer.Option("--from", help="File written by 'secrets export'.", dir_okay=False)],
    config: ConfigOption = DEFAULT_CONFIG,
    passphrase_env: PassphraseEnv = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be written; write nothing.")] = False,
) -> None:
    """Restore the keys from FILE into this config's account and region. Refuses, changing nothing, if a
    key already exists there with a different value."""
    from mastofargate.config import load_config
    from mastofargate.deploy import keys
    from mastofargate.target import Target

    target = Target(load_config(config))
    data = keys.read_file(from_)
    passphrase = read_passphrase(passphrase_env, confirm=False)
    loaded = keys.decrypt(data, passphrase, from_)
    keys.check_domain(loaded, target)
    plan = keys.import_keys(target, loaded.secrets, dry_run=dry_run)
    for line in plan.lines(target):
        typer.echo(line)
    if dry_run:
        typer.echo("Dry run: nothing was written.")
    elif not plan.changes:
        typer.echo("Nothing to import: the secrets already hold these keys.")
    else:
        typer.echo(f"Imported the keys of {loaded.header.get('source', {}).get('name', '?')} into {target.region}.")


@secrets_app.command("prune-legacy")
def prune_legacy(
    config: ConfigOption = DEFAULT_CONFIG,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be deleted; delete nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Schedule the three secrets of servers deployed before the one secret (mastofargate/NAME/app, /database,
    /redis) for deletion, recoverable for 30 days. Refuses, deleting nothing, unless the one secret holds every
    key they hold (generated keys with the same value) and no stack still references them."""
    from mastofargate.config import load_config
    from mastofargate.deploy import migrate_secrets
    from mastofargate.deploy.preflight import require_confirmation_possible
    from mastofargate.errors import MastofargateError
    from mastofargate.target import Target
    from mastofargate.ui import stdin_is_tty

    target = Target(load_config(config))
    require_confirmation_possible(yes=yes, dry_run=dry_run, interactive=stdin_is_tty(), verb="secrets prune-legacy")
    plan = migrate_secrets.plan_prune(target)
    if not plan.names:
        typer.echo(f"No legacy secrets: {target.secret_name} is the server's only secret. Nothing to do.")
        return
    typer.echo(f"{target.secret_name} holds every key of the legacy secrets, and no stack references them.")
    if plan.newer:
        typer.echo(f"  newer in {target.secret_name} (re-made since the migration): {', '.join(plan.newer)}")
    for name in plan.names:
        typer.echo(f"- {name}: scheduled for deletion, recoverable for {migrate_secrets.RECOVERY_DAYS} days")
    typer.echo(
        "Warning: a release of mastofargate from before the one secret, or a stack rolled back to one, reads these "
        "secrets: it will no longer start the server (and after the recovery window it would make NEW keys). Use "
        "this version or later from now on."
    )
    if dry_run:
        typer.echo("Dry run: nothing was deleted.")
        return
    if not yes and not typer.confirm("Delete them?", default=False):
        raise MastofargateError("Cancelled; nothing was deleted.")
    for name in migrate_secrets.prune(target, plan):
        undo = f"aws secretsmanager restore-secret --secret-id {name}"
        typer.echo(f"{name}: deleted in {migrate_secrets.RECOVERY_DAYS} days (undo: {undo})")


def register(app: typer.Typer) -> None:
    app.add_typer(secrets_app)
