"""stacks.py: change sets against a real moto server; CloudFormation's end states through botocore's Stubber.

moto applies a change set synchronously and never ends in ROLLBACK_COMPLETE, UPDATE_ROLLBACK_FAILED or a
stack still IN_PROGRESS, so those verdicts are tested with CloudFormation responses stubbed (Stubber on
the tool's own cached client): the stubbed part is the CloudFormation API's answers, nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from mastofargate import aws
from mastofargate.config import Config
from mastofargate.deploy import stacks
from mastofargate.deploy.polling import Poller, SystemClock
from mastofargate.errors import MastofargateError
from mastofargate.target import Target
from tests.moto_server import aws_endpoint, moto_server  # noqa: F401

STACK = "social-app"
POLLER = Poller(SystemClock(), 0.0)
STACK_ID = f"arn:aws:cloudformation:us-east-1:123456789012:stack/{STACK}/abc"
TEMPLATE = {
    "Resources": {
        "Topic": {"Type": "AWS::SNS::Topic", "Metadata": {"Description": "Alarm notifications"}},
        "Bucket": {"Type": "AWS::S3::Bucket", "Metadata": {"Description": "Private media bucket"}},
    }
}


# --- plans (pure) --------------------------------------------------------------------------------------


def change(action: str, rtype: str, replacement: str = "", logical_id: str = "Thing") -> stacks.Change:
    return stacks.Change(action, logical_id, rtype, replacement, f"the {logical_id}")


def test_replacing_or_removing_data_is_shown_loudly_and_refused() -> None:
    plan = stacks.Plan(
        "social-data",
        "UPDATE",
        [
            change("Modify", "AWS::RDS::DBInstance", "True", "Database"),
            change("Remove", "AWS::S3::Bucket", "", "MediaBucket"),
            change("Modify", "AWS::EC2::SecurityGroup", "True", "TaskSecurityGroup"),
            change("Modify", "AWS::ElastiCache::ReplicationGroup", "False", "Cache"),
        ],
        {},
        {},
    )
    assert [c.logical_id for c in plan.losses] == ["Database", "MediaBucket"]
    text = "\n".join(plan.summary())
    assert "!!! DATA LOSS: Database (database) would be REPLACED" in text
    assert "!!! DATA LOSS: MediaBucket (bucket) would be REMOVED" in text
    assert "~ TaskSecurityGroup [AWS::EC2::SecurityGroup] (REPLACED)" in text
    assert plan.counts() == "0 to add, 3 to modify, 1 to remove"
    with pytest.raises(MastofargateError) as err:
        stacks.refuse_data_loss([plan], allow=False)
    assert err.value.exit_code == 2 and "Nothing was changed" in err.value.what
    assert "Database" in err.value.why and "--allow-data-replacement" in err.value.fix
    stacks.refuse_data_loss([plan], allow=True)


def test_a_conditional_replacement_of_data_counts_as_a_loss() -> None:
    plan = stacks.Plan("d", "UPDATE", [change("Modify", "AWS::EFS::FileSystem", "Conditional")], {}, {})
    assert plan.losses and "may be" in "\n".join(plan.summary())


def test_a_new_stack_is_planned_from_its_template_with_descriptions() -> None:
    plan = stacks.template_plan("social-data", TEMPLATE, {})
    assert plan.kind == "CREATE" and plan.change_set_id is None
    assert [c.line() for c in plan.changes] == [
        "+ Bucket [AWS::S3::Bucket]: Private media bucket",
        "+ Topic [AWS::SNS::Topic]: Alarm notifications",
    ]


# --- change sets against moto --------------------------------------------------------------------------


@pytest.fixture
def target(aws_endpoint: str, config_factory: Callable[..., Config]) -> Target:  # noqa: F811
    return Target(config_factory())


def test_a_large_template_goes_through_the_deploy_bucket(target: Target) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="deploy-bucket")
    plan = stacks.create_change_set(target, STACK, TEMPLATE, {}, kind="CREATE", bucket="deploy-bucket")
    digest = hashlib.sha256(json.dumps(TEMPLATE, sort_keys=True).encode()).hexdigest()
    key = f"templates/{STACK}/{digest}.json"
    assert plan.template_url == f"https://deploy-bucket.s3.us-east-1.amazonaws.com/{key}"
    assert json.loads(s3.get_object(Bucket="deploy-bucket", Key=key)["Body"].read()) == TEMPLATE
    assert {c.logical_id for c in plan.changes} == {"Topic", "Bucket"}
    assert {c.description for c in plan.changes} == {"Alarm notifications", "Private media bucket"}
    stacks.discard(target, plan)
    assert stacks.read_state(target, STACK) is None  # the empty REVIEW_IN_PROGRESS stack went too


def test_no_changes_is_not_an_error_and_leaves_no_change_set(target: Target) -> None:
    cfn = boto3.client("cloudformation")
    cfn.create_stack(StackName=STACK, TemplateBody=json.dumps(TEMPLATE, sort_keys=True))
    plan = stacks.create_change_set(target, STACK, TEMPLATE, {}, kind="UPDATE")
    assert not plan.has_changes and plan.change_set_id is None
    assert plan.summary() == [f"{STACK}: no changes"]
    assert cfn.list_change_sets(StackName=STACK)["Summaries"] == []


def test_a_template_too_large_to_pass_inline_without_a_bucket_is_refused(target: Target) -> None:
    big = {"Resources": TEMPLATE["Resources"], "Metadata": {"pad": "x" * stacks.TEMPLATE_BODY_LIMIT}}
    with pytest.raises(MastofargateError, match="at most 51200 inline"):
        stacks.create_change_set(target, STACK, big, {}, kind="CREATE")


# --- end states (Stubber) ------------------------------------------------------------------------------


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch, config_factory: Callable[..., Config]) -> Iterator[tuple[Target, Stubber]]:
    """The tool's own CloudFormation client with stubbed responses (no network)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never reached: every call is stubbed
    aws.reset_clients()
    client = aws.client("cloudformation", "us-east-1")
    with Stubber(client) as stubber:
        yield Target(config_factory()), stubber
        stubber.assert_no_pending_responses()
    aws.reset_clients()


