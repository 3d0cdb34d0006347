"""Taking a backup now (`mastofargate backup`, deploy's pre-upgrade backup, restore's backup of the current
database), and reading what the running image expects of a database.

  rds   a manual RDS snapshot of the current instance (create_db_snapshot); waiting uses botocore's
        `db_snapshot_available` waiter, which polls DescribeDBSnapshots until the snapshot is `available`
        and fails fast when it turns `failed`/`deleted`
  task  `pg_dump -Fc` of the Postgres task's database (or, asked for, of RDS) into the backup bucket, run
        by pgtask.py in the `{name}-backup` one-off task (backup_jobs.dump_command); its JSON result
        (location, size, counts, schema version) is the task's last log line

A dump can be started without waiting: the task runs on by itself and `mastofargate logs backup` follows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mastofargate import aws, names
from mastofargate.deploy import backup_jobs, ecs, jobs
from mastofargate.deploy.context import Run
from mastofargate.errors import EXIT_FAILED, EXIT_TIMEOUT, MastofargateError

BACKUP_JOB = "backup"  # the one-off family is f"{name}-backup" (the backup task definition, see common contract)
# Mastodon's db/schema.rb starts `ActiveRecord::Schema[8.1].define(version: 2026_08_05_130216) do`: the newest
# migration of the image, post-deployment ones included (schema.rb is dumped after every migration ran).
IMAGE_SCHEMA_SCRIPT = r"sed -n 's/^ActiveRecord::Schema.*define(version: \([0-9_]*\)).*/\1/p' db/schema.rb | tr -d _"
SCHEMA_LINE = re.compile(r"^\d{14}$")


@dataclass
class Backup:
    """What a backup produced: an RDS snapshot id or the dump's s3:// location, and what we know of it."""

    kind: str  # "rds-snapshot" | "dump"
    id: str
    done: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        if self.kind == "dump" and self.done:
            size = self.detail.get("size")
            counts = self.detail.get("counts") or {}
            rows = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            return f"dump {self.id} ({size} bytes; schema {self.detail.get('schema_version', '?')}; {rows})"
        return f"{'RDS snapshot' if self.kind == 'rds-snapshot' else 'dump'} {self.id}"


def backup_bucket(run: Run) -> str:
    bucket = run.target.stack_outputs(run.target.data_stack).get("BackupBucketName")
    if not bucket:
        raise MastofargateError(
            f"Stack {run.target.data_stack} has no backup bucket (output BackupBucketName).",
            why="the data stack predates backups, or is not deployed",
            fix="run 'mastofargate deploy' first",
        )
    return bucket


def describe_plan(run: Run, label: str, *, dump: bool = False) -> str:
    """One line: what `take` would do (for --dry-run and restore's plan)."""
    target = run.target
    if target.config.deployment.database == "rds" and not dump:
        return f"RDS snapshot of {names.db_instance(target.name)} named {backup_jobs.snapshot_id(target.name, label)}"
    bucket = target.stack_outputs(target.data_stack).get("BackupBucketName", "(backup bucket)")
    where = "RDS" if target.config.deployment.database == "rds" else "the Postgres task's database"
    return f"pg_dump -Fc of {where} into s3://{bucket}/dumps/, label {label}"


def take(run: Run, label: str, *, wait: bool, timeout: float, dump: bool = False) -> Backup:
    """A backup of the current database now; with wait=True it is complete (or this raised) on return.
    dump=True: a logical dump also on RDS (the backup task's PG* variables name the RDS instance), the
    portable kind a copy off AWS needs."""
    if run.target.config.deployment.database == "rds" and not dump:
        return _snapshot(run, label, wait=wait, timeout=timeout)
    return _dump(run, label, wait=wait, timeout=timeout)


def _snapshot(run: Run, label: str, *, wait: bool, timeout: float) -> Backup:
    target = run.target
    instance = names.db_instance(target.name)
    snapshot = backup_jobs.snapshot_id(target.name, label)
    run.out.step(f"RDS snapshot {snapshot} of {instance}")
    rds = target.client("rds")
    with aws.aws_errors(f"creating snapshot {snapshot} of {instance}"):
        rds.create_db_snapshot(
            DBInstanceIdentifier=instance,
            DBSnapshotIdentifier=snapshot,
            Tags=[{"Key": "mastofargate:label", "Value": label[:256]}],
        )
    if wait:
        wait_snapshot(run, snapshot, timeout=timeout)
        run.out.line(f"  snapshot {snapshot} is available")
    return Backup("rds-snapshot", snapshot, wait, {"label": label, "instance": instance})


