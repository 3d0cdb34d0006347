"""`backup`, `backup verify`, `restore`, deploy's pre-upgrade backup and `status` for the Postgres task, against
the emulator.

One server (database = "task") is deployed once for the module; the tests run in file order on one xdist
worker. The emulator's backup task answers pgtask.py's commands with pgtask.py's JSON lines and writes the
dumps and manifests into its S3 (sandbox/backups.py); tests/test_backup_tasks.py runs the same commands for
real against PostgreSQL. `sandbox-baddata` in a dump's key makes it fail to restore, `sandbox-broken` in a
dump's label (an image tag becomes one) makes pg_dump fail: the emulator's failures on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest

from tests.backup_sandbox import DOMAIN, World, deploy, deployed_world, mutating, positions, push, run_tasks
from tests.deploy_sandbox import aws_env, recording, run_cli, service_images

pytestmark = pytest.mark.xdist_group("backup-task")

BUCKET = "social-backups-123456789012-us-east-1"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with deployed_world(tmp_path_factory.mktemp("backup-task"), "task") as w:
        yield w


def dumps(world: World) -> list[dict]:
    listed = run_cli("backups", "--config", str(world.config), "--json")
    assert listed.exit_code == 0, listed.output
    return [p for p in json.loads(listed.output)["restore_points"] if p["kind"] == "dump"]


def test_backup_wait_dumps_into_the_backup_bucket_and_shows_the_result(world: World) -> None:
    with aws_env(world.sandbox.url), recording() as calls:
        result = run_cli("backup", "--config", str(world.config), "--wait", "--label", "first")
        listed = dumps(world)
    assert result.exit_code == 0, result.output
    ((family, command, _),) = run_tasks(calls)
    assert family == "social-backup"
    assert command[2:] == ["dump", "--to", f"s3://{BUCKET}/dumps/", "--label", "first"]
    assert "Backup complete: dump s3://" in result.output and "accounts 3, statuses 42" in result.output
    assert listed and listed[0]["status"] == "available" and listed[0]["detail"]["label"] == "first"


def test_backup_without_wait_starts_the_task_and_says_how_to_follow_it(world: World) -> None:
    with aws_env(world.sandbox.url), recording() as calls:
        result = run_cli("backup", "--config", str(world.config), "--label", "nowait")
    assert result.exit_code == 0, result.output
    assert len(calls.find("RunTask")) == 1 and not calls.find("DescribeTasks")
    assert "mastofargate logs backup" in result.output


def test_to_time_is_refused_for_the_postgres_task(world: World) -> None:
    with aws_env(world.sandbox.url), recording() as calls:
        result = run_cli("restore", "--config", str(world.config), "--to-time", "latest", "--confirm-domain", DOMAIN)
    assert result.exit_code == 2 and "Postgres task" in result.output
    assert not mutating(calls)


def test_restore_without_a_terminal_or_confirm_domain_does_nothing(world: World) -> None:
    with aws_env(world.sandbox.url), recording() as calls:
        result = run_cli("restore", "--config", str(world.config), "--from", "latest")
    assert result.exit_code == 2 and "--confirm-domain" in result.output
    assert not calls.calls


def test_a_dump_that_does_not_restore_switches_nothing(world: World) -> None:
    with aws_env(world.sandbox.url):
        s3 = boto3.client("s3")
        good = dumps(world)[0]["id"].removeprefix(f"s3://{BUCKET}/")
        bad = "dumps/20200101T000000Z-sandbox-baddata.dump"
        s3.copy_object(Bucket=BUCKET, Key=bad, CopySource={"Bucket": BUCKET, "Key": good})
        s3.copy_object(Bucket=BUCKET, Key=bad + ".json", CopySource={"Bucket": BUCKET, "Key": good + ".json"})
        with recording() as calls:
            result = run_cli(
                "restore", "--config", str(world.config), "--from", f"s3://{BUCKET}/{bad}", "--confirm-domain", DOMAIN
            )
    assert result.exit_code == 1, result.output
    assert "did not verify; nothing was switched" in result.output and "does not restore" in result.output
    assert not calls.find("ExecuteChangeSet")
    assert [c for f, c, _ in run_tasks(calls) if "switch" in c] == []
    assert [c for f, c, _ in run_tasks(calls) if "dump" in c] == []  # no pre-restore backup either


def test_restore_of_a_dump_verifies_into_a_new_database_then_switches(world: World) -> None:
    with aws_env(world.sandbox.url):
        newest = next(p["id"] for p in dumps(world) if p["detail"].get("label") == "first")
        with recording() as calls:
            result = run_cli("restore", "--config", str(world.config), "--from", newest, "--confirm-domain", DOMAIN)
        app = boto3.client("cloudformation").describe_stacks(StackName="social-app")["Stacks"][0]
    assert result.exit_code == 0, result.output
    tasks = run_tasks(calls)
    verify = next(i for i, (_, c, _) in enumerate(tasks) if "verify" in c)
    dump = next(i for i, (_, c, _) in enumerate(tasks) if "dump" in c)
    switch = next(i for i, (_, c, _) in enumerate(tasks) if "switch" in c)
    assert verify < dump < switch
    verify_cmd = tasks[verify][1]
    assert verify_cmd[verify_cmd.index("--from") + 1] == newest
    assert verify_cmd[verify_cmd.index("--into") + 1].startswith("mastodon_restored_")
    assert verify_cmd[verify_cmd.index("--expect-schema") + 1] == "20260805130216"
    assert "--scratch" not in verify_cmd
    switch_cmd = tasks[switch][1]
    assert switch_cmd[switch_cmd.index("--database") + 1] == "mastodon_production"
    assert switch_cmd[switch_cmd.index("--keep-old-as") + 1].startswith("mastodon_production_before_restore_")
    # services stopped before the switch and started after it
    run_at = positions(calls, "RunTask")
    changes = positions(calls, "ExecuteChangeSet")
    assert len(changes) == 2 and run_at[dump] < changes[0] < run_at[switch] < changes[1]
    # the restored database (pg_restore --no-owner: the master's) passes to Mastodon's owner role before start
    setup = [i for i, (f, _, _) in enumerate(tasks) if f == "social-dbsetup"]
    assert len(setup) == 1 and run_at[switch] < run_at[setup[0]] < changes[1]
    assert {p["ParameterKey"]: p["ParameterValue"] for p in app["Parameters"]}["ServicesEnabled"] == "true"
    assert "kept as mastodon_production_before_restore_" in result.output and "DROP DATABASE" in result.output


def test_backup_verify_runs_the_drill_in_a_scratch_cluster_and_status_shows_it(world: World) -> None:
    with aws_env(world.sandbox.url), recording() as calls:
        result = run_cli("backup", "verify", "--config", str(world.config))
        status = run_cli("status", "--config", str(world.config), "--json")
    assert result.exit_code == 0, result.output
    (command,) = [c for _, c, _ in run_tasks(calls) if "verify" in c]
    assert "--scratch" in command and command[command.index("--server") + 1] == "social"
    assert "Drill passed" in result.output
    data = json.loads(status.output)
    assert data["backups"]["newest"]["kind"] == "dump"
    assert data["backups"]["last_drill"]["succeeded"] is True
    assert not any("backup" in p or "drill" in p for p in data["problems"])


def test_an_upgrade_dumps_before_its_migrations(world: World) -> None:
    with aws_env(world.sandbox.url):
        push("v4.5.4-b2")
        with recording() as calls:
            result = deploy(world.config, "v4.5.4-b2", "--yes")
    assert result.exit_code == 0, result.output
    tasks = run_tasks(calls)
    dump = next(i for i, (f, c, _) in enumerate(tasks) if f == "social-backup" and "dump" in c)
    pre = next(i for i, (f, _, _) in enumerate(tasks) if f == "social-migrate-pre")
    assert dump < pre
    assert tasks[dump][1][tasks[dump][1].index("--label") + 1] == "pre-v4.5.4-a1-to-v4.5.4-b2"
    assert "pre-upgrade backup: dump s3://" in result.output


def test_a_failed_pre_upgrade_dump_stops_the_deploy_before_anything_changed(world: World) -> None:
    broken = "v4.5.4-c3-sandbox-broken"
    with aws_env(world.sandbox.url):
        push(broken)
        with recording() as calls:
            result = deploy(world.config, broken, "--yes")
        images = service_images()
    assert result.exit_code == 1, result.output
    assert "pre-upgrade backup failed; nothing was changed" in result.output and "pg_dump failed" in result.output
    assert not [f for f, _, _ in run_tasks(calls) if f == "social-migrate-pre"]
    assert not calls.find("ExecuteChangeSet")
    assert {images[s] for s in ("web", "streaming", "sidekiq")} == {"v4.5.4-b2"}


def test_an_upgrade_from_an_app_stack_without_the_backup_task_warns_and_goes_on(world: World) -> None:
    """An app stack deployed by an older mastofargate has no backup task until the update that adds it: the
    pre-upgrade dump cannot run, which the deploy says, and the upgrade itself is not blocked."""
    with aws_env(world.sandbox.url):
        ecs = boto3.client("ecs")
        for arn in ecs.list_task_definitions(familyPrefix="social-backup", status="ACTIVE")["taskDefinitionArns"]:
            ecs.deregister_task_definition(taskDefinition=arn)
        push("v4.5.4-d4")
        with recording() as calls:
            result = deploy(world.config, "v4.5.4-d4", "--yes")
    assert result.exit_code == 0, result.output
    assert "no pre-upgrade backup: the app stack has no backup task yet" in result.output
    assert "pre-upgrade backup NOT taken" in result.output
    assert not [f for f, _, _ in run_tasks(calls) if f == "social-backup"]
