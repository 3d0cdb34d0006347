"""The commands the backup tasks run: argv lists for pgtask.py (mastofargate/data/backup/pgtask.py, at
PGTASK_PATH in the backup image). Pure. Built here, below both users: the stack's schedules (nightly dump,
monthly drill, stack/backup_tasks.py) and the verbs (deploy/backup_jobs.py re-exports these), so a schedule
runs exactly what `backup` and `backup verify` run.
"""

from __future__ import annotations

from mastofargate.stack.backups import DUMP_PREFIX, METRIC_NAMESPACE
from mastofargate.stack.pgbackrest import PGTASK_PATH

PYTHON = "python3"


def dump_command(bucket: str, label: str, *, server: str | None = None) -> list[str]:
    """pg_dump -Fc of $PGDATABASE into s3://bucket/dumps/, named by time and label, with its manifest; with
    `server` (the nightly schedule) it also puts BackupSucceeded 1/0 into the backup metrics."""
    command = [PYTHON, PGTASK_PATH, "dump", "--to", f"s3://{bucket}/{DUMP_PREFIX}", "--label", label]
    return command + (["--publish", METRIC_NAMESPACE, "--server", server] if server else [])


def drill_command(bucket: str, server: str) -> list[str]:
    """The restore drill (monthly schedule, `backup verify`): the newest complete dump restored into a
    throw-away cluster and checked; DrillSucceeded and BackupAgeSeconds go to the backup metrics."""
    return [
        *verify_command(f"s3://{bucket}/{DUMP_PREFIX}"),
        "--publish",
        METRIC_NAMESPACE,
        "--server",
        server,
    ]


def verify_command(
    location: str, *, expect_schema: str | None = None, scratch: bool = True, into: str | None = None
) -> list[str]:
    """Restore `location` (s3://...) into a fresh database and check it. scratch=True: a throw-away cluster
    inside the task (the drill, `backup verify`); into=NAME: a new database on the connected server that is
    kept when it verifies (a restore of the Postgres task)."""
    command = [PYTHON, PGTASK_PATH, "verify", "--from", location]
    if expect_schema:
        command += ["--expect-schema", expect_schema]
    if into:
        if scratch:
            raise ValueError("into= restores onto the connected server; it cannot be combined with scratch=True")
        command += ["--into", into]
    elif scratch:
        command.append("--scratch")
    return command


def check_command(expect_schema: str | None = None) -> list[str]:
    """The checks alone on the database the task's PG* variables name (an RDS instance restored from a
    snapshot or to a point in time: PGHOST set to the new instance's endpoint for that one task)."""
    return [PYTHON, PGTASK_PATH, "check", *(["--expect-schema", expect_schema] if expect_schema else [])]