T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def event(n: int, logical_id: str, status: str, reason: str = "", rtype: str = "AWS::ECS::Service") -> dict[str, Any]:
    return {
        "StackId": STACK_ID,
        "EventId": f"e{n}",
        "StackName": STACK,
        "LogicalResourceId": logical_id,
        "ResourceType": rtype,
        "Timestamp": T0 + timedelta(seconds=n),
        "ResourceStatus": status,
        "ResourceStatusReason": reason,
    }


def stack(status: str) -> dict[str, Any]:
    return {"Stacks": [{"StackName": STACK, "StackId": STACK_ID, "CreationTime": T0, "StackStatus": status}]}


def expect_execution(stubber: Stubber, final: str, events: list[dict[str, Any]]) -> stacks.Plan:
    old = [event(0, STACK, "UPDATE_COMPLETE", rtype="AWS::CloudFormation::Stack")]
    stubber.add_response("describe_stack_events", {"StackEvents": old}, {"StackName": STACK})
    stubber.add_response("execute_change_set", {}, {"ChangeSetName": "cs-1"})
    stubber.add_response("describe_stacks", stack(final), {"StackName": STACK})
    stubber.add_response("describe_stack_events", {"StackEvents": list(reversed(events)) + old}, {"StackName": STACK})
    template = {"Resources": {"WebService": {"Type": "AWS::ECS::Service", "Metadata": {"Description": "Mastodon web"}}}}
    return stacks.Plan(STACK, "UPDATE", [change("Modify", "AWS::ECS::Service")], {}, template, "cs-1")


def test_a_failed_update_that_rolled_back_exits_1_naming_the_reason(stub: tuple[Target, Stubber]) -> None:
    target, stubber = stub
    plan = expect_execution(
        stubber,
        "UPDATE_ROLLBACK_COMPLETE",
        [
            event(1, STACK, "UPDATE_IN_PROGRESS", rtype="AWS::CloudFormation::Stack"),
            event(2, "WebTaskDefinition", "UPDATE_FAILED", "Resource update cancelled", "AWS::ECS::TaskDefinition"),
            event(3, "WebService", "UPDATE_FAILED", "ECS Deployment Circuit Breaker was triggered"),
            event(4, STACK, "UPDATE_ROLLBACK_COMPLETE", rtype="AWS::CloudFormation::Stack"),
        ],
    )
    seen: list[str] = []
    with pytest.raises(MastofargateError) as err:
        stacks.execute(target, plan, POLLER, timeout=60, on_event=lambda e: seen.append(e.logical_id))
    assert err.value.exit_code == 1
    assert "failed at WebService (Mastodon web)" in err.value.what
    assert err.value.why == "ECS Deployment Circuit Breaker was triggered"
    assert "mastofargate deploy" in err.value.fix
    assert seen == [STACK, "WebTaskDefinition", "WebService", STACK]  # only new events, oldest first


