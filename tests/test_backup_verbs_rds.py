"""`backup`, `backup verify`, `restore`, deploy's pre-upgrade backup and `status` on RDS, against the emulator.

One server (database = "rds") is deployed once for the module; the tests run in file order on one xdist
worker and build on each other's state. The emulator's RDS keeps snapshots and restored instances
`creating` for a moment (as AWS does, sandbox/backups.py), and its backup task answers pgtask.py's commands
with pgtask.py's JSON lines; `sandbox-baddata` in a snapshot id makes the instance restored from it fail its
checks, `sandbox-broken` makes a snapshot fail: the emulator's failures on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.backup_sandbox import DOMAIN, TAG_A, World, deploy, deployed_world, mutating, positions, push, run_tasks
from tests.deploy_sandbox import aws_env, recording, run_cli, service_images

pytestmark = pytest.mark.xdist_group("backup-rds")

INSTANCE = "social-postgres"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with deployed_world(tmp_path_factory.mktemp("backup-rds"), "rds") as w:
        yield w


def cli(world: World, *args: str) -> tuple[int, str]:
    result = run_cli(*args[:1], "--config", str(world.config), *args[1:]) if args[0] != "backup" else run_cli(*args)
    return result.exit_code, result.output


def rds_ids() -> set[str]:
    return {i["DBInstanceIdentifier"] for i in boto3.client("rds").describe_db_instances()["DBInstances"]}


def test_backup_wait_takes_a_snapshot_and_waits_until_it_is_available(world: World) -> None:
    with aws_env(world.sandbox.url), recording() as calls:
        result = run_cli("backup", "--config", str(world.config), "--wait", "--label", "first")
        listed = run_cli("backups", "--config", str(world.config), "--json")
    assert result.exit_code == 0, result.output
    created = calls.find("CreateDBSnapshot")
    assert len(created) == 1 and created[0].params["DBInstanceIdentifier"] == INSTANCE
    snapshot = created[0].params["DBSnapshotIdentifier"]
    assert snapshot.startswith("social-first-")
    # the emulator keeps it `creating` for a moment: the waiter polled until `available`
    assert len(calls.find("DescribeDBSnapshots")) >= 2
    assert f"snapshot {snapshot} is available" in result.output
    points = {p["id"]: p for p in json.loads(listed.output)["restore_points"]}
    assert points[snapshot]["kind"] == "rds-snapshot" and points[snapshot]["status"] == "available"


def test_backup_without_wait_says_what_runs_and_dry_run_changes_nothing(world: World) -> None:
    with aws_env(world.sandbox.url), recording() as calls:
        dry = run_cli("backup", "--config", str(world.config), "--dry-run")
        assert not mutating(calls)
        started = run_cli("backup", "--config", str(world.config), "--label", "nowait")
    assert dry.exit_code == 0 and "Would take: RDS snapshot of social-postgres" in dry.output
    assert started.exit_code == 0, started.output
    assert "is being created by RDS" in started.output
    assert not calls.find("DescribeDBSnapshots")  # did not wait


def test_a_bad_label_is_a_usage_error(world: World) -> None:
    with aws_env(world.sandbox.url), recording() as calls:
        result = run_cli("backup", "--config", str(world.config), "--label", "no spaces/here")
    assert result.exit_code == 2
    assert "--label" in result.output
    assert not calls.calls


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "latest"), "--confirm-domain"),  # no terminal, no --confirm-domain
        (("--from", "latest", "--confirm-domain", "other.example.org"), "is not social.example.org"),
        (("--from", "no-such-snapshot", "--confirm-domain", DOMAIN), "is not a restore point"),
        (("--to-time", "2001-01-01T00:00:00Z", "--confirm-domain", DOMAIN), "outside the restorable window"),
        (("--to-time", "yesterday", "--confirm-domain", DOMAIN), "is not a time"),
        (("--from", "latest", "--to-time", "latest", "--confirm-domain", DOMAIN), "exactly one of"),
    ],
)
def test_restore_refusals_change_nothing(world: World, args: tuple[str, ...], message: str) -> None:
    with aws_env(world.sandbox.url), recording() as calls:
        result = run_cli("restore", "--config", str(world.config), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not mutating(calls)


def test_restore_dry_run_prints_the_plan_and_changes_nothing(world: World) -> None:
    with aws_env(world.sandbox.url), recording() as calls:
        result = run_cli("restore", "--config", str(world.config), "--to-time", "latest", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "restore RDS instance social-postgres as of the latest restorable time into the NEW RDS instance" in (
        result.output
    )
    assert "rename RDS instance social-postgres -> social-postgres-before-restore-" in result.output
    assert not mutating(calls)


def test_a_restore_that_does_not_verify_switches_nothing(world: World) -> None:
    with aws_env(world.sandbox.url):
        rds = boto3.client("rds")
        rds.create_db_snapshot(DBInstanceIdentifier=INSTANCE, DBSnapshotIdentifier="social-sandbox-baddata-1")
        rds.get_waiter("db_snapshot_available").wait(
            DBSnapshotIdentifier="social-sandbox-baddata-1", WaiterConfig={"Delay": 1, "MaxAttempts": 30}
        )
        before = rds.describe_db_instances(DBInstanceIdentifier=INSTANCE)["DBInstances"][0]["DbiResourceId"]
        with recording() as calls:
            result = run_cli(
                "restore",
                "--config",
                str(world.config),
                "--from",
                "social-sandbox-baddata-1",
                "--confirm-domain",
                DOMAIN,
            )
        after = rds.describe_db_instances(DBInstanceIdentifier=INSTANCE)["DBInstances"][0]["DbiResourceId"]
        left = [i for i in rds_ids() if i.startswith("social-postgres-restored-")]
    assert result.exit_code == 1, result.output
    assert "did not verify; nothing was switched" in result.output, result.output
    assert "lacks Mastodon's tables" in result.output
    assert before == after
    assert len(left) == 1 and left[0] in result.output  # left for inspection, named
    assert not calls.find("ModifyDBInstance") and not calls.find("ExecuteChangeSet")
    assert not calls.find("CreateDBSnapshot")  # the pre-restore backup comes only after verification
    with aws_env(world.sandbox.url):
        boto3.client("rds").delete_db_instance(DBInstanceIdentifier=left[0], SkipFinalSnapshot=True)


def test_restore_from_a_snapshot_verifies_then_switches_by_renaming(world: World) -> None:
    with aws_env(world.sandbox.url):
        snapshot = next(
            p["id"]
            for p in json.loads(run_cli("backups", "--config", str(world.config), "--json").output)["restore_points"]
            if p["kind"] == "rds-snapshot" and p["id"].startswith("social-first-")
        )
        old = boto3.client("rds").describe_db_instances(DBInstanceIdentifier=INSTANCE)["DBInstances"][0]
        with recording() as calls:
            result = run_cli(
                "restore", "--config", str(world.config), "--from", snapshot, "--confirm-domain", DOMAIN, "--yes"
            )
        rds = boto3.client("rds")
        now = rds.describe_db_instances(DBInstanceIdentifier=INSTANCE)["DBInstances"][0]
        kept = [i for i in rds_ids() if i.startswith("social-postgres-before-restore-")]
        app = boto3.client("cloudformation").describe_stacks(StackName="social-app")["Stacks"][0]
        images = service_images()
    assert result.exit_code == 0, result.output
    # the restored instance now carries the live name; the old one is kept under another
    assert now["DbiResourceId"] != old["DbiResourceId"]
    assert now["DeletionProtection"] is True
    assert len(kept) == 1 and kept[0] in result.output
    assert "delete-db-instance" in result.output
    params = {p["ParameterKey"]: p["ParameterValue"] for p in app["Parameters"]}
    assert params["ServicesEnabled"] == "true"
    assert set(images.values()) >= {TAG_A}
    # the order: restore, check on the NEW instance, backup of the current one, stop, rename, start
    restore_at = positions(calls, "RestoreDBInstanceFromDBSnapshot")
    checks = [i for i in positions(calls, "RunTask") if "check" in str(calls.calls[i].params)]
    backup_at = positions(calls, "CreateDBSnapshot")
    changes = positions(calls, "ExecuteChangeSet")
    renames = positions(calls, "ModifyDBInstance")
    assert len(restore_at) == 1 and len(checks) == 1 and len(backup_at) == 1 and len(changes) == 2
    assert restore_at[0] < checks[0] < backup_at[0] < changes[0] < renames[0] < renames[1] < changes[1]
    # a snapshot may predate the owner role or its password: the setup runs on the restored instance before start
    setups = [
        i for i, (f, _, _) in zip(positions(calls, "RunTask"), run_tasks(calls), strict=True) if f == "social-dbsetup"
    ]
    assert len(setups) == 1 and renames[1] < setups[0] < changes[1]
    check_env = next(env for fam, cmd, env in run_tasks(calls) if "check" in cmd)
    assert check_env["PGHOST"].startswith("social-postgres-restored-")
    assert calls.calls[renames[0]].params == {
        "DBInstanceIdentifier": INSTANCE,
        "NewDBInstanceIdentifier": kept[0],
        "ApplyImmediately": True,
    }
    assert calls.calls[backup_at[0]].params["DBSnapshotIdentifier"].startswith("social-pre-restore-")


def test_the_next_deploy_keeps_the_restored_database(world: World) -> None:
    with aws_env(world.sandbox.url), recording() as calls:
        result = deploy(world.config, TAG_A, "--yes")
        outputs = boto3.client("cloudformation").describe_stacks(StackName="social-data")["Stacks"][0]["Outputs"]
    assert result.exit_code == 0, result.output
    assert "No changes" in result.output
    assert not calls.find("ModifyDBInstance")
    host = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "DatabaseHost")
    assert host.startswith(f"{INSTANCE}.")  # the name (and so the endpoint) the app stack imports is unchanged


def test_backup_verify_restores_into_a_throwaway_instance_and_deletes_it(world: World) -> None:
    with aws_env(world.sandbox.url), recording() as calls:
        result = run_cli("backup", "verify", "--config", str(world.config))
        status = run_cli("status", "--config", str(world.config), "--json")
    assert result.exit_code == 0, result.output
    restored = calls.find("RestoreDBInstanceFromDBSnapshot")
    deleted = calls.find("DeleteDBInstance")
    assert len(restored) == 1 and len(deleted) == 1
    throwaway = restored[0].params["DBInstanceIdentifier"]
    assert throwaway.startswith("social-postgres-drill-")
    assert deleted[0].params["DBInstanceIdentifier"] == throwaway
    assert "Drill passed" in result.output and "matches the running image" in result.output
    assert "rows: accounts 3, statuses 42" in result.output
    data = json.loads(status.output)
    assert data["backups"]["last_drill"]["succeeded"] is True
    assert data["backups"]["newest"]["kind"] in ("rds-pitr", "rds-snapshot")


def test_a_failing_drill_still_deletes_its_instance_and_fails(world: World) -> None:
    with aws_env(world.sandbox.url), recording() as calls:
        result = run_cli("backup", "verify", "--config", str(world.config), "--from", "social-sandbox-baddata-1")
        status = run_cli("status", "--config", str(world.config), "--json")
    assert result.exit_code == 1, result.output
    assert "The drill FAILED" in result.output
    throwaway = calls.find("RestoreDBInstanceFromDBSnapshot")[0].params["DBInstanceIdentifier"]
    assert [c.params["DBInstanceIdentifier"] for c in calls.find("DeleteDBInstance")] == [throwaway]
    data = json.loads(status.output)
    assert data["backups"]["last_drill"]["succeeded"] is False
    assert any("restore drill FAILED" in p for p in data["problems"])


def test_ctrl_c_during_the_drill_still_deletes_the_throwaway_instance(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C cannot reach a CLI run inside this process: it is simulated by KeyboardInterrupt raised where a
    real one would land, while the check task of the throw-away instance runs (ecs.run_one_off)."""
    from mastofargate.deploy import ecs

    real = ecs.run_one_off

    def interrupted(target, family, *args, **kwargs):  # type: ignore[no-untyped-def]
        if family == "social-backup":
            raise KeyboardInterrupt
        return real(target, family, *args, **kwargs)

    monkeypatch.setattr(ecs, "run_one_off", interrupted)
    with aws_env(world.sandbox.url), recording() as calls:
        result = run_cli("backup", "verify", "--config", str(world.config))
        left = [i for i in rds_ids() if i.startswith("social-postgres-drill-")]
    assert result.exit_code == 130, result.output
    throwaway = calls.find("RestoreDBInstanceFromDBSnapshot")[0].params["DBInstanceIdentifier"]
    assert [c.params["DBInstanceIdentifier"] for c in calls.find("DeleteDBInstance")] == [throwaway]
    assert left == []
    assert not calls.find("PutMetricData")  # an interrupted drill has no verdict


