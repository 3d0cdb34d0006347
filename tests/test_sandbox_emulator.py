"""The emulator itself, at the API level: boto3 against `python -m sandbox`, no mastofargate code in between.

What is asserted is what AWS does and the deploy relies on (see sandbox/operations.py): ExecuteChangeSet
returns at once; the stack stays UPDATE_IN_PROGRESS while the service's new deployment is IN_PROGRESS;
a good image completes through UPDATE_COMPLETE_CLEANUP_IN_PROGRESS; an image whose tasks never get
healthy trips the circuit breaker and ends UPDATE_ROLLBACK_COMPLETE with the old task definition primary
and CloudFormation's reason on the service's UPDATE_FAILED event. The template is a small one of our own
(cluster, task definition, service), so each case shows its exact event sequence.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.deploy_sandbox import Sandbox, running_sandbox

pytestmark = pytest.mark.xdist_group("sandbox-emulator")

ROLLOUT_SECONDS = "1.0"  # long enough to see the deployment IN_PROGRESS while the stack waits
TEMPLATE: dict[str, Any] = {
    "Parameters": {
        "Tag": {"Type": "String"},
        "Count": {"Type": "Number", "Default": "1"},
        "Subnet": {"Type": "String"},
        "SecurityGroup": {"Type": "String"},
    },
    "Resources": {
        "Cluster": {"Type": "AWS::ECS::Cluster", "Properties": {"ClusterName": "emu"}},
        "WebTaskDefinition": {
            "Type": "AWS::ECS::TaskDefinition",
            "Properties": {
                "Family": "emu-web",
                "Cpu": "256",
                "Memory": "512",
                "NetworkMode": "awsvpc",
                "RequiresCompatibilities": ["FARGATE"],
                "ContainerDefinitions": [
                    {"Name": "web", "Image": {"Fn::Sub": "repo/web:${Tag}"}, "Memory": 512, "Essential": True}
                ],
            },
        },
        "WebService": {
            "Type": "AWS::ECS::Service",
            "Properties": {
                "ServiceName": "web",
                "Cluster": {"Ref": "Cluster"},
                "TaskDefinition": {"Ref": "WebTaskDefinition"},
                "DesiredCount": {"Ref": "Count"},
                "LaunchType": "FARGATE",
                "NetworkConfiguration": {
                    "AwsvpcConfiguration": {
                        "Subnets": [{"Ref": "Subnet"}],
                        "SecurityGroups": [{"Ref": "SecurityGroup"}],
                    }
                },
                "DeploymentConfiguration": {"DeploymentCircuitBreaker": {"Enable": True, "Rollback": True}},
            },
        },
    },
}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("emulator"), "--rollout-seconds", ROLLOUT_SECONDS) as sandbox:
        yield sandbox


def default_subnet() -> str:
    """A subnet of the region's default VPC (moto makes one, as AWS accounts have): awsvpc tasks need one."""
    return str(boto3.client("ec2").describe_subnets()["Subnets"][0]["SubnetId"])


def default_security_group() -> str:
    groups = boto3.client("ec2").describe_security_groups(GroupNames=["default"])["SecurityGroups"]
    return str(groups[0]["GroupId"])


def change(stack: str, tag: str, count: int, kind: str) -> str:
    """Create a change set, wait until it is ready, execute it; returns at once like the API does."""
    cfn = boto3.client("cloudformation")
    cs = cfn.create_change_set(
        StackName=stack,
        ChangeSetName=f"cs-{time.time_ns()}",
        TemplateBody=json.dumps(TEMPLATE).replace('"emu"', f'"{stack}"').replace("emu-web", f"{stack}-web"),
        Parameters=[
            {"ParameterKey": "Tag", "ParameterValue": tag},
            {"ParameterKey": "Count", "ParameterValue": str(count)},
            {"ParameterKey": "Subnet", "ParameterValue": default_subnet()},
            {"ParameterKey": "SecurityGroup", "ParameterValue": default_security_group()},
        ],
        ChangeSetType=kind,
    )
    cfn.get_waiter("change_set_create_complete").wait(ChangeSetName=cs["Id"], WaiterConfig={"Delay": 1})
    started = time.monotonic()
    cfn.execute_change_set(ChangeSetName=cs["Id"])
    assert time.monotonic() - started < 1.0  # ExecuteChangeSet does not wait for the stack
    return stack


