"""The stack side of backups (issue 11): the `{name}-backup` task definition the verbs run, its schedules and
alarms, and how the deploy settles the backup image's tag.

Templates are checked as generated for every shape (cfn-lint and checkov run over them in test_lint.py);
the tag lookup runs against a real moto server's ECR (AWS's describe_images, paginated).
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from mastofargate.deploy.backup_jobs import drill_command, dump_command
from mastofargate.deploy.options import ImageChoice, Tags
from mastofargate.deploy.preflight import requested_tags, settle_backup_tag, tags_from_images_json
from mastofargate.errors import UsageError
from mastofargate.stack import backup_tasks
from mastofargate.stack.backups import METRIC_NAMESPACE
from mastofargate.stack.pgbackrest import PGTASK_PATH
from tests.conftest import COMBINATIONS, combo_id, make_config, plain_run
from tests.moto_server import aws_endpoint, moto_server  # noqa: F401
from tests.test_templates import stacks

combos = pytest.mark.parametrize("combo", COMBINATIONS, ids=[combo_id(c) for c in COMBINATIONS])


def _app(combo: tuple) -> dict[str, Any]:
    return stacks(combo)["app"]


@combos
def test_the_backup_task_definition_is_the_contract_the_verbs_run(combo: tuple) -> None:
    profile, database, _, arch, *_ = combo
    app = _app(combo)
    td = app["Resources"]["BackupTaskDefinition"]["Properties"]
    assert td["Family"] == "social-backup"
    assert td["TaskRoleArn"] == {"Fn::GetAtt": ["BackupTaskRole", "Arn"]}
    assert td["RuntimePlatform"]["CpuArchitecture"] == ("ARM64" if arch == "arm64" else "X86_64")
    size = make_config(profile=profile).profile.backup
    assert (int(td["Cpu"]), int(td["Memory"])) == (size.cpu, size.memory)
    assert 21 <= td["EphemeralStorage"]["SizeInGiB"] <= 200
    (c,) = td["ContainerDefinitions"]
    assert c["Name"] == "backup"
    assert c["Image"] == {
        "Fn::Join": ["", [{"Fn::ImportValue": "social-data:BackupRepositoryUri"}, ":", {"Ref": "BackupImageTag"}]]
    }
    env = {e["Name"]: e["Value"] for e in c["Environment"]}
    # RDS's endpoint, or the Cloud Map name of the task holding Postgres (its own, or the one task `server`)
    pg_task = "server" if combo[6] == "one-task" else "postgres"
    host = {"Fn::ImportValue": "social-data:DatabaseHost"} if database == "rds" else f"{pg_task}.social.internal"
    assert env["PGHOST"] == host and env["PGPORT"] == "5432" and env["PGSSLMODE"] == "require"
    assert env["PGDATABASE"] == "mastodon_production" and env["PGUSER"] == "mastodon"
    assert env["BACKUP_BUCKET"] == {"Fn::ImportValue": "social-data:BackupBucketName"}
    assert [s["Name"] for s in c["Secrets"]] == ["PGPASSWORD"]
    assert c["Secrets"][0]["ValueFrom"] == {"Fn::Join": ["", [{"Ref": "SecretArn"}, ":database_password::"]]}
    assert not any("PASS" in k or "KEY" in k for k in env), "no secret in plain environment"
    # read-only root; the scratch bind mount is the one writable path, and the drill's Postgres is not root
    assert c["ReadonlyRootFilesystem"] is True and c["User"] == "999:999"
    assert c["MountPoints"] == [{"ContainerPath": "/scratch", "ReadOnly": False, "SourceVolume": "scratch"}]
    assert td["Volumes"] == [{"Name": "scratch"}] and env["TMPDIR"] == "/scratch"
    assert c["Command"] == ["python3", PGTASK_PATH, "check"]
    assert app["Outputs"]["BackupTaskDefinition"]["Value"] == {"Ref": "BackupTaskDefinition"}
    assert app["Parameters"]["BackupImageTag"]["Type"] == "String"


@combos
def test_nightly_dump_and_monthly_drill_run_the_verbs_commands(combo: tuple) -> None:
    resources = _app(combo)["Resources"]
    expected = {
        "BackupDumpSchedule": (backup_tasks.DUMP_SCHEDULE, dump_command("${Bucket}", "nightly", server="social")),
        "RestoreDrillSchedule": (backup_tasks.DRILL_SCHEDULE, drill_command("${Bucket}", "social")),
    }
    assert backup_tasks.DUMP_SCHEDULE == "cron(15 2 * * ? *)" and backup_tasks.DRILL_SCHEDULE == "cron(30 6 1 * ? *)"
    for title, (expression, command) in expected.items():
        props = resources[title]["Properties"]
        assert props["ScheduleExpression"] == expression and props["ScheduleExpressionTimezone"] == "UTC"
        target = props["Target"]
        text, variables = target["Input"]["Fn::Sub"]
        assert variables == {"Bucket": {"Fn::ImportValue": "social-data:BackupBucketName"}}
        assert json.loads(text) == {"containerOverrides": [{"command": command, "name": "backup"}]}
        ecs = target["EcsParameters"]
        assert ecs["TaskDefinitionArn"] == {"Ref": "BackupTaskDefinition"}
        # never Spot: an interrupted backup is a missing backup
        assert ecs["CapacityProviderStrategy"] == [{"CapacityProvider": "FARGATE", "Weight": 1}]
        assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}
        assert target["RoleArn"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
    assert "--publish" in expected["BackupDumpSchedule"][1] and "--scratch" in expected["RestoreDrillSchedule"][1]


@combos
def test_alarms_mail_a_failed_drill_and_a_backup_older_than_the_schedule_allows(combo: tuple) -> None:
    resources = _app(combo)["Resources"]
    missing = resources["BackupMissingAlarm"]["Properties"]
    assert (missing["Namespace"], missing["MetricName"]) == (METRIC_NAMESPACE, "BackupSucceeded")
    assert missing["Dimensions"] == [{"Name": "Server", "Value": "social"}]
    assert missing["TreatMissingData"] == "breaching"  # no dump at all is what it is there to notice
    hours = missing["Period"] * missing["EvaluationPeriods"] / 3600
    assert hours == backup_tasks.BACKUP_ALARM_HOURS == 26 and missing["DatapointsToAlarm"] == 26
    # CloudWatch: periods of an hour or more may evaluate up to 7 days
    assert missing["Period"] >= 3600 and missing["Period"] * missing["EvaluationPeriods"] <= 7 * 86400
    assert (missing["ComparisonOperator"], missing["Threshold"]) == ("LessThanThreshold", 1)
    drill = resources["DrillFailedAlarm"]["Properties"]
    assert (drill["MetricName"], drill["Statistic"], drill["TreatMissingData"]) == (
        "DrillSucceeded",
        "Minimum",
        "ignore",
    )
    archive = resources.get("WalArchiveFailingAlarm", {}).get("Properties")
    assert (archive is not None) == (combo[1] == "task"), "only the Postgres task archives WAL itself"
    if archive:
        assert (archive["MetricName"], archive["Statistic"], archive["TreatMissingData"]) == (
            "WalArchiveFailing",
            "Maximum",
            "breaching",  # a keeper that stopped reporting is as bad as a failing archive
        )
        assert archive["Period"] * archive["EvaluationPeriods"] == backup_tasks.ARCHIVE_ALARM_MINUTES * 60
        assert (archive["ComparisonOperator"], archive["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
        postgres = next(
            c
            for r in resources.values()
            if r["Type"] == "AWS::ECS::TaskDefinition"
            for c in r["Properties"]["ContainerDefinitions"]
            if c["Name"] == "postgres"
        )
        env = {e["Name"]: e["Value"] for e in postgres["Environment"]}
        assert env["POSTGRES_METRICS_NAMESPACE"] == METRIC_NAMESPACE and env["POSTGRES_METRICS_SERVER"] == "social"
    for alarm in (missing, drill, *([archive] if archive else [])):
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}] == alarm["OKActions"]


# ------------------------------------------------------------------------------------------ the image tag


def test_tags_compare_by_the_two_mastodon_images_only() -> None:
    """A release is the two Mastodon tags: a new backup image alone runs no migrations and is no rollback
    target of its own."""
    assert Tags("a", "b", "pg17-1") == Tags("a", "b", "pg17-2") == Tags("a", "b")
    assert Tags("a", "b", "pg17-1").describe() == "mastodon a, streaming b"  # "the previous version ..." messages
    deployed = Tags("v1", "v1", "pg17-old")
    assert requested_tags(ImageChoice(mastodon_tag="v2", streaming_tag="v2"), deployed).backup == "pg17-old"


def test_images_json_may_name_the_backup_image(tmp_path) -> None:
    path = tmp_path / "images.json"
    path.write_text(json.dumps({"mastodon": "r/m:v2", "streaming": "r/s:v2", "backup": "r/b:pg17-abc"}))
    assert tags_from_images_json(path) == Tags("v2", "v2") and tags_from_images_json(path).backup == "pg17-abc"
    path.write_text(json.dumps({"mastodon": "r/m:v2", "streaming": "r/s:v2"}))  # an older push: still fine
    assert tags_from_images_json(path).backup == ""


def _push(ecr: Any, tag: str) -> None:
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 2,
            "digest": "sha256:" + tag.encode().hex().ljust(64, "0")[:64],
        },
        "layers": [],
    }
    ecr.put_image(repositoryName="social/backup", imageTag=tag, imageManifest=json.dumps(manifest))


def test_without_a_backup_tag_the_newest_pushed_backup_image_is_used(aws_endpoint: str) -> None:  # noqa: F811
    import time

    target = plain_run(make_config()).target
    ecr = boto3.client("ecr")
    with pytest.raises(UsageError, match="backup image is not in social/backup") as refused:
        settle_backup_tag(target, Tags("v1", "v1"))
    assert "mastofargate images push" in str(refused.value.fix)
    ecr.create_repository(repositoryName="social/backup")
    with pytest.raises(UsageError, match="backup image is not in social/backup"):
        settle_backup_tag(target, Tags("v1", "v1"))
    _push(ecr, "pg17-older")
    time.sleep(1.1)  # ECR's push times have a resolution of a second
    _push(ecr, "pg17-newer")
    assert settle_backup_tag(target, Tags("v1", "v1")).backup == "pg17-newer"
    assert settle_backup_tag(target, Tags("v1", "v1", "pg17-given")).backup == "pg17-given"  # given wins


def test_the_keeper_counts_only_full_backups() -> None:
    """pgtask.py pgbackrest-keeper decides from `pgbackrest info --output=json` (shape of pgBackRest 2.45);
    differential and incremental backups do not reset the weekly full backup's clock."""
    import importlib.util
    import sys

    from tests.pg_support import PGTASK

    spec = importlib.util.spec_from_file_location("pgtask", PGTASK)
    assert spec and spec.loader
    task = importlib.util.module_from_spec(spec)
    sys.modules["pgtask"] = task
    spec.loader.exec_module(task)
    info = [
        {
            "name": "main",
            "backup": [
                {"type": "full", "timestamp": {"start": 1000, "stop": 1100}},
                {"type": "diff", "timestamp": {"start": 5000, "stop": 5100}},
                {"type": "full", "timestamp": {"start": 2000, "stop": 2100}},
                {"type": "incr", "timestamp": {"start": 9000, "stop": 9100}},
            ],
        }
    ]
    assert task.newest_full_backup(info) == 2100
    assert task.newest_full_backup([{"name": "main", "backup": []}]) is None
    assert task.newest_full_backup([]) is None
