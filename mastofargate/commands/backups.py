"""`mastofargate backups`: every restore point with its time, kind, size and age (read-only)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer

from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption


def backups(
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List the restore points: the RDS point-in-time window, RDS snapshots, AWS Backup recovery points and
    the database dumps in the backup bucket, newest first."""
    from mastofargate.config import load_config
    from mastofargate.deploy import backups as restore
    from mastofargate.target import Target

    target = Target(load_config(config))
    points = restore.restore_points(target)
    now = datetime.now(UTC)
    newest = restore.newest(points)
    if as_json:
        doc = {
            "name": target.name,
            "region": target.region,
            "newest": newest.to_json(now) if newest else None,
            "restore_points": [p.to_json(now) for p in points],
        }
        typer.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    if not points:
        typer.echo(f"No restore points for {target.name} in {target.region}.")
        return
    rows = [("TIME (UTC)", "AGE", "KIND", "SIZE", "STATUS", "ID")]
    for p in points:
        when = p.time.strftime("%Y-%m-%d %H:%M")
        if p.earliest:
            when = f"{p.earliest.strftime('%Y-%m-%d %H:%M')} .. {when}"
        rows.append((when, restore.human_age(p.age(now)), p.kind, restore.human_size(p.size_bytes), p.status, p.id))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    if newest:
        typer.echo(f"Newest usable: {newest.kind} {newest.id} ({restore.human_age(newest.age(now))} old)")


def register(app: typer.Typer) -> None:
    app.command("backups")(backups)