def test_an_upgrade_takes_a_backup_before_its_migrations(world: World) -> None:
    with aws_env(world.sandbox.url):
        push("v4.5.4-b2")
        with recording() as calls:
            result = deploy(world.config, "v4.5.4-b2", "--yes")
    assert result.exit_code == 0, result.output
    snap = positions(calls, "CreateDBSnapshot")
    pre = positions(calls, "RunTask", taskDefinition="social-migrate-pre")
    assert len(snap) == 1 and len(pre) == 1
    snapshot = calls.calls[snap[0]].params["DBSnapshotIdentifier"]
    assert snapshot.startswith("social-pre-v4-5-4-a1-to-v4-5-4-b2-")
    waited = [i for i in positions(calls, "DescribeDBSnapshots") if snap[0] < i < pre[0]]
    assert waited  # waited for before the migrations
    assert f"pre-upgrade backup: RDS snapshot {snapshot}" in result.output


def test_a_failed_pre_upgrade_backup_stops_the_deploy_before_anything_changed(world: World) -> None:
    broken = "v4.5.4-c3-sandbox-broken"
    with aws_env(world.sandbox.url):
        push(broken)
        with recording() as calls:
            result = deploy(world.config, broken, "--yes")
        images = service_images()
    assert result.exit_code == 1, result.output
    assert "pre-upgrade backup failed; nothing was changed" in result.output
    assert not positions(calls, "RunTask", taskDefinition="social-migrate-pre")
    assert not calls.find("ExecuteChangeSet")
    assert {images[s] for s in ("web", "streaming", "sidekiq")} == {"v4.5.4-b2"}


