"""`mastofargate backup verify`: the restore drill on demand (the monthly schedule runs the same check).

  dump           pgtask.py verify --scratch in the backup task: the dump restored into a throw-away cluster
                 inside the task and checked; pgtask.py publishes DrillSucceeded / BackupAgeSeconds itself
  RDS snapshot   restored into a throw-away instance `{name}-postgres-drill-STAMP` (the live one's placement),
  or PITR        checked by `pgtask.py check` in the backup task with PGHOST pointed at it for that one task,
                 and deleted afterwards — always: on success, on failure and on Ctrl-C (a deletion that fails
                 is said, with the command to finish it); DrillSucceeded / BackupAgeSeconds are published here

The schema version is shown against the running image's (db/schema.rb); a backup older than the image is
reported, not failed: it restores, and `deploy` would migrate it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mastofargate import aws, names
from mastofargate.deploy import backup_jobs, backup_run, restore
from mastofargate.deploy.backups import restore_points
from mastofargate.deploy.context import Run
from mastofargate.deploy.restore import Source
from mastofargate.errors import EXIT_FAILED, Interrupted, MastofargateError, UsageError
from mastofargate.stack.backups import METRIC_NAMESPACE


def choose(run: Run, point: str | None) -> Source:
    """The given restore point, else the newest: an RDS snapshot (else the PITR window's latest time) on
    RDS, a dump for the Postgres task."""
    if point:
        return restore.resolve(run, point, None)
    target = run.target
    points = [p for p in restore_points(target) if p.usable]
    if target.config.deployment.database == "rds":
        snapshots = [p for p in points if p.kind == "rds-snapshot"]
        if snapshots:
            return Source("rds-snapshot", max(snapshots, key=lambda p: p.time).id)
        window = next((p for p in points if p.kind == "rds-pitr"), None)
        if window:
            return Source("rds-pitr", window.id, None)
    dumps = [p for p in points if p.kind == "dump"]
    if dumps:
        return Source("dump", max(dumps, key=lambda p: p.time).id)
    raise UsageError(
        f"There is no backup of {target.name} to verify.", fix="take one with 'mastofargate backup --wait'"
    )


def throwaway_name(run: Run, stamp: str) -> str:
    return restore._identifier(f"{names.db_instance(run.target.name)}-drill-{stamp}")


def describe(run: Run, source: Source) -> list[str]:
    if source.kind == "dump":
        return [
            f"Drill: {source.describe()} restored into a throw-away Postgres inside a {run.target.name}-backup task "
            "and checked (tables, schema, counts); the result is published as DrillSucceeded"
        ]
    return [
        f"Drill: {source.describe()} restored into a throw-away RDS instance ({throwaway_name(run, 'STAMP')}), "
        "checked by a backup task, then deleted; the result is published as DrillSucceeded"
    ]


def run_drill(run: Run, source: Source, *, timeout: float) -> list[str]:
    """Restore, check, clean up; the report lines. Raises (exit 1) when the backup did not verify."""
    image = backup_run.image_schema(run, timeout=timeout)
    if source.kind == "dump":
        command = [
            *backup_jobs.verify_command(source.id),
            "--publish",
            METRIC_NAMESPACE,
            "--server",
            run.target.name,
        ]
        try:
            result = backup_run.run_pgtask(run, command, what=f"drill of {source.id}", timeout=timeout)
        except MastofargateError as e:
            raise _failed(source, e) from None
        return _report(source, result, image)
    return _rds_drill(run, source, image, timeout=timeout)


def _rds_drill(run: Run, source: Source, image: str, *, timeout: float) -> list[str]:
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    plan = restore.Plan(source, stamp, throwaway_name(run, stamp), "")
    result: dict[str, Any] | None = None
    failure: MastofargateError | None = None
    try:
        endpoint = restore.restore_instance(run, plan, timeout=timeout)
        result = backup_run.run_pgtask(
            run,
            backup_jobs.check_command(),
            what=f"check of {plan.new_name}",
            timeout=timeout,
            environment={"PGHOST": endpoint},
        )
    except Interrupted:  # Ctrl-C: no verdict to publish; the instance still goes (finally)
        raise
    except MastofargateError as e:
        failure = e
    finally:
        leftover = _delete_throwaway(run, plan.new_name)
        if leftover:
            run.out.warn(leftover)
    _publish(run, source, ok=failure is None)
    if failure is not None:
        error = _failed(source, failure)
        if leftover:
            error.fix = f"{leftover}; {error.fix}"
        raise error
    assert result is not None
    lines = _report(source, result, image)
    return [*lines, leftover] if leftover else [*lines, f"  throw-away instance {plan.new_name} deleted"]


def _delete_throwaway(run: Run, identifier: str) -> str:
    """Delete the drill's instance (no final snapshot: it is a copy). '' when gone or never made; else
    what is left and the command that removes it."""
    rds = run.target.client("rds")
    try:
        with aws.aws_errors(f"deleting the throw-away instance {identifier}"):
            rds.delete_db_instance(DBInstanceIdentifier=identifier, SkipFinalSnapshot=True, DeleteAutomatedBackups=True)
    except aws.NotFound:
        return ""
    except MastofargateError as e:
        return (
            f"the throw-away instance {identifier} could NOT be deleted ({e.what}): delete it with 'aws rds "
            f"delete-db-instance --db-instance-identifier {identifier} --skip-final-snapshot'"
        )
    run.out.line(f"  deleting the throw-away instance {identifier}")
    return ""


def _publish(run: Run, source: Source, *, ok: bool) -> None:
    """DrillSucceeded (and BackupAgeSeconds of the restored backup) as the scheduled drill publishes them."""
    data: list[dict[str, Any]] = [{"MetricName": "DrillSucceeded", "Value": 1.0 if ok else 0.0, "Unit": "Count"}]
    if ok and source.kind == "rds-snapshot":
        snap = next((p for p in restore_points(run.target) if p.id == source.id), None)
        if snap:
            data.append({"MetricName": "BackupAgeSeconds", "Value": snap.age().total_seconds(), "Unit": "Seconds"})
    for item in data:
        item["Dimensions"] = [{"Name": "Server", "Value": run.target.name}]
    try:
        with aws.aws_errors("publishing the drill's result"):
            run.target.client("cloudwatch").put_metric_data(Namespace=METRIC_NAMESPACE, MetricData=data)
    except MastofargateError as e:  # the drill's verdict stands; only its record failed
        run.out.warn(f"the drill's result was not published ({e.what})")


def _failed(source: Source, e: MastofargateError) -> MastofargateError:
    return MastofargateError(
        f"The drill FAILED: {source.describe()} did not restore and verify.",
        why=f"{e.what}{' ' + e.why if e.why else ''}",
        fix="take a new backup ('mastofargate backup --wait') and verify it; look into why this one failed "
        "before you need it",
        exit_code=EXIT_FAILED,
    )


def _report(source: Source, result: dict[str, Any], image: str) -> list[str]:
    schema = str(result.get("schema_version", ""))
    if schema == image:
        versus = "matches the running image"
    elif schema < image:
        versus = f"older than the running image's {image} (deploy would migrate it)"
    else:
        versus = f"NEWER than the running image's {image}"
    counts = ", ".join(f"{k} {v}" for k, v in sorted((result.get("counts") or {}).items()))
    return [
        f"Drill passed: {source.describe()}",
        "  Mastodon's tables: present",
        f"  schema version {schema}: {versus}",
        f"  rows: {counts}",
    ]