def watch(stack: str, cluster: str, timeout: float = 60) -> list[tuple[str, list[tuple[str, str]]]]:
    """(stack status, [(deployment status, rolloutState)]) every 0.1 s until the stack leaves *_IN_PROGRESS."""
    cfn, ecs = boto3.client("cloudformation"), boto3.client("ecs")
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
        services = ecs.describe_services(cluster=cluster, services=["web"])["services"]
        deployments = [(d["status"], d["rolloutState"]) for d in services[0]["deployments"]] if services else []
        seen.append((status, deployments))
        if not status.endswith("_IN_PROGRESS"):
            return seen
        time.sleep(0.1)
    raise AssertionError(f"stack {stack} still in progress after {timeout} s: {seen[-1]}")


def events(stack: str, since: int = 0) -> list[tuple[str, str, str]]:
    """(logical id, status, reason) oldest first, through the paginator (the API is newest first)."""
    cfn = boto3.client("cloudformation")
    pages = cfn.get_paginator("describe_stack_events").paginate(StackName=stack)
    raw = [e for page in pages for e in page["StackEvents"]][::-1]
    return [(e["LogicalResourceId"], e["ResourceStatus"], e.get("ResourceStatusReason", "")) for e in raw][since:]


def primary_task_definition(cluster: str) -> str:
    service = boto3.client("ecs").describe_services(cluster=cluster, services=["web"])["services"][0]
    return next(d["taskDefinition"] for d in service["deployments"] if d["status"] == "PRIMARY")


def created(stack: str) -> int:
    """A stack with the service on v1, scaled 0 -> 1; returns how many events it has so far."""
    change(stack, "v1", 0, "CREATE")
    assert watch(stack, stack)[-1][0] == "CREATE_COMPLETE", events(stack)
    change(stack, "v1", 1, "UPDATE")
    assert watch(stack, stack)[-1][0] == "UPDATE_COMPLETE", events(stack)
    return len(events(stack))


def test_a_first_create_with_the_service_at_zero_completes_without_waiting_for_tasks(emulator: Sandbox) -> None:
    change("first", "v1", 0, "CREATE")
    assert watch("first", "first")[-1][0] == "CREATE_COMPLETE", "\n".join(map(str, events("first")))
    assert [(e[0], e[1]) for e in events("first")] == [
        ("first", "REVIEW_IN_PROGRESS"),
        ("first", "CREATE_IN_PROGRESS"),
        ("Cluster", "CREATE_IN_PROGRESS"),
        ("WebTaskDefinition", "CREATE_IN_PROGRESS"),
        ("Cluster", "CREATE_COMPLETE"),
        ("WebTaskDefinition", "CREATE_COMPLETE"),
        ("WebService", "CREATE_IN_PROGRESS"),
        ("WebService", "CREATE_COMPLETE"),
        ("first", "CREATE_COMPLETE"),
    ]


