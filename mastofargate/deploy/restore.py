"""`mastofargate restore`: a backup restored into a NEW database, checked, and only then switched to.

    resolve the point ► plan ► image schema ► restore into a new database ► check it
        ► [switch] backup of the current database ► services stopped ► swap ► services started

How the switch is expressed (so that the next `deploy` keeps it without knowing a restore happened): by
NAME, never by pointing the configuration elsewhere. The server always uses the database named
`mastodon_production` on the instance named `{name}-postgres` (names.db_instance), which is what the data
stack created and what the app stack's DB_HOST/DB_NAME name. A restore swaps names:
  - RDS snapshot / point in time: the restored instance `{name}-postgres-restored-STAMP` is checked, the
    current instance is renamed `{name}-postgres-before-restore-STAMP` (retained, deletion protection kept)
    and the restored one renamed `{name}-postgres` (ModifyDBInstance NewDBInstanceIdentifier). The
    endpoint address follows the identifier, so the app stack's imported DatabaseHost is unchanged, and
    CloudFormation's Database resource (physical id = identifier), AWS Backup's selection, the alarms and
    `backups` all address the restored instance from then on.
  - a dump (Postgres task, or RDS): pgtask.py restores it into the new database `mastodon_restored_STAMP`
    on the running server and checks it; the swap renames `mastodon_production` to
    `mastodon_production_before_restore_STAMP` and the restored one to `mastodon_production` in one
    transaction (pgtask.py switch).
The old database is never deleted here: the final message says how to delete it.

Safety (DESIGN invariant 6): nothing touches the running database or services before the restored copy
verified; a verification failure leaves the copy for inspection (RDS) and changes nothing; a failure during
the switch says exactly which state the server is in and the next command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mastofargate import aws, names
from mastofargate.deploy import backup_jobs, backup_run, dbsetup, rollout, stacks
from mastofargate.deploy.backups import RestorePoint, restore_points
from mastofargate.deploy.context import Run
from mastofargate.errors import EXIT_FAILED, EXIT_TIMEOUT, MastofargateError, UsageError
from mastofargate.stack.database import DB_NAME

NEWEST = ("latest", "newest")
RESTORED_TAG = "mastofargate:restored-from"


@dataclass(frozen=True)
class Source:
    """What is restored: an RDS snapshot, an RDS point in time (time None: the latest restorable), a dump."""

    kind: str  # "rds-snapshot" | "rds-pitr" | "dump"
    id: str
    time: datetime | None = None

    def describe(self) -> str:
        if self.kind == "rds-pitr":
            when = self.time.strftime("%Y-%m-%d %H:%M:%S UTC") if self.time else "the latest restorable time"
            return f"RDS instance {self.id} as of {when}"
        return f"{'RDS snapshot' if self.kind == 'rds-snapshot' else 'dump'} {self.id}"


@dataclass
class Plan:
    source: Source
    stamp: str
    new_name: str  # the restored instance or database
    kept_name: str  # what the current one is renamed to
    steps: list[str] = field(default_factory=list)

    @property
    def rds(self) -> bool:
        return self.source.kind != "dump"


# --- what is restored ---------------------------------------------------------------------------------


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (UTC unless it says otherwise), e.g. 2026-11-30T06:15:00Z."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        raise UsageError(
            f"--to-time {text!r} is not a time.",
            fix="give an ISO 8601 time such as 2026-11-30T06:15:00Z (UTC), or 'latest'",
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def resolve(run: Run, point: str | None, to_time: str | None) -> Source:
    """The source the user named, checked against the restore points that exist (usage errors, exit 2)."""
    target = run.target
    rds = target.config.deployment.database == "rds"
    if (point is None) == (to_time is None):
        raise UsageError("Give exactly one of --from POINT or --to-time TIME.", fix="see 'mastofargate backups'")
    points = restore_points(target)
    if to_time is not None:
        if not rds:
            raise UsageError(
                "--to-time restores RDS to a point in time; this server's database is the Postgres task.",
                fix="restore a dump with --from (see 'mastofargate backups')",
            )
        window = next((p for p in points if p.kind == "rds-pitr"), None)
        if window is None:
            raise UsageError(f"RDS instance {names.db_instance(target.name)} has no point-in-time window.")
        if to_time.strip().lower() in NEWEST:
            return Source("rds-pitr", window.id, None)
        when = parse_time(to_time)
        earliest = window.earliest or window.time
        if not earliest <= when <= window.time:
            raise UsageError(
                f"--to-time {when:%Y-%m-%dT%H:%M:%SZ} is outside the restorable window "
                f"{earliest:%Y-%m-%dT%H:%M:%SZ} .. {window.time:%Y-%m-%dT%H:%M:%SZ}.",
                fix="pick a time inside the window ('mastofargate backups' shows it), or 'latest'",
            )
        return Source("rds-pitr", window.id, when)
    assert point is not None
    wanted = point.strip()
    kinds = ("rds-snapshot", "dump") if rds else ("dump",)
    if wanted.lower() in NEWEST:
        usable = [p for p in points if p.usable and p.kind in kinds]
        if not usable:
            raise UsageError(
                f"No usable backup of kind {' or '.join(kinds)} to restore.", fix="see 'mastofargate backups'"
            )
        best = max(usable, key=lambda p: p.time)
        return Source(best.kind, best.id)
    found = [p for p in points if p.id == wanted or (p.kind == "dump" and p.id.endswith("/" + wanted))]
    if not found:
        raise UsageError(
            f"--from {wanted!r} is not a restore point of {target.name}.",
            fix="copy an ID from 'mastofargate backups' (an RDS snapshot id or a dump's s3:// location), or 'latest'",
        )
    chosen = found[0]
    _refuse_unusable(chosen, kinds)
    return Source(chosen.kind, chosen.id)


def _refuse_unusable(p: RestorePoint, kinds: tuple[str, ...]) -> None:
    if p.kind == "aws-backup":
        raise UsageError(
            f"{p.id} is an AWS Backup recovery point; mastofargate restores RDS snapshots, RDS points in time "
            "and dumps.",
            fix="restore it with AWS Backup (console or 'aws backup start-restore-job'), or pick another point",
        )
    if p.kind == "rds-pitr":
        raise UsageError("The point-in-time window is restored with --to-time TIME (or --to-time latest).")
    if p.kind not in kinds:
        raise UsageError(f"{p.id} is an RDS snapshot; this server's database is the Postgres task.")
    if not p.usable:
        raise UsageError(
            f"{p.id} cannot be restored: it is {p.status}.", fix="pick another point ('mastofargate backups')"
        )


def make_plan(run: Run, source: Source, now: datetime | None = None) -> Plan:
    target = run.target
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    instance = names.db_instance(target.name)
    if source.kind == "dump":
        plan = Plan(source, stamp, f"mastodon_restored_{stamp}", f"{DB_NAME}_before_restore_{stamp}")
        where = "the running Postgres" if target.config.deployment.database == "task" else f"RDS instance {instance}"
        plan.steps = [
            "read the schema version the running Mastodon image expects (db/schema.rb, one-off task)",
            f"restore {source.describe()} into the NEW database {plan.new_name} on {where} and check it "
            "(Mastodon's tables, schema_migrations = the image's, accounts and statuses counted)",
            "-- only if it verified: --",
            f"back up the current database ({backup_run.describe_plan(run, 'pre-restore')})",
            "stop the services (web, streaming, Sidekiq: ServicesEnabled=false)",
            f"rename database {DB_NAME} -> {plan.kept_name} (kept) and {plan.new_name} -> {DB_NAME}",
            "start the services",
        ]
        return plan
    plan = Plan(
        source, stamp, _identifier(f"{instance}-restored-{stamp}"), _identifier(f"{instance}-before-restore-{stamp}")
    )
    plan.steps = [
        "read the schema version the running Mastodon image expects (db/schema.rb, one-off task)",
        f"restore {source.describe()} into the NEW RDS instance {plan.new_name} (settings of {instance}) and check "
        "it (Mastodon's tables, schema_migrations = the image's, accounts and statuses counted)",
        "-- only if it verified: --",
        f"back up the current database ({backup_run.describe_plan(run, 'pre-restore')})",
        "stop the services (web, streaming, Sidekiq: ServicesEnabled=false)",
        f"rename RDS instance {instance} -> {plan.kept_name} (kept, deletion protection on) and "
        f"{plan.new_name} -> {instance}",
        "start the services",
    ]
    return plan


def _identifier(text: str) -> str:
    """An RDS instance identifier: 1-63 letters, digits, hyphens; no double or trailing hyphen."""
    return re.sub(r"-+", "-", text)[:63].rstrip("-")


def show(run: Run, plan: Plan) -> None:
    run.out.step(f"Restore plan: {plan.source.describe()}")
    number = 0
    for step in plan.steps:
        if step.startswith("--"):
            run.out.line(f"  {step}")
            continue
        number += 1
        run.out.line(f"  {number}. {step}")


# --- restore and check --------------------------------------------------------------------------------


def restore_and_check(run: Run, plan: Plan, expect_schema: str, *, timeout: float) -> dict[str, Any]:
    """The restored copy, checked; raises (exit 1) when it does not verify, leaving the running server as it
    was. Returns the check's result (schema version, counts)."""
    if not plan.rds:
        bucket_location = plan.source.id
        command = backup_jobs.verify_command(
            bucket_location, expect_schema=expect_schema, scratch=False, into=plan.new_name
        )
        try:
            return backup_run.run_pgtask(run, command, what=f"restore into {plan.new_name} and check", timeout=timeout)
        except MastofargateError as e:
            raise _not_verified(e, f"pgtask.py dropped the half-restored database {plan.new_name}") from None
    endpoint = restore_instance(run, plan, timeout=timeout)
    try:
        return backup_run.run_pgtask(
            run,
            backup_jobs.check_command(expect_schema),
            what=f"check of {plan.new_name}",
            timeout=timeout,
            environment={"PGHOST": endpoint},
        )
    except MastofargateError as e:
        raise _not_verified(
            e,
            f"the restored instance {plan.new_name} is left for inspection; delete it with 'aws rds "
            f"delete-db-instance --db-instance-identifier {plan.new_name} --skip-final-snapshot'",
        ) from None


