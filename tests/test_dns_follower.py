"""The DNS-follower Lambda's handler (mastofargate/lambdas/dns_follower.py) against a moto server.

The handler runs unchanged: boto3 inside it reaches moto through AWS_ENDPOINT_URL. The world is arranged
as AWS has it for a Fargate service with assignPublicIp: tasks of group `service:NAME` with an ENI
attachment. moto 5.2 gives that ENI no public address and no IPv6 (AWS does: the ENI's Association and
Ipv6Addresses), so each test gives it an Elastic IP and an IPv6 address itself; and moto's list_tasks
ignores serviceName, so a decoy task of another service checks that the handler's own group filter holds.
Events are delivered out of order and twice: the records must follow what RUNS, not what was said.
"""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from mastofargate.lambdas import dns_follower, source
from tests.moto_server import aws_endpoint, keep_tasks_running, moto_server  # noqa: F401

CLUSTER = "social"
SERVICE = "edge"
RECORD = "social.example.org"
OLD_ADDRESS = "192.0.2.10"  # what the record said before this server's first task


@dataclass
class World:
    ecs: Any
    ec2: Any
    r53: Any
    zone: str
    subnet: str
    sg: str
    taskdef: str

    def start_task(self, *, group: str = f"service:{SERVICE}", ipv6: bool = True) -> dict[str, str]:
        task = self.ecs.run_task(
            cluster=CLUSTER,
            taskDefinition=self.taskdef,
            group=group,
            launchType="FARGATE",
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": [self.subnet],
                    "securityGroups": [self.sg],
                    "assignPublicIp": "ENABLED",
                }
            },
        )["tasks"][0]
        eni = next(d["value"] for d in task["attachments"][0]["details"] if d["name"] == "networkInterfaceId")
        alloc = self.ec2.allocate_address(Domain="vpc")
        self.ec2.associate_address(AllocationId=alloc["AllocationId"], NetworkInterfaceId=eni)
        v6 = None
        if ipv6:
            v6 = self.ec2.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6AddressCount=1)["AssignedIpv6Addresses"][0]
        time.sleep(1.1)  # distinct startedAt seconds, as real replacements have
        return {"arn": task["taskArn"], "ipv4": alloc["PublicIp"], "ipv6": v6 or ""}

    def stop(self, task: dict[str, str]) -> None:
        self.ecs.stop_task(cluster=CLUSTER, task=task["arn"], reason="replaced")

    def records(self) -> dict[str, tuple[int, list[str]]]:
        sets = self.r53.list_resource_record_sets(HostedZoneId=self.zone)["ResourceRecordSets"]
        return {
            s["Type"]: (s["TTL"], [r["Value"] for r in s["ResourceRecords"]])
            for s in sets
            if s["Name"] == RECORD + "." and s["Type"] in ("A", "AAAA")
        }


@pytest.fixture
def world(aws_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> World:  # noqa: F811
    keep_tasks_running(aws_endpoint)
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"]
    ec2.modify_vpc_attribute(VpcId=vpc["VpcId"], EnableDnsHostnames={"Value": True})  # as the stack makes it
    vpc = ec2.describe_vpcs(VpcIds=[vpc["VpcId"]])["Vpcs"][0]
    v6_block = vpc["Ipv6CidrBlockAssociationSet"][0]["Ipv6CidrBlock"]
    subnet = ec2.create_subnet(
        VpcId=vpc["VpcId"], CidrBlock="10.0.0.0/24", Ipv6CidrBlock=v6_block.replace("/56", "/64")
    )["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="edge", Description="edge", VpcId=vpc["VpcId"])["GroupId"]
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    taskdef = ecs.register_task_definition(
        family=f"{CLUSTER}-{SERVICE}",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[{"name": "caddy", "image": "caddy:2", "essential": True, "memory": 512}],
    )["taskDefinition"]["taskDefinitionArn"]
    r53 = boto3.client("route53")
    zone = r53.create_hosted_zone(Name="example.org.", CallerReference="dns-follower-test")["HostedZone"]["Id"]
    zone = zone.split("/")[-1]
    for name, value in {"CLUSTER": CLUSTER, "SERVICE": SERVICE, "HOSTED_ZONE_ID": zone, "RECORD_NAME": RECORD}.items():
        monkeypatch.setenv(name, value)
    return World(ecs, ec2, r53, zone, subnet, sg, taskdef)


def task_event(task: dict[str, str], status: str) -> dict[str, Any]:
    """An EventBridge "ECS Task State Change" event, as the rule delivers it."""
    return {
        "source": "aws.ecs",
        "detail-type": "ECS Task State Change",
        "detail": {
            "taskArn": task["arn"],
            "lastStatus": status,
            "desiredStatus": status,
            "group": f"service:{SERVICE}",
        },
    }


SCHEDULE = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}


def test_no_running_task_leaves_the_record_alone(world: World) -> None:
    world.r53.change_resource_record_sets(
        HostedZoneId=world.zone,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": RECORD,
                        "Type": "A",
                        "TTL": 300,
                        "ResourceRecords": [{"Value": OLD_ADDRESS}],
                    },
                }
            ]
        },
    )
    decoy = world.start_task(group="service:web")  # another service's task: not the edge
    for event in (SCHEDULE, task_event(decoy, "RUNNING")):
        result = dns_follower.handler(event, None)
        assert result["action"] == "none"
    assert world.records() == {"A": (300, [OLD_ADDRESS])}