def test_an_update_waits_for_the_new_deployment_and_completes(emulator: Sandbox) -> None:
    since = created("good")
    old = primary_task_definition("good")
    change("good", "v2", 1, "UPDATE")
    seen = watch("good", "good")
    assert ("UPDATE_IN_PROGRESS", [("PRIMARY", "IN_PROGRESS"), ("ACTIVE", "COMPLETED")]) in seen
    assert seen[-1] == ("UPDATE_COMPLETE", [("PRIMARY", "COMPLETED")])
    new = primary_task_definition("good")
    assert new != old and new.endswith(":2")
    assert [(e[0], e[1]) for e in events("good", since)] == [
        ("good", "UPDATE_IN_PROGRESS"),
        ("WebTaskDefinition", "UPDATE_IN_PROGRESS"),
        ("WebTaskDefinition", "UPDATE_COMPLETE"),
        ("WebService", "UPDATE_IN_PROGRESS"),
        ("WebService", "UPDATE_COMPLETE"),
        ("good", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"),
        ("WebTaskDefinition", "DELETE_IN_PROGRESS"),  # the old revision, deregistered in the cleanup
        ("WebTaskDefinition", "DELETE_COMPLETE"),
        ("good", "UPDATE_COMPLETE"),
    ]
    ecs = boto3.client("ecs")
    assert ecs.describe_task_definition(taskDefinition=old)["taskDefinition"]["status"] == "INACTIVE"


def test_a_failing_image_rolls_the_stack_back_to_the_old_task_definition(emulator: Sandbox) -> None:
    since = created("bad")
    old = primary_task_definition("bad")
    change("bad", "v2-sandbox-unhealthy", 1, "UPDATE")
    seen = watch("bad", "bad")
    assert ("UPDATE_IN_PROGRESS", [("PRIMARY", "IN_PROGRESS"), ("ACTIVE", "COMPLETED")]) in seen
    assert seen[-1][0] == "UPDATE_ROLLBACK_COMPLETE"
    assert primary_task_definition("bad") == old
    got = events("bad", since)
    assert [(e[0], e[1]) for e in got] == [
        ("bad", "UPDATE_IN_PROGRESS"),
        ("WebTaskDefinition", "UPDATE_IN_PROGRESS"),
        ("WebTaskDefinition", "UPDATE_COMPLETE"),
        ("WebService", "UPDATE_IN_PROGRESS"),
        ("WebService", "UPDATE_FAILED"),
        ("bad", "UPDATE_ROLLBACK_IN_PROGRESS"),
        ("WebTaskDefinition", "UPDATE_IN_PROGRESS"),
        ("WebTaskDefinition", "UPDATE_COMPLETE"),
        ("WebService", "UPDATE_IN_PROGRESS"),
        ("WebService", "UPDATE_COMPLETE"),
        ("bad", "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"),
        ("WebTaskDefinition", "DELETE_IN_PROGRESS"),  # the new revision, deregistered
        ("WebTaskDefinition", "DELETE_COMPLETE"),
        ("bad", "UPDATE_ROLLBACK_COMPLETE"),
    ]
    reason = next(e[2] for e in got if e[1] == "UPDATE_FAILED")
    assert reason.startswith(
        "Resource handler returned message: \"Error occurred during operation 'ECS Deployment Circuit Breaker "
        "was triggered'.\" (RequestToken: "
    )
    assert reason.endswith(", HandlerErrorCode: GeneralServiceException)")
    assert ("bad", "UPDATE_ROLLBACK_IN_PROGRESS", "The following resource(s) failed to update: [WebService]. ") in got
    stack = boto3.client("cloudformation").describe_stacks(StackName="bad")["Stacks"][0]
    assert "StackStatusReason" not in stack  # UPDATE_ROLLBACK_COMPLETE carries no reason of its own
    ecs = boto3.client("ecs")
    service = ecs.describe_services(cluster="bad", services=["web"])["services"][0]
    assert service["taskDefinition"] == old
    assert [d["status"] for d in service["deployments"]] == ["PRIMARY"]
    stopped = ecs.list_tasks(cluster="bad", serviceName="web", desiredStatus="STOPPED")["taskArns"]
    tasks = ecs.describe_tasks(cluster="bad", tasks=stopped)["tasks"]
    assert tasks and all(t["stoppedReason"] == "Essential container in task exited" for t in tasks)
    assert all(t["containers"][0]["exitCode"] == 1 for t in tasks)
    messages = [e["message"] for e in service["events"]]
    assert any("deployment failed: tasks failed to start." in m for m in messages)


def test_a_failed_create_rolls_back_and_deletes_what_it_made(emulator: Sandbox) -> None:
    change("newbad", "v1-sandbox-unhealthy", 1, "CREATE")
    assert watch("newbad", "newbad")[-1][0] == "ROLLBACK_COMPLETE"
    got = events("newbad")
    assert [(e[0], e[1]) for e in got] == [
        ("newbad", "REVIEW_IN_PROGRESS"),
        ("newbad", "CREATE_IN_PROGRESS"),
        ("Cluster", "CREATE_IN_PROGRESS"),
        ("WebTaskDefinition", "CREATE_IN_PROGRESS"),
        ("Cluster", "CREATE_COMPLETE"),
        ("WebTaskDefinition", "CREATE_COMPLETE"),
        ("WebService", "CREATE_IN_PROGRESS"),
        ("WebService", "CREATE_FAILED"),
        ("newbad", "ROLLBACK_IN_PROGRESS"),
        ("WebService", "DELETE_IN_PROGRESS"),
        ("WebTaskDefinition", "DELETE_IN_PROGRESS"),
        ("Cluster", "DELETE_IN_PROGRESS"),
        ("WebService", "DELETE_COMPLETE"),
        ("WebTaskDefinition", "DELETE_COMPLETE"),
        ("Cluster", "DELETE_COMPLETE"),
        ("newbad", "ROLLBACK_COMPLETE"),
    ]
    assert "ECS Deployment Circuit Breaker was triggered" in got[7][2]
    assert got[8][2] == "The following resource(s) failed to create: [WebService]. Rollback requested by user."
    services = boto3.client("ecs").describe_services(cluster="newbad", services=["web"])
    assert [s["status"] for s in services["services"]] in ([], ["INACTIVE"])


def test_the_circuit_breaker_marks_the_failed_deployment_while_ecs_rolls_back(emulator: Sandbox) -> None:
    created("cb")
    change("cb", "v2-sandbox-unhealthy", 1, "UPDATE")
    ecs = boto3.client("ecs")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        deployments = ecs.describe_services(cluster="cb", services=["web"])["services"][0]["deployments"]
        failed = [d for d in deployments if d["rolloutState"] == "FAILED"]
        if failed:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the circuit breaker never tripped")
    assert failed[0]["rolloutStateReason"] == "ECS deployment circuit breaker: tasks failed to start."
    assert failed[0]["status"] == "ACTIVE" and failed[0]["failedTasks"] == 2
    assert deployments[0]["status"] == "PRIMARY" and deployments[0]["taskDefinition"].endswith(":1")
    assert watch("cb", "cb")[-1][0] == "UPDATE_ROLLBACK_COMPLETE"


def test_a_stack_in_progress_refuses_another_change(emulator: Sandbox) -> None:
    cfn = boto3.client("cloudformation")
    created("busy")
    change("busy", "v2", 1, "UPDATE")
    with pytest.raises(cfn.exceptions.ClientError, match="UPDATE_IN_PROGRESS state and can not be updated"):
        change("busy", "v3", 1, "UPDATE")
    assert watch("busy", "busy")[-1][0] == "UPDATE_COMPLETE"


def test_stack_events_come_newest_first_in_pages_of_100(emulator: Sandbox) -> None:
    cfn = boto3.client("cloudformation")
    topics = {f"Topic{i}": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": f"t{i}"}} for i in range(55)}
    cs = cfn.create_change_set(
        StackName="many", ChangeSetName="one", TemplateBody=json.dumps({"Resources": topics}), ChangeSetType="CREATE"
    )
    cfn.get_waiter("change_set_create_complete").wait(ChangeSetName=cs["Id"], WaiterConfig={"Delay": 1})
    cfn.execute_change_set(ChangeSetName=cs["Id"])
    cfn.get_waiter("stack_create_complete").wait(StackName="many", WaiterConfig={"Delay": 1})
    first = cfn.describe_stack_events(StackName="many")
    assert len(first["StackEvents"]) == 100 and first.get("NextToken")
    assert first["StackEvents"][0]["ResourceStatus"] == "CREATE_COMPLETE"  # the stack's last event comes first
    second = cfn.describe_stack_events(StackName="many", NextToken=first["NextToken"])
    assert "NextToken" not in second
    everything = [*first["StackEvents"], *second["StackEvents"]]
    assert len(everything) == 2 + 55 * 2 + 1
    assert everything[-1]["ResourceStatus"] == "REVIEW_IN_PROGRESS"
    assert len({e["EventId"] for e in everything}) == len(everything)


def test_delete_stack_returns_at_once_and_deletes_referrers_first(emulator: Sandbox) -> None:
    cfn = boto3.client("cloudformation")
    change("gone", "v1", 0, "CREATE")
    assert watch("gone", "gone")[-1][0] == "CREATE_COMPLETE"
    stack_id = cfn.describe_stacks(StackName="gone")["Stacks"][0]["StackId"]
    since = len(events("gone"))
    cfn.delete_stack(StackName="gone")
    assert cfn.describe_stacks(StackName="gone")["Stacks"][0]["StackStatus"] == "DELETE_IN_PROGRESS"
    cfn.get_waiter("stack_delete_complete").wait(StackName=stack_id, WaiterConfig={"Delay": 1})
    with pytest.raises(cfn.exceptions.ClientError, match="does not exist"):
        cfn.describe_stacks(StackName="gone")  # by name, a deleted stack is gone; by id it is DELETE_COMPLETE
    got = [(e[0], e[1]) for e in events(stack_id, since)]
    assert got[0] == ("gone", "DELETE_IN_PROGRESS") and got[-1] == ("gone", "DELETE_COMPLETE")
    assert got[1:3] == [("WebService", "DELETE_IN_PROGRESS"), ("WebService", "DELETE_COMPLETE")]
    assert sorted(got[3:-1]) == sorted(
        [(r, s) for r in ("Cluster", "WebTaskDefinition") for s in ("DELETE_IN_PROGRESS", "DELETE_COMPLETE")]
    )
    assert boto3.client("ecs").describe_services(cluster="gone", services=["web"])["services"] == []


def test_a_rollback_also_returns_a_service_whose_update_had_completed(emulator: Sandbox) -> None:
    """Two services: web's new image fails, streaming's works. CloudFormation rolls streaming back too
    (UpdateService to its old revision, a new deployment, waited for), so the stack is as before."""
    cfn, ecs = boto3.client("cloudformation"), boto3.client("ecs")
    template = json.loads(json.dumps(TEMPLATE).replace('"emu"', '"two"').replace("emu-web", "two-web"))
    resources = template["Resources"]
    resources["StreamingTaskDefinition"] = json.loads(
        json.dumps(resources["WebTaskDefinition"]).replace("two-web", "two-streaming").replace("${Tag}", "${Tag2}")
    )
    resources["StreamingService"] = json.loads(json.dumps(resources["WebService"]).replace('"web"', '"streaming"'))
    resources["StreamingService"]["Properties"]["TaskDefinition"] = {"Ref": "StreamingTaskDefinition"}
    template["Parameters"]["Tag2"] = {"Type": "String"}

    def run(kind: str, web: str, streaming: str) -> str:
        params = {"Tag": web, "Tag2": streaming, "Count": "1"}
        params |= {"Subnet": default_subnet(), "SecurityGroup": default_security_group()}
        cs = cfn.create_change_set(
            StackName="two",
            ChangeSetName=f"cs-{time.time_ns()}",
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
            ChangeSetType=kind,
        )
        cfn.get_waiter("change_set_create_complete").wait(ChangeSetName=cs["Id"], WaiterConfig={"Delay": 1})
        cfn.execute_change_set(ChangeSetName=cs["Id"])
        return watch("two", "two")[-1][0]

    def primaries() -> dict[str, str]:
        services = ecs.describe_services(cluster="two", services=["web", "streaming"])["services"]
        return {
            s["serviceName"]: next(d["taskDefinition"] for d in s["deployments"] if d["status"] == "PRIMARY")
            for s in services
        }

    assert run("CREATE", "v1", "v1") == "CREATE_COMPLETE"
    before = primaries()
    since = len(events("two"))
    assert run("UPDATE", "v2-sandbox-unhealthy", "v2") == "UPDATE_ROLLBACK_COMPLETE"
    assert primaries() == before
    got = events("two", since)
    assert ("WebService", "UPDATE_FAILED") in [(e[0], e[1]) for e in got]
    rollback = got[[e[1] for e in got].index("UPDATE_ROLLBACK_IN_PROGRESS") :]
    assert rollback[0][2] == "The following resource(s) failed to update: [WebService]. "
    assert ("StreamingService", "UPDATE_COMPLETE") in [(e[0], e[1]) for e in rollback]
    assert ("StreamingTaskDefinition", "DELETE_COMPLETE") in [(e[0], e[1]) for e in rollback]  # its new revision
