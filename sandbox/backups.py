"""Backups in the emulator: what the backup task's pgtask.py answers, RDS snapshots and restores over time,
and AWS Backup's recovery-point listing.

What the one-off tasks print (instead of sandbox/ecs.py's bare `[sandbox] ran:` line): no Postgres runs in
the emulator, so each pgtask.py command answers with the JSON line pgtask.py prints as its last line, in
exactly its shape (mastofargate/data/backup/pgtask.py is the reference; tests/test_backup_tasks.py runs the
real script against a real Postgres), and acts on the emulator's S3 and CloudWatch as the real one would:
  - `pgtask.py dump --to s3://B/dumps/ --label L` writes `dumps/STAMP-L.dump` (a PGDMP header and filler) and
    then its manifest `….dump.json`, and answers with the manifest (size, sha256, schema version, counts);
  - `pgtask.py verify --from s3://…` reads the dump's manifest (a prefix: the newest dump with a manifest)
    and answers ok, or fails as pgtask.py does: no dump; a dump whose key contains `sandbox-baddata` does
    not restore (as a truncated one); --expect-schema differing from the manifest's schema version.
    A dump whose label contains `sandbox-broken` fails as pg_dump would and writes nothing;
    `--publish NS --server S` puts DrillSucceeded (and BackupAgeSeconds) into CloudWatch;
  - `pgtask.py check` checks "the database at $PGHOST": an RDS instance restored from a snapshot whose id
    contains `sandbox-baddata` lacks Mastodon's tables; else it is Mastodon's schema SCHEMA_VERSION;
  - `pgtask.py switch` answers ok (the rename happens inside Postgres, which the emulator has not);
  - `sh -c "… db/schema.rb …"` on a Mastodon image prints the image's schema version, SCHEMA_VERSION.
A failing answer exits with 1, as pgtask.py does.

Where moto 5.2 differs from AWS, and what this module does instead (as AWS does):
  - every RDS instance had the same DbiResourceId; on AWS each instance (a restored one too) has its own;
  - CreateDBSnapshot and RestoreDBInstanceFromDBSnapshot / ...ToPointInTime were `available` at once; on AWS
    a snapshot is `creating` and a restored instance `creating` for minutes. Here both stay `creating`
    for TIMING.task seconds of the emulator's clock, so waiters really wait (a snapshot whose id contains
    `sandbox-broken` then turns `failed`, as a snapshot RDS could not take);
  - ListRecoveryPointsByBackupVault did not exist (404); here it answers as for the stack's new vault, which
    holds no recovery points until its plan first runs: an empty list.
The `sandbox-broken` / `sandbox-baddata` markers (in a label, an image tag that becomes a label, a snapshot
id or a dump's key) are the emulator's own failures on purpose; the product knows nothing of them.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import string
import time
from datetime import UTC, datetime
from typing import Any

from sandbox.standins import rand
from sandbox.timing import TIMING

SCHEMA_VERSION = "20260805130216"  # db/schema.rb of the Mastodon release the emulated images stand for
COUNTS = {"accounts": 3, "statuses": 42}
BROKEN_MARK = "sandbox-broken"  # the backup itself fails: a snapshot ends `failed`, a dump is not written
BAD_DATA_MARK = "sandbox-baddata"  # the backup exists but does not verify: no tables / does not restore
PGTASK = "pgtask.py"
_pending: dict[int, tuple[Any, float]] = {}  # id(object) -> (moto snapshot/instance, when it was created)


# --- what the backup task prints ------------------------------------------------------------------------


def answer(command: list[str], environment: dict[str, str], account: str, region: str) -> tuple[list[str], int] | None:
    """(log lines, exit code) of a pgtask.py or image-schema command; None for any other command."""
    script = command[command.index("-c") + 1] if command[:1] in (["sh"], ["bash"]) and "-c" in command else ""
    if "db/schema.rb" in script:
        return [SCHEMA_VERSION], 0
    at = next((i for i, part in enumerate(command) if part.endswith(PGTASK)), None)
    if at is None or at + 1 >= len(command):
        return None
    verb, args = command[at + 1], _options(command[at + 2 :])
    try:
        if verb == "dump":
            result = _dump(args, account, region)
        elif verb == "verify":
            result = _verify(args, account, region)
        elif verb == "check":
            result = _check(args, environment, account, region)
        elif verb == "switch":
            result = {
                "ok": True,
                "database": args.get("--database", "mastodon_production"),
                "kept_as": args["--keep-old-as"],
            }
        else:
            return None
    except _Failed as e:
        if verb in ("dump", "verify") and args.get("--publish"):
            _publish(args, account, region, ok=False, command=verb)
        return [f"error: {e}", json.dumps({"ok": False, "error": str(e)})], 1
    if verb in ("dump", "verify") and args.get("--publish"):
        _publish(args, account, region, ok=True, command=verb, created=result.get("dump_created"))
    return [f"[sandbox] pgtask.py {shlex.join(command[at + 1 :])}", json.dumps(result, sort_keys=True)], 0


class _Failed(Exception):
    pass


def _options(parts: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    while i < len(parts):
        if parts[i].startswith("--"):
            flag = parts[i]
            if i + 1 < len(parts) and not parts[i + 1].startswith("--"):
                out[flag] = parts[i + 1]
                i += 2
                continue
            out[flag] = ""
        i += 1
    return out


def _s3(account: str) -> Any:
    from moto.s3.models import s3_backends

    return s3_backends[account]["global"]


def _split(location: str) -> tuple[str, str]:
    if not location.startswith("s3://"):
        raise _Failed(f"{location} does not exist.")
    bucket, _, key = location[5:].partition("/")
    return bucket, key


def _dump(args: dict[str, str], account: str, region: str) -> dict[str, Any]:
    bucket, prefix = _split(args["--to"])
    if BROKEN_MARK in args.get("--label", ""):
        raise _Failed("pg_dump failed (exit 1): pg_dump: error: connection to server failed: timeout expired")
    label = re.sub(r"[^A-Za-z0-9._-]", "-", args.get("--label", "manual"))
    now = datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"  # as pgtask.py names its dumps
    key = f"{prefix}{stamp}-{label}.dump" if prefix.endswith("/") or not prefix else prefix
    body = b"PGDMP\x01\x0f\x00" + hashlib.sha256(key.encode()).digest() * 64
    manifest = {
        "format": "mastofargate-dump",
        "version": 1,
        "dump": key.rsplit("/", 1)[-1],
        "label": args.get("--label", "manual"),
        "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "database": "mastodon_production",
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "archive_version": "1.15.0",
        "pg_dump_major": 16,
        "server_version_num": 160004,
        "server_version": "16.4",
        "schema_version": SCHEMA_VERSION,
        "counts": dict(COUNTS),
        "seconds": 0.1,
    }
    s3 = _s3(account)
    try:
        s3.put_object(bucket, key, body)
        s3.put_object(bucket, key + ".json", json.dumps(manifest, indent=2, sort_keys=True).encode())
    except Exception as e:
        raise _Failed(f"Cannot upload to s3://{bucket}/{key}: {type(e).__name__}") from None
    return {"ok": True, "location": f"s3://{bucket}/{key}", **manifest}


def _manifest(bucket: str, key: str, account: str) -> dict[str, Any] | None:
    try:
        obj = _s3(account).get_object(bucket, key + ".json")
    except Exception:
        return None
    return dict(json.loads(obj.value)) if obj is not None else None


def _newest(bucket: str, prefix: str, account: str) -> str:
    try:
        keys = [k for k in _s3(account).get_bucket(bucket).keys if k.startswith(prefix)]
    except Exception:
        keys = []
    complete = sorted(k for k in keys if k.endswith(".dump") and k + ".json" in keys)
    if not complete:
        raise _Failed(f"No complete dump (with its manifest) under s3://{bucket}/{prefix}.")
    return complete[-1]


def _verify(args: dict[str, str], account: str, region: str) -> dict[str, Any]:
    bucket, key = _split(args["--from"])
    if key.endswith("/") or not key:
        key = _newest(bucket, key, account)
    manifest = _manifest(bucket, key, account)
    if manifest is None:
        raise _Failed(f"s3://{bucket}/{key} does not exist.")
    if BAD_DATA_MARK in key:
        raise _Failed(
            "The dump does not restore: pg_restore: error: could not read input file: end of file "
            "(truncated or corrupted dump?)"
        )
    expected = args.get("--expect-schema") or manifest["schema_version"]
    if manifest["schema_version"] != expected:
        raise _Failed(f"schema_migrations' newest version is {manifest['schema_version']}, expected {expected}.")
    return {
        "ok": True,
        "database": args.get("--into") or None,
        "dump_created": manifest["created"],
        "schema_version": manifest["schema_version"],
        "counts": manifest["counts"],
        "dump_counts": manifest["counts"],
        "archive_version": manifest["archive_version"],
        "server_version": manifest["server_version"],
        "seconds": 0.2,
        "location": f"s3://{bucket}/{key}",
    }


def _check(args: dict[str, str], environment: dict[str, str], account: str, region: str) -> dict[str, Any]:
    from moto.rds.models import rds_backends

    host = environment.get("PGHOST", "")
    for instance in rds_backends[account][region].databases.values():
        address = f"{instance.db_instance_identifier}."
        if host.startswith(address) and BAD_DATA_MARK in str(instance.__dict__.get("_sandbox_source", "")):
            raise _Failed("The database lacks Mastodon's tables: accounts, statuses, users, schema_migrations.")
    expected = args.get("--expect-schema")
    if expected and expected != SCHEMA_VERSION:
        raise _Failed(f"schema_migrations' newest version is {SCHEMA_VERSION}, expected {expected}.")
    return {
        "ok": True,
        "schema_version": SCHEMA_VERSION,
        "counts": dict(COUNTS),
        "server_version_num": 160004,
        "server_version": "16.4",
    }


def _publish(
    args: dict[str, str], account: str, region: str, *, ok: bool, command: str, created: str | None = None
) -> None:
    from moto.cloudwatch.models import cloudwatch_backends

    name = "BackupSucceeded" if command == "dump" else "DrillSucceeded"
    dims = [{"Name": "Server", "Value": args.get("--server", "")}]
    data: list[dict[str, Any]] = [
        {"MetricName": name, "Value": 1.0 if ok else 0.0, "Unit": "Count", "Dimensions": dims}
    ]
    if ok and created and command == "verify":
        age = (datetime.now(UTC) - datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)).total_seconds()
        data.append({"MetricName": "BackupAgeSeconds", "Value": max(0.0, age), "Unit": "Seconds", "Dimensions": dims})
    cloudwatch_backends[account][region].put_metric_data(args["--publish"], data)


# --- RDS over time, AWS Backup --------------------------------------------------------------------------


def patch() -> None:
    """Snapshots and restored instances start `creating`; restored instances remember their snapshot;
    ListRecoveryPointsByBackupVault answers."""
    from moto.backup import urls
    from moto.backup.responses import BackupResponse
    from moto.rds.models import RDSBackend

    if getattr(RDSBackend, "_sandbox_backups", False):
        return
    create_instance = RDSBackend.create_db_instance
    create_snapshot = RDSBackend.create_db_snapshot
    from_snapshot = RDSBackend.restore_db_instance_from_db_snapshot
    to_time = RDSBackend.restore_db_instance_to_point_in_time

    def create_db_instance(self: Any, *args: Any, **kwargs: Any) -> Any:
        instance = create_instance(self, *args, **kwargs)
        instance.dbi_resource_id = "db-" + rand(26, string.ascii_uppercase + string.digits)
        return instance

    def create_db_snapshot(self: Any, *args: Any, **kwargs: Any) -> Any:
        snapshot = create_snapshot(self, *args, **kwargs)
        _creating(snapshot)
        return snapshot

    def restore_from_snapshot(self: Any, from_snapshot_id: str, overrides: dict[str, Any]) -> Any:
        instance = from_snapshot(self, from_snapshot_id, overrides)
        instance._sandbox_source = from_snapshot_id
        _creating(instance)
        return instance

    def restore_to_time(self: Any, *args: Any, **kwargs: Any) -> Any:
        instance = to_time(self, *args, **kwargs)
        _creating(instance)
        return instance

    RDSBackend.create_db_instance = create_db_instance  # type: ignore[method-assign]
    RDSBackend.create_db_snapshot = create_db_snapshot  # type: ignore[method-assign]
    RDSBackend.restore_db_instance_from_db_snapshot = restore_from_snapshot  # type: ignore[method-assign]
    RDSBackend.restore_db_instance_to_point_in_time = restore_to_time  # type: ignore[method-assign]
    RDSBackend._sandbox_backups = True  # type: ignore[attr-defined]

    def list_recovery_points_by_backup_vault(self: Any) -> str:
        return json.dumps({"RecoveryPoints": []})

    BackupResponse.list_recovery_points_by_backup_vault = list_recovery_points_by_backup_vault  # type: ignore[attr-defined]
    urls.url_paths["{0}/backup-vaults/(?P<name>[^/]+)/recovery-points/$"] = urls.response.dispatch


def _creating(thing: Any) -> None:
    thing.status = "creating"
    _pending[id(thing)] = (thing, time.monotonic())


def tick(now: float) -> None:
    """Snapshots and restored instances become `available` TIMING.task seconds after they were made."""
    for key, (thing, since) in list(_pending.items()):
        if now - since >= TIMING.task:
            if thing.status == "creating":
                name = str(getattr(thing, "db_snapshot_identifier", ""))
                thing.status = "failed" if BROKEN_MARK in name else "available"
            _pending.pop(key, None)


def reset() -> None:
    _pending.clear()
