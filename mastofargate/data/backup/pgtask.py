#!/usr/bin/env python3
"""What the backup tasks run, inside a Postgres image: dump to S3, verify a dump, run pgBackRest.

Shipped in the mastofargate package as data and copied into the backup image; it depends only on the
standard library, the Postgres client programs of the image and, for S3, boto3 (Debian's python3-boto3),
so it runs without the rest of mastofargate. Connection settings are libpq's own environment variables
(PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE), which ECS fills from the task definition and
the database secret.

    pgtask.py dump --to s3://BUCKET/dumps/ [--label NAME] [--publish NS --server NAME]    pg_dump -Fc to S3
    pgtask.py verify --from s3://BUCKET/dumps/X.dump [--scratch] [--expect-schema V] [--into NAME]
    pgtask.py verify --from s3://BUCKET/dumps/ --scratch --publish NS --server NAME    the drill: newest dump
    pgtask.py check [--expect-schema V]                       the checks alone, on the connected database
    pgtask.py switch --restored NEW --keep-old-as OLD [--database NAME]   a restore's rename swap
    pgtask.py pgbackrest ARGS...                               pgBackRest with the ECS task role's credentials
    pgtask.py pgbackrest-keeper [--full-days 7] [--interval 600] [--publish NS --server NAME]
                                                               in the Postgres task: stanza-create, then a full
                                                               backup whenever the newest is too old, and
                                                               WalArchiveFailing 1/0 each --interval

A dump is complete only when its manifest (`<dump>.json`: size, sha256, server and pg_dump versions,
Mastodon's schema version, row counts) exists: the manifest is written last. `verify` restores a dump into
a fresh database (on the connected server, or with --scratch in a throw-away cluster it starts itself) and
checks it the way `mastofargate restore` must before switching a server to it: it connects, Mastodon's
tables exist, schema_migrations' newest version is the expected one, accounts and statuses are counted.
Its last line on stdout is one JSON object (`{"ok": ..., ...}`) for whoever started the task.

Exit codes: 0 ok, 1 the dump or the check failed (the message says why), 2 bad arguments or environment.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

MANIFEST_FORMAT = "mastofargate-dump"
MANIFEST_VERSION = 1
MASTODON_TABLES = ("accounts", "statuses", "users", "schema_migrations")
COUNTED_TABLES = ("accounts", "statuses")
# pg_dump's custom format starts with "PGDMP" and the archive version (major, minor, revision). Each
# pg_restore reads archives up to the version its release writes: 1.14 since PostgreSQL 12, 1.15 from 16
# (compression algorithm in the header), 1.16 from 17 (src/bin/pg_dump/pg_backup_archiver.h, K_VERS_*).
ARCHIVE_MAGIC = b"PGDMP"
ARCHIVE_VERSION_BY_MAJOR = {12: (1, 14), 13: (1, 14), 14: (1, 14), 15: (1, 14), 16: (1, 15), 17: (1, 16)}
CHUNK = 8 * 1024 * 1024


class TaskError(Exception):
    """A failure explained in one message; exit code 1 (the operation failed) or 2 (bad input)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def log(message: str) -> None:
    print(f"{datetime.now(UTC).strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# --- Postgres programs ----------------------------------------------------------------------------------


def _version_of(bindir: str) -> tuple[int, ...]:
    match = re.search(r"/(\d+)/bin$", bindir)
    return (int(match.group(1)),) if match else (0,)


def bindir() -> str:
    """Directory of the Postgres programs: $PG_BINDIR, else the directory of `pg_ctl` on PATH (the official
    image puts its bin directory there), else Debian's newest /usr/lib/postgresql/N/bin."""
    if os.environ.get("PG_BINDIR"):
        return os.environ["PG_BINDIR"]
    found = shutil.which("pg_ctl")
    if found:
        return str(Path(os.path.realpath(found)).parent)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_of)
    if not candidates:
        raise TaskError("No PostgreSQL programs found (pg_ctl, pg_dump, pg_restore).", exit_code=2)
    return candidates[-1]


def tool(name: str) -> str:
    path = Path(bindir()) / name
    if not path.exists():
        raise TaskError(f"{name} not found in {path.parent}.", exit_code=2)
    return str(path)