def test_a_dump_of_rds_restores_into_a_new_database_on_the_instance(world: World) -> None:
    """--dump: the portable kind of backup on RDS (to keep off AWS); restoring it swaps databases by name on
    the live instance, as for the Postgres task, and leaves the instances as they are."""
    with aws_env(world.sandbox.url):
        with recording() as calls:
            taken = run_cli("backup", "--config", str(world.config), "--wait", "--dump", "--label", "offsite")
        ((family, command, _),) = run_tasks(calls)
        points = json.loads(run_cli("backups", "--config", str(world.config), "--json").output)["restore_points"]
        location = next(p for p in points if p["kind"] == "dump")
        ids = rds_ids()
        with recording() as calls:
            result = run_cli(
                "restore",
                "--config",
                str(world.config),
                "--from",
                location["id"].rsplit("/", 1)[-1],
                "--confirm-domain",
                DOMAIN,
            )
        assert rds_ids() == ids
    assert taken.exit_code == 0, taken.output
    assert family == "social-backup" and "dump" in command
    assert location["kind"] == "dump" and location["detail"]["label"] == "offsite"
    assert result.exit_code == 0, result.output
    tasks = [c for _, c, _ in run_tasks(calls)]
    assert [i for i, c in enumerate(tasks) if "verify" in c] < [i for i, c in enumerate(tasks) if "switch" in c]
    assert not calls.find("RestoreDBInstanceFromDBSnapshot") and not positions(calls, "ModifyDBInstance")
    assert "kept as mastodon_production_before_restore_" in result.output and "RDS instance social-postgres" in (
        result.output
    )


def test_status_shows_the_newest_backup(world: World, tmp_path: Path) -> None:
    with aws_env(world.sandbox.url):
        result = run_cli("status", "--config", str(world.config))
    assert "backup: newest rds-" in result.output
    assert "drill: last FAILED" in result.output
