"""What the backup verbs ask of their one-off tasks, and what they read back: pure, for the deploy layer.

The `backup`, `backup verify` and `restore` verbs (and deploy's pre-upgrade backup, and the monthly drill)
run the task script (mastofargate/data/backup/pgtask.py, at PGTASK_PATH in the backup image) as a one-off
ECS task with the backup task role; this module builds those commands and reads the task's answer, the
JSON object pgtask.py prints as its last line of output (which reaches us through the task's log stream).
Nothing here calls AWS.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mastofargate.errors import MastofargateError

# The commands themselves are built one layer down, where the stack's schedules build theirs too (a schedule
# must run exactly what the verbs run); re-exported here for the verbs.
from mastofargate.stack.backup_commands import (  # noqa: F401
    PYTHON,
    check_command,
    drill_command,
    dump_command,
    verify_command,
)
from mastofargate.stack.pgbackrest import PGTASK_PATH

if TYPE_CHECKING:
    from mastofargate.deploy.backups import RestorePoint

LABEL_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def upgrade_label(from_tag: str | None, to_tag: str) -> str:
    """The name of deploy's pre-upgrade backup, e.g. 'pre-v4.5.4-to-v4.5.5' (RDS snapshot ids allow only
    letters, digits and hyphens, so use `snapshot_id` for those)."""
    return LABEL_CHARS.sub("-", f"pre-{from_tag or 'none'}-to-{to_tag}")


def snapshot_id(name: str, label: str, now: datetime | None = None) -> str:
    """An RDS snapshot identifier: letters, digits, hyphens; starts with a letter; at most 255 characters."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    text = re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9-]", "-", f"{name}-{label}-{stamp}")).strip("-")
    return ("b-" + text if not text[:1].isalpha() else text)[:255]


def switch_command(restored: str, keep_old_as: str, database: str) -> list[str]:
    """Swap names on the connected server in one transaction: `database` becomes `keep_old_as` and
    `restored` becomes `database` (a restore's switch; the services are stopped first)."""
    return [PYTHON, PGTASK_PATH, "switch", "--restored", restored, "--keep-old-as", keep_old_as, "--database", database]


def task_result(log_lines: list[str], *, what: str) -> dict[str, Any]:
    """The JSON result pgtask.py printed last; raises when the task failed or printed none."""
    for line in reversed(log_lines):
        text = line.strip()
        if text.startswith("{") and '"ok"' in text:
            try:
                result = json.loads(text)
            except json.JSONDecodeError:
                continue
            if not result.get("ok"):
                raise MastofargateError(
                    f"The {what} failed: {result.get('error', 'no reason given')}",
                    fix="see the task's log above; nothing was switched",
                )
            return dict(result)
    raise MastofargateError(
        f"The {what} task stopped without a result.",
        why="pgtask.py prints one JSON line as it ends; none reached the log (killed, out of memory, no image?)",
        fix="see the task's stopped reason and log above",
    )


def overdue(points: list[RestorePoint], max_age: timedelta, now: datetime | None = None) -> bool:
    """True when no usable restore point is newer than `max_age` (DESIGN invariant 6). The RDS PITR window
    counts with its latest restorable time, which RDS keeps within minutes of now while backups work."""
    usable = [p for p in points if p.usable]
    if not usable:
        return True
    return (now or datetime.now(UTC)) - max(p.time for p in usable) > max_age
