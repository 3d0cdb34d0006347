"""`mastofargate backups`: restore points from RDS, AWS Backup and the backup bucket in one list.

RDS (instance, point-in-time window, snapshots), CloudFormation outputs and S3 come from a real moto server.
moto 5.2 has no ListRecoveryPointsByBackupVault (it answers 404), so AWS Backup's answer is given by
botocore's Stubber with the documented response shape, for that one client only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from mastofargate import aws
from mastofargate.cli import app
from mastofargate.config import Config
from mastofargate.deploy import backups
from mastofargate.target import Target
from tests.moto_server import _literal_stack, aws_endpoint, moto_server  # noqa: F401

BUCKET = "social-backups-123456789012-us-east-1"
VAULT_POINT = {
    "RecoveryPointArn": "arn:aws:backup:us-east-1:123456789012:recovery-point:abc",
    "BackupVaultName": "social-backups",
    "ResourceType": "RDS",
    "ResourceArn": "arn:aws:rds:us-east-1:123456789012:db:social-postgres",
    "Status": "COMPLETED",
    "CreationDate": datetime(2026, 11, 29, 5, 0, tzinfo=UTC),
    "CompletionDate": datetime(2026, 11, 29, 5, 12, tzinfo=UTC),
    "BackupSizeInBytes": 123456789,
}


@pytest.fixture
def stubbed_backup(aws_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:  # noqa: F811
    client = boto3.client("backup", region_name="us-east-1")
    stubber = Stubber(client)
    real = aws.client

    def client_for(service: str, region: str) -> Any:
        return client if service == "backup" else real(service, region)

    client_for.cache_clear = real.cache_clear  # type: ignore[attr-defined]  # aws_endpoint's teardown calls it
    monkeypatch.setattr(aws, "client", client_for)
    with stubber:
        yield stubber


def deployed(config: Config, *, rds: bool = True) -> Target:
    target = Target(config)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    _literal_stack(target, target.data_stack, {"BackupBucketName": BUCKET})
    manifest = {"label": "nightly", "schema_version": "20251117000000", "server_version": "17.6", "sha256": "ab" * 32}
    s3.put_object(Bucket=BUCKET, Key="dumps/20261128T030000Z-nightly.dump", Body=b"PGDMP" + b"x" * 2000)
    s3.put_object(Bucket=BUCKET, Key="dumps/20261128T030000Z-nightly.dump.json", Body=json.dumps(manifest))
    s3.put_object(Bucket=BUCKET, Key="dumps/20261129T030000Z-nightly.dump", Body=b"PGDMP" + b"y" * 10)  # unfinished
    s3.put_object(Bucket=BUCKET, Key="pgbackrest/archive/main/x", Body=b"wal")
    if rds:
        rdsc = boto3.client("rds")
        rdsc.create_db_instance(
            DBInstanceIdentifier="social-postgres",
            Engine="postgres",
            DBInstanceClass="db.t4g.micro",
            AllocatedStorage=20,
            MasterUsername="mastodon",
            MasterUserPassword="a-password-for-moto",
            BackupRetentionPeriod=7,
        )
        rdsc.create_db_snapshot(DBInstanceIdentifier="social-postgres", DBSnapshotIdentifier="before-v4-5-5")
    return target


def test_every_kind_lands_in_one_typed_list(stubbed_backup: Stubber, config_factory: Callable[..., Config]) -> None:
    stubbed_backup.add_response(
        "list_recovery_points_by_backup_vault", {"RecoveryPoints": [VAULT_POINT]}, {"BackupVaultName": "social-backups"}
    )
    target = deployed(config_factory())
    points = backups.restore_points(target)
    kinds = [p.kind for p in points]
    # moto, like RDS, also takes an automated snapshot when the instance is created
    assert sorted(set(kinds)) == ["aws-backup", "dump", "rds-pitr", "rds-snapshot"] and kinds.count("dump") == 2
    assert [p.time for p in points] == sorted((p.time for p in points), reverse=True)
    pitr = next(p for p in points if p.kind == "rds-pitr")
    assert pitr.earliest is not None and pitr.earliest <= pitr.time and pitr.size_bytes == 20 * 2**30
    snaps = {p.id: p for p in points if p.kind == "rds-snapshot"}
    assert snaps["before-v4-5-5"].detail["type"] == "manual" and snaps["before-v4-5-5"].usable
    vault = next(p for p in points if p.kind == "aws-backup")
    assert vault.time == VAULT_POINT["CompletionDate"] and vault.size_bytes == 123456789 and vault.usable
    dumps = {p.id: p for p in points if p.kind == "dump"}
    done = dumps[f"s3://{BUCKET}/dumps/20261128T030000Z-nightly.dump"]
    assert done.usable and done.size_bytes == 2005 and done.detail["schema_version"] == "20251117000000"
    assert not dumps[f"s3://{BUCKET}/dumps/20261129T030000Z-nightly.dump"].usable  # no manifest: incomplete
    newest = backups.newest(points)
    assert newest is not None and newest.usable and newest.kind in ("rds-pitr", "rds-snapshot")
    assert all(p.age() >= timedelta(0) for p in points)


def test_the_command_prints_a_table_and_json(
    stubbed_backup: Stubber, config_factory: Callable[..., Config], tmp_path: Any
) -> None:
    for _ in range(2):
        stubbed_backup.add_response("list_recovery_points_by_backup_vault", {"RecoveryPoints": [VAULT_POINT]})
    deployed(config_factory(), rds=False)
    config_file = tmp_path / "mastofargate.toml"
    config_file.write_text(
        '[server]\ndomain = "social.example.org"\nadmin_email = "admin@example.org"\n\n'
        '[aws]\nname = "social"\nregion = "us-east-1"\nhosted_zone_id = "Z0123456789EXAMPLE"\n'
    )
    table = CliRunner().invoke(app, ["backups", "-c", str(config_file)])
    assert table.exit_code == 0, table.output
    assert "KIND" in table.output and "aws-backup" in table.output and "incomplete (no manifest)" in table.output
    assert "2.0 KiB" in table.output and "Newest usable: dump" in table.output
    as_json = CliRunner().invoke(app, ["backups", "-c", str(config_file), "--json"])
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.output)
    assert {p["kind"] for p in doc["restore_points"]} == {"aws-backup", "dump"}
    assert doc["newest"]["id"] == f"s3://{BUCKET}/dumps/20261128T030000Z-nightly.dump"
    assert all(p["age_seconds"] >= 0 for p in doc["restore_points"])


def test_nothing_deployed_lists_nothing(stubbed_backup: Stubber, config_factory: Callable[..., Config]) -> None:
    stubbed_backup.add_client_error("list_recovery_points_by_backup_vault", "ResourceNotFoundException")
    assert backups.restore_points(Target(config_factory())) == []


def test_a_refusal_by_aws_is_an_error_not_a_shorter_list(
    stubbed_backup: Stubber, config_factory: Callable[..., Config]
) -> None:
    from mastofargate.errors import MastofargateError

    stubbed_backup.add_client_error("list_recovery_points_by_backup_vault", "AccessDeniedException", "no")
    with pytest.raises(MastofargateError, match="AccessDeniedException"):
        backups.restore_points(Target(config_factory(database="task")))
