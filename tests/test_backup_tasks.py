"""The commands the backup tasks run, against a real PostgreSQL 15 and a moto server as S3.

A database shaped like Mastodon's is dumped with `pg_dump -Fc` streamed to S3 with its manifest, then
restored into a fresh database (a throw-away cluster, as the drill does, or the connected server, as a
restore does) and checked. Broken dumps must be refused with a message that says what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from mastofargate.stack.backups import METRIC_NAMESPACE
from tests.moto_server import aws_endpoint, moto_server  # noqa: F401
from tests.pg_support import (
    SCHEMA_VERSION,
    SEED_ACCOUNTS,
    SEED_STATUSES,
    Cluster,
    cluster,
    pgtask,
    private_dir,
    require_postgres,
    seed_mastodon,
)

BUCKET = "social-backups-123456789012-us-east-1"


@pytest.fixture(scope="module")
def mastodon_db() -> Iterator[Cluster]:
    require_postgres()
    with cluster("pg-source-") as c:
        seed_mastodon(c)
        yield c


@pytest.fixture
def s3_env(aws_endpoint: str, mastodon_db: Cluster) -> dict[str, str]:  # noqa: F811
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return mastodon_db.env(
        "mastodon_production",
        AWS_ENDPOINT_URL=aws_endpoint,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = private_dir("dumps-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def result_of(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def dump_to_file(db: Cluster, workdir: Path) -> Path:
    proc = pgtask(["dump", "--to", str(workdir) + "/", "--label", "nightly"], db.env("mastodon_production"))
    assert proc.returncode == 0, proc.stderr
    return Path(result_of(proc)["location"])


def test_dump_streams_to_s3_with_a_manifest_and_verifies_in_a_scratch_cluster(s3_env: dict[str, str]) -> None:
    proc = pgtask(["dump", "--to", f"s3://{BUCKET}/dumps/", "--label", "before v4.5.4"], s3_env)
    assert proc.returncode == 0, proc.stderr
    location = result_of(proc)["location"]
    key = location.removeprefix(f"s3://{BUCKET}/")
    assert key.startswith("dumps/") and key.endswith("-before-v4.5.4.dump")
    s3 = boto3.client("s3")
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=key + ".json")["Body"].read())
    assert body[:5] == b"PGDMP"
    assert manifest["size"] == len(body) and manifest["sha256"] == hashlib.sha256(body).hexdigest()
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["counts"] == {"accounts": SEED_ACCOUNTS, "statuses": SEED_STATUSES}
    assert manifest["server_version_num"] // 10000 == 15 and manifest["pg_dump_major"] == 15
    assert manifest["archive_version"].startswith("1.14")

    verified = pgtask(["verify", "--from", location, "--scratch"], s3_env)
    assert verified.returncode == 0, verified.stderr
    result = result_of(verified)
    assert result["ok"] is True and result["schema_version"] == SCHEMA_VERSION
    assert result["counts"] == {"accounts": SEED_ACCOUNTS, "statuses": SEED_STATUSES}


def test_verify_restores_into_a_new_database_on_the_server_and_keeps_it(mastodon_db: Cluster, workdir: Path) -> None:
    dump = dump_to_file(mastodon_db, workdir)
    proc = pgtask(["verify", "--from", str(dump), "--keep", "--expect-schema", SCHEMA_VERSION], mastodon_db.env())
    assert proc.returncode == 0, proc.stderr
    name = result_of(proc)["database"]
    assert name.startswith("verify_")
    try:
        assert mastodon_db.sql("SELECT count(*) FROM statuses", name) == [[str(SEED_STATUSES)]]
        # the source was not touched
        assert mastodon_db.sql("SELECT count(*) FROM statuses", "mastodon_production") == [[str(SEED_STATUSES)]]
    finally:
        mastodon_db.sql(f'DROP DATABASE "{name}"')


def test_a_truncated_dump_is_refused_clearly(mastodon_db: Cluster, workdir: Path) -> None:
    dump = dump_to_file(mastodon_db, workdir)
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) * 2 // 3])
    proc = pgtask(["verify", "--from", str(dump), "--scratch"], mastodon_db.env())
    assert proc.returncode == 1
    assert "truncated" in proc.stderr and "Traceback" not in proc.stderr
    assert result_of(proc)["ok"] is False

    # without its manifest the size cannot be compared: the restore itself must fail, clearly
    Path(str(dump) + ".json").unlink()
    proc = pgtask(["verify", "--from", str(dump), "--scratch"], mastodon_db.env())
    assert proc.returncode == 1, proc.stderr
    assert "does not restore" in proc.stderr or "table of contents" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_corrupted_dump_is_refused_by_its_checksum(mastodon_db: Cluster, workdir: Path) -> None:
    dump = dump_to_file(mastodon_db, workdir)
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    proc = pgtask(["verify", "--from", str(dump), "--scratch"], mastodon_db.env())
    assert proc.returncode == 1 and "corrupted" in proc.stderr


def test_a_dump_from_a_newer_pg_dump_is_refused_clearly(mastodon_db: Cluster, workdir: Path) -> None:
    """Fake: only PostgreSQL 15 is installed here, so a real dump gets the header and manifest a PostgreSQL 17
    pg_dump writes (archive format 1.16, pg_dump_major 17), with a matching checksum."""
    dump = dump_to_file(mastodon_db, workdir)
    data = bytearray(dump.read_bytes())
    data[5:8] = bytes([1, 16, 0])
    dump.write_bytes(bytes(data))
    manifest_path = Path(str(dump) + ".json")
    manifest = json.loads(manifest_path.read_text())
    manifest.update(size=len(data), sha256=hashlib.sha256(data).hexdigest(), pg_dump_major=17)
    manifest_path.write_text(json.dumps(manifest))
    proc = pgtask(["verify", "--from", str(dump), "--scratch"], mastodon_db.env())
    assert proc.returncode == 1
    assert "pg_dump 17" in proc.stderr and "PostgreSQL 15" in proc.stderr and "1.16" in proc.stderr


def test_a_schema_other_than_the_expected_one_fails(mastodon_db: Cluster, workdir: Path) -> None:
    dump = dump_to_file(mastodon_db, workdir)
    proc = pgtask(["verify", "--from", str(dump), "--scratch", "--expect-schema", "20991231000000"], mastodon_db.env())
    assert proc.returncode == 1 and f"is {SCHEMA_VERSION}, expected 20991231000000" in proc.stderr


def test_dump_refuses_a_database_that_is_not_mastodons(mastodon_db: Cluster, workdir: Path) -> None:
    proc = pgtask(["dump", "--to", str(workdir) + "/"], mastodon_db.env("postgres"))
    assert proc.returncode == 1 and "lacks Mastodon's tables" in proc.stderr
    assert not list(workdir.iterdir())


def test_verify_into_a_named_database_keeps_it_only_when_it_verified(mastodon_db: Cluster, workdir: Path) -> None:
    dump = dump_to_file(mastodon_db, workdir)
    failed = pgtask(
        ["verify", "--from", str(dump), "--into", "restored_bad", "--expect-schema", "1"], mastodon_db.env()
    )
    assert failed.returncode == 1
    assert mastodon_db.sql("SELECT count(*) FROM pg_database WHERE datname = 'restored_bad'") == [["0"]]
    proc = pgtask(["verify", "--from", str(dump), "--into", "restored_20261130"], mastodon_db.env())
    assert proc.returncode == 0, proc.stderr
    try:
        assert result_of(proc)["database"] == "restored_20261130"
        again = pgtask(["verify", "--from", str(dump), "--into", "restored_20261130"], mastodon_db.env())
        assert again.returncode == 1 and "already exists" in again.stderr  # never restores over a database
        assert mastodon_db.sql("SELECT count(*) FROM accounts", "restored_20261130") == [[str(SEED_ACCOUNTS)]]
    finally:
        mastodon_db.sql("DROP DATABASE restored_20261130")


def metric_values(name: str, statistic: str = "Minimum") -> list[float]:
    from datetime import UTC, datetime, timedelta

    cw = boto3.client("cloudwatch")
    now = datetime.now(UTC)
    stats = cw.get_metric_statistics(
        Namespace=METRIC_NAMESPACE,
        MetricName=name,
        Dimensions=[{"Name": "Server", "Value": "social"}],
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(minutes=5),
        Period=60,
        Statistics=[statistic],
    )
    return [p[statistic] for p in stats["Datapoints"]]


def test_the_drill_restores_the_newest_complete_dump_and_publishes_its_outcome(s3_env: dict[str, str]) -> None:
    publish = ["--publish", METRIC_NAMESPACE, "--server", "social"]
    for label in ("older", "newer"):
        proc = pgtask(["dump", "--to", f"s3://{BUCKET}/dumps/", "--label", label, *publish], s3_env)
        assert proc.returncode == 0, proc.stderr
    newest = result_of(proc)["location"]
    assert metric_values("BackupSucceeded") == [1.0]
    # a dump still being written (no manifest yet) is never the drill's choice
    boto3.client("s3").put_object(Bucket=BUCKET, Key="dumps/99991231T000000Z-unfinished.dump", Body=b"PGDMP")
    drill = pgtask(["verify", "--from", f"s3://{BUCKET}/dumps/", "--scratch", *publish], s3_env)
    assert drill.returncode == 0, drill.stderr
    assert result_of(drill)["location"] == newest
    assert metric_values("DrillSucceeded") == [1.0]
    (age,) = metric_values("BackupAgeSeconds")
    assert 0 <= age < 600
    failed = pgtask(["verify", "--from", f"s3://{BUCKET}/nothing/", "--scratch", *publish], s3_env)
    assert failed.returncode == 1 and "No complete dump" in failed.stderr
    assert min(metric_values("DrillSucceeded")) == 0.0 and max(metric_values("DrillSucceeded", "Maximum")) == 1.0


def test_check_runs_the_checks_on_the_connected_database(mastodon_db: Cluster) -> None:
    env = mastodon_db.env("mastodon_production")
    ok = pgtask(["check", "--expect-schema", SCHEMA_VERSION], env)
    assert ok.returncode == 0, ok.stderr
    assert result_of(ok)["counts"] == {"accounts": SEED_ACCOUNTS, "statuses": SEED_STATUSES}
    wrong = pgtask(["check", "--expect-schema", "20991231000000"], env)
    assert wrong.returncode == 1 and "expected 20991231000000" in wrong.stderr
    assert pgtask(["check"], mastodon_db.env("postgres")).returncode == 1


def test_switch_renames_the_verified_restore_into_place_and_keeps_the_old_database(workdir: Path) -> None:
    """A restore's switch (backup_jobs.switch_command): sessions on the live database are ended, the live
    database is kept under another name and the restored one takes its name, in one transaction."""
    import subprocess
    import time

    from tests.pg_support import BINDIR

    require_postgres()
    with cluster("pg-switch-") as c:
        seed_mastodon(c)
        dump = dump_to_file(c, workdir)
        c.sql("INSERT INTO accounts VALUES (900001, 'after-the-dump', NULL, '', now(), now())", "mastodon_production")
        restored = pgtask(["verify", "--from", str(dump), "--into", "mastodon_restored_1"], c.env())
        assert restored.returncode == 0, restored.stderr
        # a session still on the live database (a scheduled task, say) does not block the switch
        holder = subprocess.Popen(
            [str(BINDIR / "psql"), "-X", "-q", "-c", "SELECT pg_sleep(60)"],
            env=c.env("mastodon_production"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(50):
                if c.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'mastodon_production'") != [["0"]]:
                    break
                time.sleep(0.1)
            taken = pgtask(
                ["switch", "--restored", "mastodon_restored_1", "--keep-old-as", "mastodon_restored_1"], c.env()
            )
            assert taken.returncode == 1 and "exists already" in taken.stderr  # refused before renaming anything
            missing = pgtask(["switch", "--restored", "nope", "--keep-old-as", "kept_1"], c.env())
            assert missing.returncode == 1 and "no database nope" in missing.stderr
            proc = pgtask(
                ["switch", "--restored", "mastodon_restored_1", "--keep-old-as", "mastodon_production_before_1"],
                c.env("mastodon_production"),
            )
            assert proc.returncode == 0, proc.stderr
            assert result_of(proc) == {
                "ok": True,
                "database": "mastodon_production",
                "kept_as": "mastodon_production_before_1",
            }
        finally:
            holder.kill()
            holder.wait()
        live = "SELECT count(*) FROM accounts WHERE username = 'after-the-dump'"
        assert c.sql(live, "mastodon_production") == [["0"]]  # the restored data is live
        assert c.sql(live, "mastodon_production_before_1") == [["1"]]  # the old database is kept, as it was
        assert c.sql("SELECT count(*) FROM pg_database WHERE datname = 'mastodon_restored_1'") == [["0"]]
