"""Every restore point of a server, from wherever AWS keeps it, as one typed list (read-only).

Sources, each asked only when the config can have it:
  rds-pitr       RDS point-in-time window: any second from the earliest restorable time up to
                 LatestRestorableTime (describe_db_instances; the automated backup's RestoreWindow)
  rds-snapshot   RDS snapshots of the instance, manual and automated (describe_db_snapshots)
  aws-backup     AWS Backup recovery points in the stack's vault (list_recovery_points_by_backup_vault)
  dump           logical dumps in the backup bucket (dumps/*.dump); complete only with their manifest,
                 which pgtask.py writes last and which holds the schema version
A source that does not exist (no instance, no vault, no bucket yet) contributes nothing; a refusal by AWS
is an error, because a list silently missing a kind of backup would mislead a restore.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mastofargate import aws, names
from mastofargate.stack.backups import DUMP_PREFIX

if TYPE_CHECKING:
    from mastofargate.target import Target

KINDS = ("rds-pitr", "rds-snapshot", "aws-backup", "dump")
MANIFEST_SUFFIX = ".json"
# Manifests are read for this many newest dumps (one GET each); older dumps are listed from the listing alone.
MANIFESTS_READ = 50


@dataclass(frozen=True)
class RestorePoint:
    """One thing a restore can start from. `time` is the moment of the data (for the PITR window: its
    newest second, with `earliest` its oldest)."""

    time: datetime
    kind: str
    id: str
    size_bytes: int | None = None
    earliest: datetime | None = None
    status: str = "available"
    detail: dict[str, Any] = field(default_factory=dict)

    def age(self, now: datetime | None = None) -> timedelta:
        return (now or datetime.now(UTC)) - self.time

    @property
    def usable(self) -> bool:
        return self.status == "available"

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        return {
            "time": _iso(self.time),
            "earliest": _iso(self.earliest) if self.earliest else None,
            "kind": self.kind,
            "id": self.id,
            "size_bytes": self.size_bytes,
            "age_seconds": int(self.age(now).total_seconds()),
            "status": self.status,
            "detail": self.detail,
        }


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _code(error: Exception) -> str:
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))


def rds_points(target: Target) -> list[RestorePoint]:
    from botocore.exceptions import ClientError

    rds = target.client("rds")
    instance_id = names.db_instance(target.name)
    with aws.aws_errors(f"describing RDS instance {instance_id}"):
        try:
            instance = rds.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"][0]
        except ClientError as e:
            if _code(e) != "DBInstanceNotFound":
                raise
            instance = None
    points: list[RestorePoint] = []
    if instance and instance.get("LatestRestorableTime") and instance.get("BackupRetentionPeriod", 0) > 0:
        latest = _utc(instance["LatestRestorableTime"])
        earliest = _earliest_restorable(target, instance) or max(
            _utc(instance["InstanceCreateTime"]), latest - timedelta(days=int(instance["BackupRetentionPeriod"]))
        )
        points.append(
            RestorePoint(
                time=latest,
                kind="rds-pitr",
                id=instance_id,
                size_bytes=int(instance.get("AllocatedStorage", 0)) * 2**30 or None,
                earliest=earliest,
                detail={"retention_days": instance["BackupRetentionPeriod"]},
            )
        )
    with aws.aws_errors(f"listing snapshots of {instance_id}"):
        for page in rds.get_paginator("describe_db_snapshots").paginate(DBInstanceIdentifier=instance_id):
            for snap in page.get("DBSnapshots", []):
                if not snap.get("SnapshotCreateTime"):
                    continue  # still being created: it has no time yet
                points.append(
                    RestorePoint(
                        time=_utc(snap["SnapshotCreateTime"]),
                        kind="rds-snapshot",
                        id=str(snap["DBSnapshotIdentifier"]),
                        size_bytes=int(snap.get("AllocatedStorage", 0)) * 2**30 or None,
                        status=str(snap.get("Status", "")),
                        detail={"type": snap.get("SnapshotType", ""), "engine_version": snap.get("EngineVersion", "")},
                    )
                )
    return points


def _earliest_restorable(target: Target, instance: dict[str, Any]) -> datetime | None:
    from botocore.exceptions import ClientError

    with aws.aws_errors("reading the automated backup window"):
        try:
            found = target.client("rds").describe_db_instance_automated_backups(
                DbiResourceId=instance["DbiResourceId"]
            )["DBInstanceAutomatedBackups"]
        except (ClientError, KeyError) as e:
            if isinstance(e, ClientError) and _code(e) != "DBInstanceAutomatedBackupNotFoundFault":
                raise
            return None
    for backup in found:
        earliest = (backup.get("RestoreWindow") or {}).get("EarliestTime")
        if earliest:
            return _utc(earliest)
    return None


def aws_backup_points(target: Target) -> list[RestorePoint]:
    from botocore.exceptions import ClientError

    vault = names.backup_vault(target.name)
    client = target.client("backup")
    points = []
    with aws.aws_errors(f"listing recovery points in vault {vault}"):
        try:
            for page in client.get_paginator("list_recovery_points_by_backup_vault").paginate(BackupVaultName=vault):
                for rp in page.get("RecoveryPoints", []):
                    status = str(rp.get("Status", "")).lower()
                    points.append(
                        RestorePoint(
                            time=_utc(rp.get("CompletionDate") or rp["CreationDate"]),
                            kind="aws-backup",
                            id=str(rp["RecoveryPointArn"]),
                            size_bytes=rp.get("BackupSizeInBytes"),
                            status="available" if status == "completed" else status,
                            detail={"resource_type": rp.get("ResourceType", ""), "resource": rp.get("ResourceArn", "")},
                        )
                    )
        except ClientError as e:
            if _code(e) != "ResourceNotFoundException":  # no vault (yet): nothing to list
                raise
    return points


def dump_points(target: Target, bucket: str, manifests: int = MANIFESTS_READ) -> list[RestorePoint]:
    """Dumps under dumps/ with their manifests (the newest `manifests` are read for their details; a dump is
    complete when its manifest exists, which the listing alone tells)."""
    from botocore.exceptions import ClientError

    s3 = target.client("s3")
    objects: dict[str, dict[str, Any]] = {}
    with aws.aws_errors(f"listing dumps in s3://{bucket}/{DUMP_PREFIX}"):
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=DUMP_PREFIX):
                for obj in page.get("Contents", []):
                    objects[obj["Key"]] = obj
        except ClientError as e:
            if _code(e) != "NoSuchBucket":
                raise
            return []
    dumps = sorted(
        (o for k, o in objects.items() if k.endswith(".dump")), key=lambda o: o["LastModified"], reverse=True
    )
    points = []
    for i, obj in enumerate(dumps):
        key = obj["Key"]
        complete = key + MANIFEST_SUFFIX in objects
        detail: dict[str, Any] = {"bucket": bucket}
        if complete and i < manifests:
            with aws.aws_errors(f"reading s3://{bucket}/{key}{MANIFEST_SUFFIX}"):
                body = s3.get_object(Bucket=bucket, Key=key + MANIFEST_SUFFIX)["Body"].read()
            try:
                manifest = json.loads(body)
            except json.JSONDecodeError:
                manifest = {}
                complete = False
            detail.update(
                {
                    k: manifest[k]
                    for k in ("label", "schema_version", "server_version", "counts", "sha256")
                    if k in manifest
                }
            )
        points.append(
            RestorePoint(
                time=_utc(obj["LastModified"]),
                kind="dump",
                id=f"s3://{bucket}/{key}",
                size_bytes=int(obj["Size"]),
                status="available" if complete else "incomplete (no manifest)",
                detail=detail,
            )
        )
    return points


def restore_points(target: Target, manifests: int = MANIFESTS_READ, *, aws_backup: bool = True) -> list[RestorePoint]:
    """All restore points of the server, newest first (`manifests`: how many dumps' details to read;
    aws_backup=False leaves out AWS Backup's recovery points, which `status` does not need: the database's
    newest backup is RDS's point-in-time window or the newest dump)."""
    points: list[RestorePoint] = []
    if target.config.deployment.database == "rds":
        points += rds_points(target)
    if aws_backup:
        points += aws_backup_points(target)
    bucket = target.stack_outputs(target.data_stack).get("BackupBucketName")
    if bucket:
        points += dump_points(target, bucket, manifests)
    return sorted(points, key=lambda p: (p.time, p.kind, p.id), reverse=True)


def newest(points: list[RestorePoint]) -> RestorePoint | None:
    """The newest usable restore point (what a drill restores and `status` shows)."""
    usable = [p for p in points if p.usable]
    return max(usable, key=lambda p: p.time) if usable else None


def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def human_age(age: timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"
