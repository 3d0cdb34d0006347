"""A server deployed with issue 10's two KMS keys moves to issue 12's one key, losing nothing, on the emulator.

The emulator (`python -m sandbox`) behaves as CloudFormation does where this migration depends on it (see
sandbox/cloudformation.py): an update may not delete an export another stack imports (it rolls back), and a
resource removed from a template with DeletionPolicy Retain stays in the account. The stacks are small
stand-ins of the data and app stacks with exactly the parts that move: the two keys and their exports, and the
ECS cluster's Exec configuration and the Exec log group that import them. The product's own functions plan,
execute and settle the migration; the steps are `deploy`'s (deploy/flow.py), in its order.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from mastofargate.deploy import exec_key, exports, stacks
from mastofargate.deploy.context import Run
from tests.conftest import make_config, plain_run
from tests.deploy_sandbox import Sandbox, running_sandbox

pytestmark = pytest.mark.xdist_group("sandbox-emulator")

RETENTION = 14
EXEC_GROUP = "/mastofargate/social/exec"


def _key(description: str) -> dict[str, Any]:
    return {
        "Type": "AWS::KMS::Key",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "Description": description,
            "EnableKeyRotation": True,
            "PendingWindowInDays": 30,
            "KeyPolicy": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "AccountAdmin",
                        "Effect": "Allow",
                        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                        "Action": "kms:*",
                        "Resource": "*",
                    }
                ],
            },
        },
    }


def _export(key: str, logical: str) -> dict[str, Any]:
    return {"Value": {"Fn::GetAtt": [logical, "Arn"]}, "Export": {"Name": f"social-data:{key}"}}


OLD_DATA: dict[str, Any] = {
    "Resources": {"EncryptionKey": _key("data key"), "ExecKey": _key("ECS Exec key")},
    "Outputs": {"KeyArn": _export("KeyArn", "EncryptionKey"), "ExecKeyArn": _export("ExecKeyArn", "ExecKey")},
}
NEW_DATA: dict[str, Any] = {
    "Resources": {"EncryptionKey": _key("data key")},
    "Outputs": {"KeyArn": _export("KeyArn", "EncryptionKey")},
}


def _app(key: str) -> dict[str, Any]:
    imported = {"Fn::ImportValue": f"social-data:{key}"}
    return {
        "Resources": {
            "ExecLogGroup": {
                "Type": "AWS::Logs::LogGroup",
                "Properties": {"LogGroupName": EXEC_GROUP, "RetentionInDays": RETENTION, "KmsKeyId": imported},
            },
            "Cluster": {
                "Type": "AWS::ECS::Cluster",
                "Properties": {
                    "ClusterName": "social",
                    "Configuration": {
                        "ExecuteCommandConfiguration": {
                            "KmsKeyId": imported,
                            "Logging": "OVERRIDE",
                            "LogConfiguration": {
                                "CloudWatchLogGroupName": {"Ref": "ExecLogGroup"},
                                "CloudWatchEncryptionEnabled": True,
                            },
                        }
                    },
                },
            },
        }
    }


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("exec-key")) as sandbox:
        yield sandbox


@pytest.fixture
def run(emulator: Sandbox) -> Iterator[Run]:
    emulator.reset()
    yield plain_run(make_config())


def _apply(run: Run, stack: str, template: dict[str, Any], kind: stacks.Kind = "UPDATE") -> stacks.Plan:
    plan = stacks.create_change_set(run.target, stack, template, {}, kind=kind)
    if plan.has_changes:
        stacks.execute(run.target, plan, run.poller, timeout=60)
    run.target.stack_outputs(stack, refresh=True)
    return plan


def _deployed(run: Run) -> tuple[str, str]:
    """The two stacks as issue 10 deployed them; returns (data key ARN, exec key ARN)."""
    _apply(run, "social-data", OLD_DATA, "CREATE")
    _apply(run, "social-app", _app("ExecKeyArn"), "CREATE")
    out = run.target.stack_outputs("social-data", refresh=True)
    return out["KeyArn"], out["ExecKeyArn"]


def _status(stack: str) -> str:
    return str(boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"])


def _log_group_key() -> str:
    groups = boto3.client("logs").describe_log_groups(logGroupNamePrefix=EXEC_GROUP)["logGroups"]
    return str(groups[0].get("kmsKeyId", ""))


def test_the_emulator_refuses_to_drop_an_export_in_use_as_aws_does(run: Run) -> None:
    """Without the kept export, the data update fails and rolls back; the old key and the app are untouched."""
    _, old = _deployed(run)
    plan = stacks.create_change_set(run.target, "social-data", copy.deepcopy(NEW_DATA), {}, kind="UPDATE")
    with pytest.raises(Exception) as failed:
        stacks.execute(run.target, plan, run.poller, timeout=60)
    assert "social-data:ExecKeyArn cannot be deleted as it is in use by social-app" in str(failed.value.__dict__)
    assert _status("social-data") == "UPDATE_ROLLBACK_COMPLETE"
    assert run.target.stack_outputs("social-data", refresh=True)["ExecKeyArn"] == old


def test_the_deploy_moves_to_one_key_keeps_the_old_one_and_says_when_it_may_go(
    run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    data_key, old = _deployed(run)
    kms = boto3.client("kms")
    before = datetime.now(UTC)
    assert exec_key.settle(run, dry_run=False, remind=True) is None  # the app stack still uses it

    # plan: the data template keeps the imported export at its value; removing ExecKey is no data loss
    template = copy.deepcopy(NEW_DATA)
    kept = exports.keep_imported_exports(run.target, template, stacks.deployed_template(run.target, "social-app"))
    assert kept == ["social-data:ExecKeyArn"]
    assert template["Outputs"]["ExecKeyArn"]["Value"] == old
    plan = stacks.create_change_set(run.target, "social-data", template, {}, kind="UPDATE")
    assert [(c.action, c.logical_id) for c in plan.changes] == [("Remove", "ExecKey")]
    assert plan.losses == []
    stacks.refuse_data_loss([plan], allow=False)  # not refused
    assert "KEPT in the account" in "\n".join(plan.summary())
    stacks.execute(run.target, plan, run.poller, timeout=60)
    assert _status("social-data") == "UPDATE_COMPLETE"
    assert kms.describe_key(KeyId=old)["KeyMetadata"]["KeyState"] == "Enabled"  # Retain: still in the account
    assert exec_key.settle(run, dry_run=False, remind=True) is None  # not yet: the app stack imports it

    # the app stack moves to the one key
    _apply(run, "social-app", _app("KeyArn"))
    assert _status("social-app") == "UPDATE_COMPLETE"
    assert _log_group_key() == data_key
    ecs = boto3.client("ecs").describe_clusters(clusters=["social"], include=["CONFIGURATIONS"])["clusters"][0]
    assert ecs["configuration"]["executeCommandConfiguration"]["kmsKeyId"] == data_key

    # after the rollout: recorded, said, and the key is neither deleted nor scheduled for deletion
    capsys.readouterr()
    retired = exec_key.settle(run, dry_run=False, remind=False)
    assert retired is not None and retired.key_arn == old and retired.retention_days == RETENTION
    assert before <= retired.unused_since <= datetime.now(UTC)
    assert retired.safe_after == retired.unused_since + timedelta(days=RETENTION, hours=72, minutes=5)
    said = capsys.readouterr().err
    assert old in said and f"{retired.safe_after:%Y-%m-%d}" in said
    assert f"aws kms schedule-key-deletion --key-id {old} --pending-window-in-days 30" in said
    assert kms.describe_key(KeyId=old)["KeyMetadata"]["KeyState"] == "Enabled"
    assert not retired.safe(datetime.now(UTC)) and retired.safe(retired.safe_after)

    # the next deploys: nothing imports the export any more, so it is not kept. Dropping only an output is
    # no resource change (the deploy executes no change set without one), so it goes with the data stack's
    # next real change; meanwhile it names a key nothing uses, and costs nothing.
    template = copy.deepcopy(NEW_DATA)
    assert exports.keep_imported_exports(run.target, template, stacks.deployed_template(run.target, "social-app")) == []
    assert not _apply(run, "social-data", template).has_changes
    template["Resources"]["EncryptionKey"]["Properties"]["Description"] = "data key, described anew"
    assert _apply(run, "social-data", template).has_changes
    assert _status("social-data") == "UPDATE_COMPLETE"
    assert "ExecKeyArn" not in run.target.stack_outputs("social-data", refresh=True)
    again = exec_key.settle(run, dry_run=False, remind=True)
    assert again is not None and again.key_arn == old and again.unused_since == retired.unused_since
    assert old in capsys.readouterr().out
    assert kms.describe_key(KeyId=old)["KeyMetadata"]["KeyState"] == "Enabled"


def test_a_dry_run_records_nothing(run: Run) -> None:
    """A deploy cut short after the app stack moved is recorded by the next one; with --dry-run, only said."""
    _, old = _deployed(run)
    template = copy.deepcopy(NEW_DATA)
    exports.keep_imported_exports(run.target, template, stacks.deployed_template(run.target, "social-app"))
    _apply(run, "social-data", template)
    _apply(run, "social-app", _app("KeyArn"))
    assert exec_key.settle(run, dry_run=True, remind=True) is not None
    assert exec_key.read(run.target) is None
    ssm = boto3.client("ssm")
    assert not ssm.describe_parameters()["Parameters"]
    recorded = exec_key.settle(run, dry_run=False, remind=True)
    assert recorded is not None and recorded.key_arn == old
    value = json.loads(ssm.get_parameter(Name=exec_key.parameter(run.target))["Parameter"]["Value"])
    assert value["key_arn"] == old


def test_status_names_the_old_key_the_date_and_the_command(run: Run) -> None:
    from mastofargate.commands.status import _retired_exec_key, _retired_key_line

    _, old = _deployed(run)
    template = copy.deepcopy(NEW_DATA)
    exports.keep_imported_exports(run.target, template, stacks.deployed_template(run.target, "social-app"))
    _apply(run, "social-data", template)
    _apply(run, "social-app", _app("KeyArn"))
    assert _retired_exec_key(run.target) is None
    exec_key.settle(run, dry_run=False, remind=False)
    shown = _retired_exec_key(run.target)
    assert shown is not None
    assert shown["key_arn"] == old and shown["retention_days"] == RETENTION and not shown["safe_to_delete_now"]
    line = _retired_key_line({"retired_exec_key": shown}) or ""
    assert line.startswith("kms: old ECS Exec key") and shown["command"] in line
    # the retention is read when shown: a longer one moves the date (and 'never expire' says keep it)
    boto3.client("logs").put_retention_policy(logGroupName=EXEC_GROUP, retentionInDays=30)
    assert _retired_exec_key(run.target)["retention_days"] == 30  # type: ignore[index]
    boto3.client("logs").delete_retention_policy(logGroupName=EXEC_GROUP)
    forever = _retired_exec_key(run.target)
    assert forever is not None and forever["safe_to_delete_after"] is None and "keep it" in forever["note"]
    time.sleep(0)  # nothing waits on wall time here


def test_the_ci_deploy_role_may_make_every_call_of_the_migration(run: Run) -> None:
    """The deploy job in CI runs the migration with the CI deploy role (stack/ci.py): every call the retiring
    steps make is evaluated against that role with tests/iam_policy.py (AWS's rules, not AWS)."""
    from mastofargate.deploy.ci_roles import ci_roles_stack
    from tests.deploy_sandbox import recording
    from tests.iam_policy import decide, requests_for, role_policies

    _deployed(run)
    with recording() as calls:
        template = copy.deepcopy(NEW_DATA)
        exports.keep_imported_exports(run.target, template, stacks.deployed_template(run.target, "social-app"))
        assert exec_key.settle(run, dry_run=False, remind=True) is None
    _apply(run, "social-data", template)
    _apply(run, "social-app", _app("KeyArn"))
    with recording() as more:
        assert exec_key.settle(run, dry_run=False, remind=False) is not None
        assert exec_key.settle(run, dry_run=False, remind=True) is not None
    config = make_config({"ci": {"repository": "example/mastodon-infra"}})
    policies, _ = role_policies(
        ci_roles_stack(config).template,
        "DeployRole",
        {"GitHubOidcProvider": "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"},
    )
    recorded = calls.calls + more.calls
    assert {(c.service, c.operation) for c in recorded} >= {("ssm", "PutParameter"), ("cloudformation", "GetTemplate")}
    requests = [r for c in recorded for r in requests_for(c.service, c.operation, dict(c.params), {})]
    denied = [f"{r.call}: {r.action} {r.resource}" for r in requests if decide(policies, r) != "Allow"]
    assert denied == []


def test_only_the_retired_exec_key_may_leave_the_data_stack() -> None:
    """DESIGN invariant 3 stays: removing the retained ExecKey deletes nothing; any other key removed, or the
    ExecKey replaced, is still a data loss the deploy refuses."""

    def change(action: str, logical_id: str, rtype: str = "AWS::KMS::Key", replacement: str = "") -> stacks.Change:
        return stacks.Change(action, logical_id, rtype, replacement, "")

    assert not change("Remove", "ExecKey").loses_data
    assert "KEPT in the account" in change("Remove", "ExecKey").line()
    assert change("Modify", "ExecKey", replacement="True").loses_data
    assert change("Remove", "EncryptionKey").loses_data
    assert change("Remove", "ExecKey", "AWS::S3::Bucket").loses_data


def _migrated(run: Run) -> str:
    """A server moved to the one key (the deploy's steps); returns the old key's ARN."""
    _, old = _deployed(run)
    template = copy.deepcopy(NEW_DATA)
    exports.keep_imported_exports(run.target, template, stacks.deployed_template(run.target, "social-app"))
    _apply(run, "social-data", template)
    _apply(run, "social-app", _app("KeyArn"))
    assert exec_key.settle(run, dry_run=False, remind=False) is not None
    return old


def _backdate(run: Run, old: str, days: float) -> None:
    """The record as a deploy `days` ago would have written it (the emulator's clock cannot be moved)."""
    since = datetime.now(UTC) - timedelta(days=days)
    boto3.client("ssm").put_parameter(
        Name=exec_key.parameter(run.target),
        Value=json.dumps({"key_arn": old, "unused_since": since.isoformat()}),
        Type="String",
        Overwrite=True,
    )


def _config(tmp_path: Any) -> str:
    from tests.deploy_sandbox import write_config

    return str(write_config(tmp_path / "mastofargate.toml", "Z0123456789EXAMPLE"))


def test_retire_key_refuses_while_transcripts_may_remain_and_changes_nothing(run: Run, tmp_path: Any) -> None:
    from tests.deploy_sandbox import recording, run_cli

    old = _migrated(run)
    config = _config(tmp_path)
    kms = boto3.client("kms")
    _backdate(run, old, RETENTION + 2)  # expired, but not the 72 hours CloudWatch Logs may take to delete them
    with recording() as calls:
        result = run_cli("retire-key", "--config", config, "--yes")
    assert result.exit_code == 1, result.output
    assert "Not deleting" in result.output and "Nothing was changed" in result.output
    assert "retire-key' again after" in result.output and "Traceback" not in result.output
    assert calls.mutating() == []
    assert kms.describe_key(KeyId=old)["KeyMetadata"]["KeyState"] == "Enabled"


def test_retire_key_refuses_a_key_still_in_use(run: Run, tmp_path: Any) -> None:
    """A record naming a key the server still uses (the Exec log group's) is refused whatever its date."""
    from tests.deploy_sandbox import run_cli

    _migrated(run)
    data_key = run.target.stack_outputs("social-data", refresh=True)["KeyArn"]
    _backdate(run, data_key, RETENTION + 10)
    result = run_cli("retire-key", "--config", _config(tmp_path), "--yes")
    assert result.exit_code == 1, result.output
    assert "still in use" in result.output and f"log group {EXEC_GROUP} encrypts with it" in result.output
    assert "ECS Exec sessions use it" in result.output and "it is the key of social-data" in result.output
    assert boto3.client("kms").describe_key(KeyId=data_key)["KeyMetadata"]["KeyState"] == "Enabled"


def test_retire_key_schedules_the_deletion_once_safe_after_a_dry_run(run: Run, tmp_path: Any) -> None:
    from tests.deploy_sandbox import recording, run_cli

    old = _migrated(run)
    config = _config(tmp_path)
    kms = boto3.client("kms")
    _backdate(run, old, RETENTION + 4)
    with recording() as calls:
        dry = run_cli("retire-key", "--config", config, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Dry run: nothing was changed." in dry.output and calls.mutating() == []
    assert kms.describe_key(KeyId=old)["KeyMetadata"]["KeyState"] == "Enabled"

    done = run_cli("retire-key", "--config", config, "--yes")
    assert done.exit_code == 0, done.output
    meta = kms.describe_key(KeyId=old)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion"
    assert meta["DeletionDate"] - datetime.now(UTC) > timedelta(days=29)
    assert f"aws kms cancel-key-deletion --key-id {old}" in done.output
    shown = exec_key.read(run.target)
    assert shown is not None and shown.deletion_date is not None
    assert "scheduled for deletion on" in shown.describe(datetime.now(UTC))
    again = run_cli("retire-key", "--config", config, "--yes")  # nothing more to do, and says so
    assert again.exit_code == 0 and "scheduled for deletion on" in again.output
    data_key = run.target.stack_outputs("social-data", refresh=True)["KeyArn"]
    assert kms.describe_key(KeyId=data_key)["KeyMetadata"]["KeyState"] == "Enabled"


def test_retire_key_without_a_retired_key_does_nothing(run: Run, tmp_path: Any) -> None:
    from tests.deploy_sandbox import recording, run_cli

    with recording() as calls:
        result = run_cli("retire-key", "--config", _config(tmp_path), "--yes")
    assert result.exit_code == 0 and "nothing to delete" in result.output
    assert calls.mutating() == []