def test_a_failed_first_creation_says_to_delete_the_stack(stub: tuple[Target, Stubber]) -> None:
    target, stubber = stub
    plan = expect_execution(
        stubber,
        "ROLLBACK_COMPLETE",
        [event(1, "Certificate", "CREATE_FAILED", "Validation timed out", "AWS::CertificateManager::Certificate")],
    )
    with pytest.raises(MastofargateError) as err:
        stacks.execute(target, plan, POLLER, timeout=60)
    assert err.value.exit_code == 1
    assert err.value.why == "Validation timed out"
    assert f"delete-stack --stack-name {STACK}" in err.value.fix


def test_a_stack_stuck_in_update_rollback_failed_exits_4_with_the_next_step(stub: tuple[Target, Stubber]) -> None:
    target, stubber = stub
    plan = expect_execution(
        stubber,
        "UPDATE_ROLLBACK_FAILED",
        [event(1, "WebService", "UPDATE_FAILED", "Service was deleted by hand")],
    )
    with pytest.raises(MastofargateError) as err:
        stacks.execute(target, plan, POLLER, timeout=60)
    assert err.value.exit_code == 4
    assert "stuck in UPDATE_ROLLBACK_FAILED" in err.value.what
    assert err.value.why == "Service was deleted by hand"
    assert f"continue-update-rollback --stack-name {STACK}" in err.value.fix


def test_a_stack_still_in_progress_at_the_timeout_exits_3(stub: tuple[Target, Stubber]) -> None:
    target, stubber = stub
    stubber.add_response("describe_stack_events", {"StackEvents": []}, {"StackName": STACK})
    stubber.add_response("describe_stacks", stack("UPDATE_IN_PROGRESS"), {"StackName": STACK})
    stubber.add_response("describe_stack_events", {"StackEvents": []}, {"StackName": STACK})
    reader = stacks.EventReader(target, STACK, {})
    with pytest.raises(MastofargateError) as err:
        stacks.follow(target, STACK, reader, POLLER, timeout=0)
    assert err.value.exit_code == 3
    assert "still UPDATE_IN_PROGRESS" in err.value.what
    assert "CloudFormation goes on with it" in err.value.why
    assert "mastofargate status" in err.value.fix


def test_a_change_set_that_imports_unpublished_exports_is_told_apart_by_type(stub: tuple[Target, Stubber]) -> None:
    """CloudFormation accepts the change set and then FAILS it with "No export named ... found": the deploy
    must recognise that case (plan the app stack after the data stack) without reading the text itself."""
    from mastofargate.aws import ExportsNotPublished

    target, stubber = stub
    reason = "No export named social-data-BackupBucketName found"
    stubber.add_response("create_change_set", {"Id": "cs-9", "StackId": STACK_ID})
    failed = {"ChangeSetId": "cs-9", "StackName": STACK, "Status": "FAILED", "StatusReason": reason, "Changes": []}
    stubber.add_response("describe_change_set", failed)
    stubber.add_response("delete_change_set", {}, {"ChangeSetName": "cs-9"})
    with pytest.raises(ExportsNotPublished) as err:
        stacks.create_change_set(target, STACK, TEMPLATE, {}, kind="UPDATE")
    assert reason in err.value.why


def test_an_empty_change_set_is_a_plan_without_changes(stub: tuple[Target, Stubber]) -> None:
    target, stubber = stub
    stubber.add_response("create_change_set", {"Id": "cs-8", "StackId": STACK_ID})
    reason = "The submitted information didn't contain changes. Submit different information to create a change set."
    empty = {"ChangeSetId": "cs-8", "StackName": STACK, "Status": "FAILED", "StatusReason": reason, "Changes": []}
    stubber.add_response("describe_change_set", empty)
    stubber.add_response("delete_change_set", {}, {"ChangeSetName": "cs-8"})
    plan = stacks.create_change_set(target, STACK, TEMPLATE, {}, kind="UPDATE")
    assert not plan.has_changes and plan.change_set_id is None


def test_a_stack_that_does_not_exist_is_a_typed_error_not_a_message(stub: tuple[Target, Stubber]) -> None:
    target, stubber = stub
    stubber.add_client_error(
        "describe_stacks", "ValidationError", f"Stack with id {STACK} does not exist", http_status_code=400
    )
    assert stacks.read_state(target, STACK) is None
