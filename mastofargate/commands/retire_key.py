"""`mastofargate retire-key`: schedule the deletion of the ECS Exec key that issue 12 retired, once it is safe.

Servers deployed before issue 12 had a second KMS key for ECS Exec; `deploy` moved everything to the server's
one key and kept the old one, because the Exec transcripts written before the switch are encrypted under it
(deploy/exec_key.py). This verb schedules its deletion with KMS's longest window (30 days, cancellable), and
only after those transcripts have expired and nothing of the server uses the key; otherwise it refuses and
changes nothing.
"""

from __future__ import annotations

import typer

from mastofargate.commands.deploy import DryRun, Yes
from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption


def retire_key(config: ConfigOption = DEFAULT_CONFIG, yes: Yes = False, dry_run: DryRun = False) -> None:
    """Schedule deletion (30 days, cancellable) of the old ECS Exec KMS key, once its transcripts have expired
    and nothing uses it; refuses otherwise. 'mastofargate status' says when that is."""
    from mastofargate.config import load_config
    from mastofargate.deploy import exec_key
    from mastofargate.deploy.context import Run
    from mastofargate.deploy.preflight import require_confirmation_possible
    from mastofargate.ui import make_output, stdin_is_tty

    cfg = load_config(config)
    require_confirmation_possible(yes=yes, dry_run=dry_run, interactive=stdin_is_tty(), verb="retire-key")
    run = Run.for_config(cfg, make_output(), verb="retire-key")
    exec_key.schedule_deletion(
        run, dry_run=dry_run, confirm=lambda question: yes or typer.confirm(question, default=False)
    )


def register(app: typer.Typer) -> None:
    app.command("retire-key")(retire_key)