def _not_verified(e: MastofargateError, left: str) -> MastofargateError:
    return MastofargateError(
        "The restored database did not verify; nothing was switched and the server runs as before.",
        why=f"{e.what}{' ' + e.why if e.why else ''}",
        fix=f"{left}; pick another restore point ('mastofargate backups')",
        exit_code=EXIT_FAILED,
    )


def _current_instance(run: Run) -> dict[str, Any]:
    instance = names.db_instance(run.target.name)
    with aws.aws_errors(f"describing RDS instance {instance}"):
        return dict(run.target.client("rds").describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"][0])


def restore_instance(run: Run, plan: Plan, *, timeout: float) -> str:
    """Create the new instance with the current one's placement and settings; wait; return its endpoint."""
    current = _current_instance(run)
    rds = run.target.client("rds")
    settings: dict[str, Any] = {
        "DBInstanceClass": current["DBInstanceClass"],
        "DBSubnetGroupName": current["DBSubnetGroup"]["DBSubnetGroupName"],
        "VpcSecurityGroupIds": [g["VpcSecurityGroupId"] for g in current.get("VpcSecurityGroups", [])],
        "MultiAZ": bool(current.get("MultiAZ", False)),
        "PubliclyAccessible": False,
        "CopyTagsToSnapshot": True,
        "EnableIAMDatabaseAuthentication": bool(current.get("IAMDatabaseAuthenticationEnabled", False)),
        # off until it is switched to: a copy that fails its checks must be easy to delete
        "DeletionProtection": False,
        "Tags": [{"Key": RESTORED_TAG, "Value": plan.source.describe()[:256]}],
    }
    groups = current.get("DBParameterGroups") or []
    if groups:
        settings["DBParameterGroupName"] = groups[0]["DBParameterGroupName"]
    if current.get("StorageType"):
        settings["StorageType"] = current["StorageType"]
    run.out.step(f"Restoring {plan.source.describe()} into the new RDS instance {plan.new_name}")
    with aws.aws_errors(f"restoring into {plan.new_name}"):
        if plan.source.kind == "rds-snapshot":
            rds.restore_db_instance_from_db_snapshot(
                DBInstanceIdentifier=plan.new_name, DBSnapshotIdentifier=plan.source.id, **settings
            )
        else:
            when = (
                {"RestoreTime": plan.source.time} if plan.source.time is not None else {"UseLatestRestorableTime": True}
            )
            rds.restore_db_instance_to_point_in_time(
                SourceDBInstanceIdentifier=plan.source.id, TargetDBInstanceIdentifier=plan.new_name, **when, **settings
            )
    instance = wait_instance(run, plan.new_name, timeout=timeout, doing=f"restoring {plan.new_name}")
    endpoint = str((instance.get("Endpoint") or {}).get("Address", ""))
    run.out.line(f"  {plan.new_name} is available at {endpoint}")
    return endpoint


def wait_instance(run: Run, identifier: str, *, timeout: float, doing: str) -> dict[str, Any]:
    """Poll until the instance `identifier` exists and is `available` (a rename makes the new name appear
    only once RDS applied it, so NotFound counts as "not yet"); raises on a failed state or the timeout."""
    from botocore.exceptions import ClientError

    rds = run.target.client("rds")
    deadline = run.poller.deadline(timeout)
    status = "not visible yet"
    with run.pending(f"RDS is {doing}; it carries on without mastofargate"):
        while True:
            try:
                with aws.aws_errors(f"describing RDS instance {identifier}"):
                    found = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"]
            except aws.NotFound:
                found = []
            except ClientError:  # pragma: no cover - aws_errors translates every ClientError
                raise
            if found:
                status = str(found[0].get("DBInstanceStatus", ""))
                if status == "available":
                    return dict(found[0])
                if status in ("failed", "incompatible-restore", "incompatible-parameters", "storage-full"):
                    raise MastofargateError(
                        f"RDS instance {identifier} is {status} ({doing}).", fix="see the RDS console"
                    )
            if run.poller.expired(deadline):
                raise MastofargateError(
                    f"RDS instance {identifier} was still {status} after {timeout:.0f} s ({doing}).",
                    fix="RDS carries on by itself; see 'aws rds describe-db-instances' and run the command again",
                    exit_code=EXIT_TIMEOUT,
                )
            run.poller.pause(deadline)


# --- the switch ---------------------------------------------------------------------------------------


def set_services(run: Run, enabled: bool, *, timeout: float) -> None:
    """The app stack's ServicesEnabled flipped, with its deployed template and every other parameter as they
    are (the same switch a first install uses), watched until the services settle."""
    from mastofargate.deploy.ci_roles import change_set_role_arn

    target = run.target
    state = stacks.read_state(target, target.app_stack)
    template = stacks.deployed_template(target, target.app_stack)
    if state is None or template is None:
        raise MastofargateError(f"Stack {target.app_stack} is not deployed.", fix="run 'mastofargate deploy'")
    params = {**state.parameters, "ServicesEnabled": "true" if enabled else "false"}
    bucket = target.stack_outputs(target.data_stack).get("DeployBucketName")
    run.out.step(f"{'Starting' if enabled else 'Stopping'} the services")
    plan = stacks.create_change_set(
        target,
        target.app_stack,
        template,
        params,
        kind="UPDATE",
        bucket=bucket,
        role_arn=change_set_role_arn(target),
    )
    rollout.apply(run, plan, timeout=timeout)


def switch(run: Run, plan: Plan, *, timeout: float) -> list[str]:
    """Backup of the current database, services stopped, names swapped, services started. Returns notes.
    Every failure says what state the server is in and what to run next."""
    target = run.target
    pre = backup_run.take(run, f"pre-restore-{plan.stamp}", wait=True, timeout=timeout)
    run.out.line(f"  current database backed up: {pre.describe()}")
    set_services(run, False, timeout=timeout)
    try:
        if plan.rds:
            _swap_instances(run, plan, timeout=timeout)
        else:
            command = backup_jobs.switch_command(plan.new_name, plan.kept_name, DB_NAME)
            backup_run.run_pgtask(run, command, what=f"rename {plan.new_name} -> {DB_NAME}", timeout=timeout)
    except MastofargateError as e:
        raise MastofargateError(
            "The switch to the restored database failed; the services are STOPPED.",
            why=f"{e.what}{' ' + e.why if e.why else ''}",
            fix=_recovery_hint(run, plan),
            exit_code=e.exit_code,
        ) from None
    # Mastodon logs in as the owner role (deploy/dbsetup.py): the restored database must belong to it first.
    dbsetup.ensure_owner(
        run,
        timeout=timeout,
        restored=True,
        failed="The restored database is in place, but handing it to Mastodon's owner role failed; the services "
        "are STOPPED.",
        fix="read the setup task's log ('mastofargate logs dbsetup'), then run 'mastofargate deploy' (it runs the "
        "setup again and starts the services)",
    )
    try:
        set_services(run, True, timeout=timeout)
    except MastofargateError as e:
        raise MastofargateError(
            "The restored database is in place, but the services did not start.",
            why=f"{e.what}{' ' + e.why if e.why else ''}",
            fix="run 'mastofargate deploy' to start them (it keeps the restored database)",
            exit_code=e.exit_code,
        ) from None
    instance = names.db_instance(target.name)
    if plan.rds:
        delete = (
            f"aws rds modify-db-instance --db-instance-identifier {plan.kept_name} --no-deletion-protection "
            f"--apply-immediately && aws rds delete-db-instance --db-instance-identifier {plan.kept_name} "
            f"--final-db-snapshot-identifier {plan.kept_name}-final"
        )
        kept = f"the previous database is kept as RDS instance {plan.kept_name} (it costs as much as the live one)"
    else:
        where = f"RDS instance {instance}" if target.config.deployment.database == "rds" else "the Postgres task"
        delete = f'DROP DATABASE "{plan.kept_name}"; as the master user (psql on {where})'
        kept = f"the previous database is kept as {plan.kept_name} on {where}"
    return [
        kept,
        f"delete it when you no longer need it: {delete}",
        f"backup taken before the switch: {pre.describe()}",
    ]


def _swap_instances(run: Run, plan: Plan, *, timeout: float) -> None:
    target = run.target
    instance = names.db_instance(target.name)
    rds = target.client("rds")
    current = _current_instance(run)  # its backup and maintenance settings go to the restored instance
    run.out.step(f"Renaming {instance} -> {plan.kept_name}")
    with aws.aws_errors(f"renaming {instance}"):
        rds.modify_db_instance(
            DBInstanceIdentifier=instance, NewDBInstanceIdentifier=plan.kept_name, ApplyImmediately=True
        )
    wait_instance(run, plan.kept_name, timeout=timeout, doing=f"renaming {instance} to {plan.kept_name}")
    run.out.step(f"Renaming {plan.new_name} -> {instance}")
    with aws.aws_errors(f"renaming {plan.new_name}"):
        rds.modify_db_instance(
            DBInstanceIdentifier=plan.new_name, NewDBInstanceIdentifier=instance, ApplyImmediately=True
        )
    wait_instance(run, instance, timeout=timeout, doing=f"renaming {plan.new_name} to {instance}")
    settings: dict[str, Any] = {
        "DeletionProtection": True,
        "BackupRetentionPeriod": int(current.get("BackupRetentionPeriod") or target.config.rds.backup_retention_days),
        "CloudwatchLogsExportConfiguration": {
            "EnableLogTypes": list(current.get("EnabledCloudwatchLogsExports") or [])
        },
    }
    for key in ("PreferredBackupWindow", "PreferredMaintenanceWindow", "MaxAllocatedStorage"):
        if current.get(key):
            settings[key] = current[key]
    if not settings["CloudwatchLogsExportConfiguration"]["EnableLogTypes"]:
        del settings["CloudwatchLogsExportConfiguration"]
    with aws.aws_errors(f"protecting {instance}"):
        rds.modify_db_instance(DBInstanceIdentifier=instance, ApplyImmediately=True, **settings)


def _recovery_hint(run: Run, plan: Plan) -> str:
    """The next command for each state a failed swap can leave."""
    instance = names.db_instance(run.target.name)
    if not plan.rds:
        return (
            f"the rename runs in one transaction, so {DB_NAME} is still the previous database; run "
            "'mastofargate deploy' to start the services again, then retry the restore"
        )
    return (
        f"if 'aws rds describe-db-instances --db-instance-identifier {instance}' finds no instance, rename it back: "
        f"'aws rds modify-db-instance --db-instance-identifier {plan.kept_name} --new-db-instance-identifier "
        f"{instance} --apply-immediately' (or the restored {plan.new_name} to {instance}); then run "
        "'mastofargate deploy' to start the services"
    )


def restore(run: Run, plan: Plan, *, timeout: float) -> list[str]:
    """The whole restore after confirmation. Returns the notes of the final report."""
    expect = backup_run.image_schema(run, timeout=timeout)
    run.out.line(f"  the running image expects schema version {expect}")
    checked = restore_and_check(run, plan, expect, timeout=timeout)
    counts = ", ".join(f"{k} {v}" for k, v in sorted((checked.get("counts") or {}).items()))
    run.out.line(f"  verified {plan.new_name}: schema {checked.get('schema_version')}; {counts}")
    notes = switch(run, plan, timeout=timeout)
    return [f"restored {plan.source.describe()}: schema {checked.get('schema_version')}; {counts}", *notes]