def test_records_follow_the_running_task_whatever_the_event_order(world: World) -> None:
    first = world.start_task()
    assert dns_follower.handler(task_event(first, "RUNNING"), None)["action"] == "changed"
    assert world.records() == {"A": (60, [first["ipv4"]]), "AAAA": (60, [first["ipv6"]])}

    # A replacement: the new task runs, the old one stops; events arrive late, twice and out of order.
    second = world.start_task()
    world.stop(first)
    for event in (
        task_event(second, "RUNNING"),
        task_event(first, "RUNNING"),  # late: the old task was running a minute ago
        task_event(first, "RUNNING"),  # duplicated
        task_event(second, "PENDING"),  # older than the RUNNING above
        task_event(first, "STOPPED"),
        SCHEDULE,
    ):
        dns_follower.handler(event, None)
        assert world.records() == {"A": (60, [second["ipv4"]]), "AAAA": (60, [second["ipv6"]])}, event

    # Nothing changed since: a duplicate or a scheduled run changes nothing.
    assert dns_follower.handler(task_event(second, "RUNNING"), None)["action"] == "unchanged"
    assert dns_follower.handler(SCHEDULE, None)["action"] == "unchanged"

    # The last task stops (a Spot interruption): the record keeps the last address until a task runs again.
    world.stop(second)
    assert dns_follower.handler(task_event(second, "STOPPED"), None)["action"] == "none"
    assert world.records() == {"A": (60, [second["ipv4"]]), "AAAA": (60, [second["ipv6"]])}


def test_a_task_without_ipv6_removes_the_stale_aaaa(world: World) -> None:
    with_v6 = world.start_task()
    dns_follower.handler(SCHEDULE, None)
    world.stop(with_v6)
    without = world.start_task(ipv6=False)
    result = dns_follower.handler(task_event(without, "RUNNING"), None)
    assert result["changes"] == ["UPSERT A", "DELETE AAAA"]
    assert world.records() == {"A": (60, [without["ipv4"]])}


def test_the_handler_prints_one_json_line_and_its_source_is_embeddable(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    task = world.start_task()
    dns_follower.handler(task_event(task, "RUNNING"), None)
    line = json.loads(capsys.readouterr().out.strip())
    assert line["trigger"] == "ECS Task State Change" and line["A"] == task["ipv4"]
    text = source("dns_follower")
    assert "from mastofargate" not in text and "import mastofargate" not in text, "inline code stands alone"
    compile(text, "index.py", "exec")


class HealthReportingEcs:
    """moto's ECS client, with what AWS reports of a task and moto 5.2 does not: the task-level `healthStatus`
    (derived from the containers' health checks) and `startedAt`. Everything else is moto's answer as is."""

    def __init__(self, ecs: Any, healthy: set[str], started: dict[str, datetime.datetime]) -> None:
        self.ecs, self.healthy, self.started = ecs, healthy, started

    def list_tasks(self, **kwargs: Any) -> Any:
        return self.ecs.list_tasks(**kwargs)

    def describe_tasks(self, **kwargs: Any) -> Any:
        answer = self.ecs.describe_tasks(**kwargs)
        for task in answer["tasks"]:
            task["healthStatus"] = "HEALTHY" if task["taskArn"] in self.healthy else "UNKNOWN"
            task["startedAt"] = self.started[task["taskArn"]]
        return answer


def test_during_a_rollout_the_record_waits_for_the_new_task_to_be_healthy(world: World) -> None:
    """Two tasks run during a rollout (maximumPercent 200): the name moves once the new one is HEALTHY (its
    Puma booted), not as soon as it is RUNNING."""
    old = world.start_task(ipv6=False)
    new = world.start_task(ipv6=False)
    now = datetime.datetime.now(datetime.UTC)
    started = {old["arn"]: now - datetime.timedelta(days=3), new["arn"]: now}
    zone, name = world.zone, RECORD

    def run(healthy: set[str]) -> dict[str, Any]:
        ecs = HealthReportingEcs(world.ecs, healthy, started)
        return dns_follower.reconcile(ecs, world.ec2, world.r53, CLUSTER, SERVICE, zone, name)

    assert run({old["arn"]})["A"] == old["ipv4"], "the newer task is RUNNING but not healthy yet"
    assert world.records()["A"] == (60, [old["ipv4"]])
    assert run({old["arn"], new["arn"]})["A"] == new["ipv4"], "both healthy: the newest"
    assert run(set())["A"] == new["ipv4"], "no health known (a first start): the newest running"