def tool_major(name: str) -> int:
    out = subprocess.run([tool(name), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"\(PostgreSQL\) (\d+)", out)
    if not match:
        raise TaskError(f"Cannot read the version of {name}: {out.strip()!r}.", exit_code=2)
    return int(match.group(1))


def psql(sql: str, *, env: dict[str, str] | None = None) -> list[list[str]]:
    """Rows of one query (unaligned, tab-separated) on the libpq-configured database; errors raise."""
    args = [tool("psql"), "-X", "-A", "-t", "-q", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql]
    result = subprocess.run(args, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise TaskError(f"psql failed: {result.stderr.strip() or result.returncode}")
    return [line.split("\t") for line in result.stdout.splitlines() if line]


def server_facts(env: dict[str, str] | None = None) -> dict[str, Any]:
    rows = psql("SELECT current_setting('server_version_num'), current_setting('server_version')", env=env)
    return {"server_version_num": int(rows[0][0]), "server_version": rows[0][1]}


def missing_tables(env: dict[str, str] | None = None) -> list[str]:
    wanted = ",".join(f"'{t}'" for t in MASTODON_TABLES)
    rows = psql(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name IN ({wanted})",
        env=env,
    )
    present = {r[0] for r in rows}
    return [t for t in MASTODON_TABLES if t not in present]


def schema_version(env: dict[str, str] | None = None) -> str:
    """The newest applied migration: what `rails db:migrate` compares with the image's migrations."""
    rows = psql("SELECT max(version) FROM schema_migrations", env=env)
    return rows[0][0] if rows and rows[0] and rows[0][0] else ""


def counts(env: dict[str, str] | None = None) -> dict[str, int]:
    selects = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in COUNTED_TABLES)
    return {name: int(n) for name, n in psql(selects, env=env)}


# --- where dumps live -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """s3://bucket/key or a local path."""

    bucket: str | None
    key: str

    @classmethod
    def parse(cls, text: str) -> Location:
        if text.startswith("s3://"):
            bucket, _, key = text[5:].partition("/")
            if not bucket:
                raise TaskError(f"{text!r}: no bucket name after s3://", exit_code=2)
            return cls(bucket, key)
        return cls(None, text)

    def child(self, name: str) -> Location:
        if self.bucket is None:
            return Location(None, str(Path(self.key) / name))
        return Location(self.bucket, self.key + name)

    @property
    def is_dir(self) -> bool:
        return self.key.endswith("/") or self.key == "" or (self.bucket is None and Path(self.key).is_dir())

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.bucket else self.key

    def with_suffix(self, suffix: str) -> Location:
        return Location(self.bucket, self.key + suffix)


def aws_client(service: str, env_suffix: str) -> Any:
    """A boto3 client; honours the SDKs' standard AWS_ENDPOINT_URL(_<SERVICE>) variables itself, because
    the boto3 of Debian bookworm (1.26) predates their support."""
    import boto3

    endpoint = os.environ.get(f"AWS_ENDPOINT_URL_{env_suffix}") or os.environ.get("AWS_ENDPOINT_URL") or None
    return boto3.client(service, endpoint_url=endpoint)  # type: ignore[call-overload]  # our own service names


def s3() -> Any:
    return aws_client("s3", "S3")


def newest_dump(prefix: Location) -> Location:
    """The newest complete dump (one with its manifest) under a prefix: what the drill restores."""
    if prefix.bucket:
        found: dict[str, Any] = {}
        for page in s3().get_paginator("list_objects_v2").paginate(Bucket=prefix.bucket, Prefix=prefix.key):
            for obj in page.get("Contents", []):
                found[obj["Key"]] = obj["LastModified"]
        complete = [(t, k) for k, t in found.items() if k.endswith(".dump") and k + ".json" in found]
        if complete:
            return Location(prefix.bucket, max(complete)[1])
    else:
        paths = [p for p in Path(prefix.key).glob("*.dump") if Path(str(p) + ".json").exists()]
        if paths:
            return Location(None, str(max(paths, key=lambda p: p.stat().st_mtime)))
    raise TaskError(f"No complete dump (with its manifest) under {prefix}.")


class HashingReader:
    """A file object that hashes and counts what is read through it (boto3 reads the dump through it)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.head = b""

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha256.update(data)
        self.size += len(data)
        if len(self.head) < 16:
            self.head += data[: 16 - len(self.head)]
        return data


def put_bytes(location: Location, data: bytes) -> None:
    if location.bucket:
        s3().put_object(Bucket=location.bucket, Key=location.key, Body=data, ContentType="application/json")
    else:
        tmp = Path(location.key + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(location.key)


def get_bytes(location: Location) -> bytes | None:
    if location.bucket:
        from botocore.exceptions import ClientError

        try:
            return bytes(s3().get_object(Bucket=location.bucket, Key=location.key)["Body"].read())
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
    path = Path(location.key)
    return path.read_bytes() if path.exists() else None


def fetch(location: Location, into: Path) -> Path:
    """A local path holding the dump (downloaded when it lives in S3)."""
    if not location.bucket:
        if not Path(location.key).is_file():
            raise TaskError(f"{location} does not exist.", exit_code=2)
        return Path(location.key)
    from botocore.exceptions import ClientError

    dest = into / "dump"
    try:
        s3().download_file(location.bucket, location.key, str(dest))
    except ClientError as e:
        raise TaskError(f"Cannot download {location}: {e.response.get('Error', {}).get('Code', e)}.") from None
    return dest


# --- dump -----------------------------------------------------------------------------------------------


def archive_version(head: bytes) -> tuple[int, int, int] | None:
    if len(head) < 8 or not head.startswith(ARCHIVE_MAGIC):
        return None
    return head[5], head[6], head[7]


def dump(to: Location, label: str) -> dict[str, Any]:
    """pg_dump -Fc of $PGDATABASE streamed to `to`, then its manifest; returns the manifest."""
    database = os.environ.get("PGDATABASE", "")
    facts = server_facts()
    missing = missing_tables()
    if missing:
        raise TaskError(f"Database {database or '(default)'} lacks Mastodon's tables {', '.join(missing)}.")
    before = schema_version()
    rows = counts()
    # milliseconds: S3's LastModified has whole seconds, so two dumps of one second are ordered by their names
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"
    if to.is_dir:
        to = to.child(f"{stamp}-{re.sub(r'[^A-Za-z0-9._-]', '-', label)}.dump")
    log(f"dumping {database or 'the default database'} (PostgreSQL {facts['server_version']}) to {to}")
    started = time.monotonic()
    proc = subprocess.Popen([tool("pg_dump"), "-Fc", "--no-password"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    reader = HashingReader(proc.stdout)
    try:
        if to.bucket:
            s3().upload_fileobj(reader, to.bucket, to.key)
        else:
            with open(to.key + ".tmp", "wb") as f:
                while chunk := reader.read(CHUNK):
                    f.write(chunk)
    except BaseException:
        proc.kill()
        proc.wait()
        _remove(to, partial=True)
        raise
    stderr = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        _remove(to, partial=True)
        raise TaskError(f"pg_dump failed (exit {proc.returncode}): {stderr.strip()}")
    if not to.bucket:
        Path(to.key + ".tmp").replace(to.key)
    after = schema_version()
    if after != before:
        _remove(to, partial=False)
        raise TaskError(f"A migration ran during the dump (schema {before} -> {after}); the dump was discarded.")
    version = archive_version(reader.head)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "dump": to.key.rsplit("/", 1)[-1],
        "label": label,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "database": database,
        "size": reader.size,
        "sha256": reader.sha256.hexdigest(),
        "archive_version": ".".join(map(str, version)) if version else None,
        "pg_dump_major": tool_major("pg_dump"),
        **facts,
        "schema_version": before,
        "counts": rows,
        "seconds": round(time.monotonic() - started, 1),
    }
    put_bytes(to.with_suffix(".json"), json.dumps(manifest, indent=2, sort_keys=True).encode())
    log(f"dump complete: {reader.size} bytes, schema {before}, {rows}")
    return {"ok": True, "location": str(to), **manifest}


def _remove(location: Location, *, partial: bool) -> None:
    if location.bucket:
        s3().delete_object(Bucket=location.bucket, Key=location.key)
    else:
        for path in (Path(location.key + ".tmp"), None if partial else Path(location.key)):
            if path is not None and path.exists():
                path.unlink()


# --- verify ---------------------------------------------------------------------------------------------


def check_archive(path: Path, manifest: dict[str, Any] | None, restore_major: int) -> tuple[int, int, int]:
    """Refuse a dump that is not what its manifest says, or that this pg_restore cannot read, with the
    reason in words (pg_restore's own messages are terse and come late, mid-restore)."""
    size = path.stat().st_size
    if manifest:
        if size != manifest["size"]:
            raise TaskError(
                f"The dump is {size} bytes but its manifest says {manifest['size']}: it is truncated or was "
                "replaced. Use another backup."
            )
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != manifest["sha256"]:
            raise TaskError("The dump's sha256 differs from its manifest's: it is corrupted. Use another backup.")
    with open(path, "rb") as f:
        head = f.read(16)
    version = archive_version(head)
    if version is None:
        raise TaskError("This is not a pg_dump custom-format archive (no PGDMP header): truncated or not a dump.")
    readable = ARCHIVE_VERSION_BY_MAJOR.get(restore_major, max(ARCHIVE_VERSION_BY_MAJOR.values()))
    dumped_by = (manifest or {}).get("pg_dump_major")
    if version[:2] > readable or (dumped_by and dumped_by > restore_major):
        by = f"pg_dump {dumped_by}" if dumped_by else "a newer pg_dump"
        raise TaskError(
            f"The dump was made by {by} (archive format {'.'.join(map(str, version))}); this pg_restore "
            f"(PostgreSQL {restore_major}) reads formats up to {'.'.join(map(str, readable))}. Restore it with "
            f"PostgreSQL {dumped_by or 'of the dumping server'} or newer."
        )
    return version


@contextmanager
def scratch_cluster() -> Iterator[dict[str, str]]:
    """A throw-away Postgres listening only on a private Unix socket; removed afterwards."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        raise TaskError("--scratch cannot run as root (PostgreSQL refuses); run as the 'postgres' user.", 2)
    root = Path(tempfile.mkdtemp(prefix="verify-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    # libpq's variables for the task's real database must not leak into the scratch server or its clients
    # (the server itself takes its default port from PGPORT).
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PG") or k == "PG_BINDIR"}
    env = {**clean, "PGHOST": str(sock), "PGUSER": "postgres", "PGPORT": "5432", "PGDATABASE": "postgres"}
    try:
        subprocess.run(
            [tool("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"],
            check=True,
            capture_output=True,
            env=clean,
        )
        options = (
            f"-c port=5432 -c listen_addresses='' -c unix_socket_directories='{sock}' "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )
        started = subprocess.run(
            [tool("pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", options, "-w", "-t", "120", "start"],
            capture_output=True,
            text=True,
            env=clean,
        )
        if started.returncode != 0:
            raise TaskError(f"The scratch Postgres did not start: {(root / 'log').read_text()[-2000:]}")
        yield env
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([tool("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True, env=clean)
        shutil.rmtree(root, ignore_errors=True)


def verify(
    source: Location, *, expect_schema: str | None, scratch: bool, keep: bool, jobs: int, into: str | None = None
) -> dict[str, Any]:
    started = time.monotonic()
    if source.is_dir:
        source = newest_dump(source)
        log(f"newest complete dump: {source}")
    raw_manifest = get_bytes(source.with_suffix(".json"))
    manifest = json.loads(raw_manifest) if raw_manifest else None
    if manifest is None:
        log(f"warning: {source} has no manifest; size and checksum cannot be checked")
    expected = expect_schema or (manifest or {}).get("schema_version")
    restore_major = tool_major("pg_restore")
    with tempfile.TemporaryDirectory(prefix="dump-") as tmp:
        path = fetch(source, Path(tmp))
        version = check_archive(path, manifest, restore_major)
        listed = subprocess.run([tool("pg_restore"), "--list", str(path)], capture_output=True, text=True)
        if listed.returncode != 0:
            raise TaskError(f"pg_restore cannot read the dump's table of contents: {listed.stderr.strip()}")
        with scratch_cluster() if scratch else _connected() as env:
            result = _restore_and_check(
                path, env, manifest, expected, version, keep=keep or bool(into), jobs=jobs, started=started, into=into
            )
            return {**result, "location": str(source)}


@contextmanager
def _connected() -> Iterator[dict[str, str]]:
    yield dict(os.environ)


def _restore_and_check(
    path: Path,
    env: dict[str, str],
    manifest: dict[str, Any] | None,
    expected: str | None,
    version: tuple[int, int, int],
    *,
    keep: bool,
    jobs: int,
    started: float,
    into: str | None = None,
) -> dict[str, Any]:
    server = server_facts(env)
    name = into or f"verify_{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}_{os.getpid()}"
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise TaskError(f"--into {name!r}: a database name of lowercase letters, digits and _ is required.", 2)
    admin_db = env.get("PGDATABASE") or "postgres"
    psql(f'CREATE DATABASE "{name}"', env={**env, "PGDATABASE": admin_db})
    log(f"restoring into new database {name} on PostgreSQL {server['server_version']}")
    verified = False
    try:
        restored = subprocess.run(
            [tool("pg_restore"), "--no-owner", "--no-acl", "--exit-on-error", f"--jobs={jobs}", "-d", name, str(path)],
            capture_output=True,
            text=True,
            env=env,
        )
        if restored.returncode != 0:
            message = restored.stderr.strip().splitlines()
            reason = message[-1] if message else f"exit {restored.returncode}"
            raise TaskError(f"The dump does not restore: {reason} (truncated or corrupted dump?)")
        env_db = {**env, "PGDATABASE": name}
        missing = missing_tables(env_db)
        if missing:
            raise TaskError(f"The restored database lacks Mastodon's tables: {', '.join(missing)}.")
        got = schema_version(env_db)
        if expected and got != expected:
            raise TaskError(f"schema_migrations' newest version is {got}, expected {expected}.")
        rows = counts(env_db)
        result = {
            "ok": True,
            "database": name if keep else None,
            "dump_created": (manifest or {}).get("created"),
            "schema_version": got,
            "counts": rows,
            "dump_counts": (manifest or {}).get("counts"),
            "archive_version": ".".join(map(str, version)),
            "server_version": server["server_version"],
            "seconds": round(time.monotonic() - started, 1),
        }
        log(f"verified: schema {got}, {rows}")
        verified = True
        return result
    finally:
        # the database this run created goes, unless it verified and was asked for: a half-restored copy
        # must never be mistaken for a good one
        if not (keep and verified):
            psql(f'DROP DATABASE IF EXISTS "{name}"', env={**env, "PGDATABASE": admin_db})


def check(expect_schema: str | None) -> dict[str, Any]:
    """The checks of `verify` on the connected database alone (an RDS instance restored from a snapshot or to
    a point in time has nothing to restore: it is checked where it is)."""
    facts = server_facts()
    missing = missing_tables()
    if missing:
        raise TaskError(f"The database lacks Mastodon's tables: {', '.join(missing)}.")
    got = schema_version()
    if expect_schema and got != expect_schema:
        raise TaskError(f"schema_migrations' newest version is {got}, expected {expect_schema}.")
    return {"ok": True, "schema_version": got, "counts": counts(), **facts}


DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def switch(restored: str, keep_old_as: str, database: str) -> dict[str, Any]:
    """`database` renamed to `keep_old_as` and `restored` to `database`, in one transaction (ALTER DATABASE
    RENAME may run inside one), from the maintenance database `postgres`. Sessions still connected to either
    are ended first (Postgres refuses to rename a database in use); the services are stopped by the caller."""
    for name in (restored, keep_old_as, database):
        if not DATABASE_NAME.fullmatch(name):
            raise TaskError(f"{name!r}: a database name of lowercase letters, digits and _ is required.", 2)
    env = {**os.environ, "PGDATABASE": "postgres"}
    present = {r[0] for r in psql("SELECT datname FROM pg_database", env=env)}
    if restored not in present:
        raise TaskError(f"There is no database {restored} to switch to.")
    if database not in present:
        raise TaskError(f"There is no database {database} to switch from.")
    if keep_old_as in present:
        raise TaskError(f"A database {keep_old_as} exists already; the current one cannot be kept under that name.")
    psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname IN ('{database}', '{restored}') AND pid <> pg_backend_pid()",
        env=env,
    )
    psql(
        f'BEGIN; ALTER DATABASE "{database}" RENAME TO "{keep_old_as}"; '
        f'ALTER DATABASE "{restored}" RENAME TO "{database}"; COMMIT',
        env=env,
    )
    log(f"switched: {database} is now the restored database; the previous one is kept as {keep_old_as}")
    return {"ok": True, "database": database, "kept_as": keep_old_as}


def publish(namespace: str, server: str, result: dict[str, Any], command: str) -> None:
    """The outcome as CloudWatch metrics (dimension Server), for the alarms of DESIGN invariant 6: a dump
    puts BackupSucceeded 1/0 (an alarm treating missing data as breaching notices when none succeeded for
    longer than the schedule allows); the drill puts DrillSucceeded 1/0 and BackupAgeSeconds of the dump
    it restored."""
    name = "BackupSucceeded" if command == "dump" else "DrillSucceeded"
    data: list[dict[str, Any]] = [{"MetricName": name, "Value": 1.0 if result.get("ok") else 0.0, "Unit": "Count"}]
    created = result.get("dump_created") if command == "verify" else None
    if result.get("ok") and created:
        age = datetime.now(UTC) - datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        data.append({"MetricName": "BackupAgeSeconds", "Value": max(0.0, age.total_seconds()), "Unit": "Seconds"})
    for item in data:
        item["Dimensions"] = [{"Name": "Server", "Value": server}]
    aws_client("cloudwatch", "CLOUDWATCH").put_metric_data(Namespace=namespace, MetricData=data)
    log(f"published {', '.join(d['MetricName'] for d in data)} to {namespace}")


# --- pgBackRest with the task role ----------------------------------------------------------------------

# ECS gives a task role's credentials at this address (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI); pgBackRest
# 2.45's `repo1-s3-key-type=auto` reads only EC2 instance metadata, so they are passed to it as a shared key.
ECS_CREDENTIALS_HOST = "http://169.254.170.2"


def task_role_credentials() -> dict[str, str] | None:
    """Temporary credentials of the ECS task role, or None outside ECS."""
    relative = os.environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    full = os.environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    url = ECS_CREDENTIALS_HOST + relative if relative else full
    if not url:
        return None
    request = urllib.request.Request(url)
    token = os.environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
    if token:
        request.add_header("Authorization", token)
    with urllib.request.urlopen(request, timeout=5) as response:
        body = json.loads(response.read())
    return {
        "PGBACKREST_REPO1_S3_KEY_TYPE": "shared",
        "PGBACKREST_REPO1_S3_KEY": body["AccessKeyId"],
        "PGBACKREST_REPO1_S3_KEY_SECRET": body["SecretAccessKey"],
        "PGBACKREST_REPO1_S3_TOKEN": body["Token"],
    }


def _pgbackrest_command(args: list[str]) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if not env.get("PGBACKREST_REPO1_S3_KEY"):
        creds = task_role_credentials()
        if creds:
            env.update(creds)
    exe = shutil.which("pgbackrest")
    if not exe:
        raise TaskError("pgbackrest is not installed in this image.", exit_code=2)
    return [exe, *args], env


def run_pgbackrest(args: list[str]) -> int:
    command, env = _pgbackrest_command(args)
    return subprocess.run(command, env=env).returncode


# --- the Postgres task's own base backups ---------------------------------------------------------------
#
# pgBackRest reads the data directory and reaches Postgres over its Unix socket, so only the Postgres task
# can take a base backup (a scheduled task cannot: it would need the data directory mounted a second time,
# or pgBackRest's TLS server running in the Postgres task). The entrypoint starts this keeper beside the
# postmaster. It decides from the repository itself (`pgbackrest info`), not from a timer, so a restarted
# task neither repeats a backup nor forgets one that is due: the first start gets a full backup at once,
# then one every --full-days. pgBackRest expires older backups, and the WAL they need, after each one
# (repo1-retention-full).


def newest_full_backup(info: list[dict[str, Any]]) -> float | None:
    """Stop time (epoch seconds) of the newest full backup in `pgbackrest info --output=json`."""
    stops = [
        float(b["timestamp"]["stop"]) for stanza in info for b in stanza.get("backup", []) if b.get("type") == "full"
    ]
    return max(stops) if stops else None


def full_backup_due(full_days: float, now: float | None = None) -> bool:
    command, env = _pgbackrest_command(["info", "--output=json"])
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise TaskError(f"pgbackrest info failed: {result.stderr.strip() or result.stdout.strip()}")
    newest = newest_full_backup(json.loads(result.stdout or "[]"))
    return newest is None or (now or time.time()) - newest >= full_days * 86400


def local_connection() -> dict[str, str]:
    """libpq settings for the local server as pgBackRest reaches it (its socket, port and user)."""
    env = {k: v for k, v in os.environ.items() if k != "PGSSLMODE"}
    for pg, backrest in (("PGHOST", "SOCKET_PATH"), ("PGPORT", "PORT"), ("PGUSER", "USER")):
        if os.environ.get(f"PGBACKREST_PG1_{backrest}"):
            env[pg] = os.environ[f"PGBACKREST_PG1_{backrest}"]
    env["PGDATABASE"] = "postgres"
    return env


def archive_failing(env: dict[str, str] | None = None) -> bool:
    """True when the server's latest archive_command attempt failed (pg_stat_archiver: the last failure is
    newer than the last success). Postgres retries a failed segment until it succeeds, so this clears by
    itself once archiving works again."""
    rows = psql(
        "SELECT coalesce(extract(epoch FROM last_archived_time), 0), "
        "coalesce(extract(epoch FROM last_failed_time), 0) FROM pg_stat_archiver",
        env=env,
    )
    archived, failed = (float(x) for x in rows[0])
    return failed > archived


def publish_archive_state(namespace: str, server: str, failing: bool) -> None:
    """WalArchiveFailing 1/0 (dimension Server): an alarm mails the admin while WAL is not reaching S3."""
    try:
        aws_client("cloudwatch", "CLOUDWATCH").put_metric_data(
            Namespace=namespace,
            MetricData=[
                {
                    "MetricName": "WalArchiveFailing",
                    "Value": 1.0 if failing else 0.0,
                    "Unit": "Count",
                    "Dimensions": [{"Name": "Server", "Value": server}],
                }
            ],
        )
    except Exception as e:  # a metric that cannot be sent must not stop the base backups
        log(f"pgbackrest keeper: could not publish WalArchiveFailing: {e}")


def keeper(full_days: float, interval: float, retry: float, publish: tuple[str, str] | None = None) -> int:
    """stanza-create (idempotent; retried until Postgres and the bucket answer), then forever: a full backup
    when due, and (with `publish`) whether WAL archiving works. Failures are logged and retried; WAL
    archiving itself (archive_command) does not depend on this process."""
    log(f"pgbackrest keeper: a full backup every {full_days:g} days, checked every {interval:g} s")
    while run_pgbackrest(["stanza-create"]) != 0:
        log(f"pgbackrest keeper: stanza-create failed; retrying in {retry:g} s (WAL archiving fails until it works)")
        if publish:
            publish_archive_state(*publish, failing=True)
        time.sleep(retry)
    log("pgbackrest keeper: stanza ready")
    while True:
        try:
            failing = archive_failing(local_connection())
            if failing:
                log("pgbackrest keeper: WAL archiving is failing (pg_stat_archiver); see archive-push errors above")
            if publish:
                publish_archive_state(*publish, failing=failing)
        except TaskError as e:
            log(f"pgbackrest keeper: {e}")
        try:
            if full_backup_due(full_days):
                log("pgbackrest keeper: starting a full backup")
                code = run_pgbackrest(["backup", "--type=full"])
                log(f"pgbackrest keeper: full backup {'complete' if code == 0 else f'FAILED (exit {code})'}")
                if code != 0:
                    time.sleep(retry)
                    continue
        except TaskError as e:
            log(f"pgbackrest keeper: {e}")
        time.sleep(interval)


# --- command line ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pgtask.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="pg_dump -Fc to s3://BUCKET/PREFIX/ or a local path, with a manifest")
    d.add_argument("--to", required=True)
    d.add_argument("--label", default="manual")
    d.add_argument("--publish", metavar="NAMESPACE", help="put BackupSucceeded 1/0 into CloudWatch metrics")
    d.add_argument("--server", default="", help="value of the metrics' Server dimension (with --publish)")
    v = sub.add_parser("verify", help="restore a dump into a fresh database and check it")
    v.add_argument("--from", dest="source", required=True)
    v.add_argument("--expect-schema", default=None, help="schema_migrations version the restore must have")
    v.add_argument("--scratch", action="store_true", help="restore into a throw-away cluster started here")
    v.add_argument("--keep", action="store_true", help="keep the restored database (for a restore)")
    v.add_argument("--into", default=None, help="name of the new database to restore into (implies --keep)")
    v.add_argument("--publish", metavar="NAMESPACE", help="put the outcome into CloudWatch metrics (the drill)")
    v.add_argument("--server", default="", help="value of the metrics' Server dimension (with --publish)")
    c = sub.add_parser("check", help="check the connected database (Mastodon's tables, schema, counts)")
    c.add_argument("--expect-schema", default=None)
    v.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1))
    w = sub.add_parser("switch", help="rename the restored database into place, keeping the current one")
    w.add_argument("--restored", required=True)
    w.add_argument("--keep-old-as", required=True)
    w.add_argument("--database", default=os.environ.get("PGDATABASE") or "mastodon_production")
    b = sub.add_parser("pgbackrest", help="run pgbackrest with the ECS task role's credentials")
    b.add_argument("args", nargs=argparse.REMAINDER)
    k = sub.add_parser("pgbackrest-keeper", help="in the Postgres task: stanza-create, then full backups when due")
    k.add_argument("--full-days", type=float, default=7.0, help="days between full backups")
    k.add_argument("--interval", type=float, default=600.0, help="seconds between checks")
    k.add_argument("--retry", type=float, default=60.0, help="seconds before a failed step is retried")
    k.add_argument("--publish", metavar="NAMESPACE", help="put WalArchiveFailing 1/0 into CloudWatch metrics")
    k.add_argument("--server", default="", help="value of the metrics' Server dimension (with --publish)")
    ns = parser.parse_args(argv)
    try:
        if ns.command == "pgbackrest":
            return run_pgbackrest(ns.args)
        if ns.command == "pgbackrest-keeper":
            if ns.full_days <= 0 or ns.interval <= 0 or ns.retry <= 0:
                raise TaskError("--full-days, --interval and --retry must be positive.", exit_code=2)
            if ns.publish and not ns.server:
                raise TaskError("--publish needs --server NAME (the metrics' dimension).", exit_code=2)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            return keeper(ns.full_days, ns.interval, ns.retry, (ns.publish, ns.server) if ns.publish else None)
        if ns.command in ("dump", "verify") and ns.publish and not ns.server:
            raise TaskError("--publish needs --server NAME (the metrics' dimension).", exit_code=2)
        if ns.command == "dump":
            result = dump(Location.parse(ns.to), ns.label)
        elif ns.command == "check":
            result = check(ns.expect_schema)
        elif ns.command == "switch":
            result = switch(ns.restored, ns.keep_old_as, ns.database)
        else:
            result = verify(
                Location.parse(ns.source),
                expect_schema=ns.expect_schema,
                scratch=ns.scratch,
                keep=ns.keep,
                jobs=max(1, ns.jobs),
                into=ns.into,
            )
    except TaskError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        failed = {"ok": False, "error": str(e)}
        if ns.command in ("dump", "verify") and ns.publish and ns.server:
            publish(ns.publish, ns.server, failed, ns.command)
        print(json.dumps(failed), flush=True)
        return e.exit_code
    if ns.command in ("dump", "verify") and ns.publish:
        publish(ns.publish, ns.server, result, ns.command)
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