def wait_snapshot(run: Run, snapshot: str, *, timeout: float) -> None:
    """botocore's db_snapshot_available waiter, polling at the run's interval, bounded by `timeout`."""
    from botocore.exceptions import WaiterError

    delay = max(1, int(run.poller.interval))
    attempts = max(1, int(timeout // delay))
    waiter = run.target.client("rds").get_waiter("db_snapshot_available")
    with run.pending(f"RDS is creating snapshot {snapshot}; it carries on without mastofargate"):
        try:
            with aws.aws_errors(f"waiting for snapshot {snapshot}"):
                waiter.wait(DBSnapshotIdentifier=snapshot, WaiterConfig={"Delay": delay, "MaxAttempts": attempts})
        except WaiterError as e:
            timed_out = "Max attempts exceeded" in str(e)
            raise MastofargateError(
                f"RDS snapshot {snapshot} did not become available"
                + (f" within {timeout:.0f} s." if timed_out else "."),
                why=str(e),
                fix="see it with 'mastofargate backups'; a snapshot still creating finishes by itself",
                exit_code=EXIT_TIMEOUT if timed_out else EXIT_FAILED,
            ) from None


def _dump(run: Run, label: str, *, wait: bool, timeout: float) -> Backup:
    target = run.target
    bucket = backup_bucket(run)
    command = backup_jobs.dump_command(bucket, label)
    if not wait:
        run.out.step(f"Starting {BACKUP_JOB} (pg_dump -Fc into s3://{bucket}/dumps/, label {label})")
        task = ecs.start_one_off(target, f"{target.name}-{BACKUP_JOB}", command)
        return Backup("dump", ecs.task_id(task), False, {"label": label, "task": task})
    result = jobs.run_job(run, BACKUP_JOB, command, timeout=timeout, describe=f"pg_dump -Fc, label {label}")
    answer = _answer(result, "backup (pg_dump)")
    return Backup("dump", str(answer.get("location", "")), True, answer)


def _answer(result: ecs.TaskResult, what: str) -> dict[str, Any]:
    """pgtask.py's JSON result; a task that failed without one is explained from its stopped reason."""
    try:
        return backup_jobs.task_result(result.log_tail, what=what)
    except MastofargateError as e:
        if result.ok:
            raise
        raise jobs.task_failure(BACKUP_JOB, result, e.what, "read 'mastofargate logs backup'") from None


def backup_task_exists(run: Run) -> bool:
    """Whether the `{name}-backup` task definition is registered (the app stack brings it; an app stack
    deployed by an older mastofargate has none until its next update)."""
    try:
        ecs.latest_task_definition(run.target, f"{run.target.name}-{BACKUP_JOB}")
    except MastofargateError:
        return False
    return True


def run_pgtask(
    run: Run, command: list[str], *, what: str, timeout: float, environment: dict[str, str] | None = None
) -> dict[str, Any]:
    """One pgtask.py command in the backup task, followed to its end; its JSON result (raises on failure)."""
    result = jobs.run_job(run, BACKUP_JOB, command, timeout=timeout, describe=what, environment=environment)
    return _answer(result, what)


def image_schema(run: Run, *, timeout: float) -> str:
    """The schema version the running Mastodon image expects (its db/schema.rb), read by a one-off task of
    the `migrate` family, whose task definition runs the deployed image."""
    command = ["sh", "-c", IMAGE_SCHEMA_SCRIPT]
    result = jobs.run_job(
        run, "migrate", command, timeout=timeout, describe="read the running image's schema version (db/schema.rb)"
    )
    found = [line.strip() for line in result.log_tail if SCHEMA_LINE.match(line.strip())]
    if not result.ok or not found:
        raise jobs.task_failure(
            "migrate",
            result,
            "Could not read the running image's schema version from db/schema.rb.",
            "check that the app stack is deployed ('mastofargate status'), then try again",
        )
    return found[-1]
