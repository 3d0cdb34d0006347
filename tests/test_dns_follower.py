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
    assert line["trigger"] == "ECS Task State Change" and line["A"] == [task["ipv4"]]
    text = source("dns_follower")
    assert "from mastofargate" not in text and "import mastofargate" not in text, "inline code stands alone"
    compile(text, "index.py", "exec")


class AwsTaskView:
    """moto's ECS client plus what AWS reports of a task and moto 5.2 does not (the one fake layer here, for
    fields no local part can produce): the task-level `healthStatus` (ECS derives it from the containers'
    health checks), `startedAt`, and a task ECS is stopping: `desiredStatus` STOPPED while `lastStatus` is
    still RUNNING, then DEACTIVATING, STOPPING (the ECS task lifecycle; moto's stop_task jumps to STOPPED at
    once). `list_tasks` stays moto's answer, which still lists a task this view describes as stopping: the
    race the follower must survive (listed while meant to run, described a moment later as stopping)."""

    def __init__(self, ecs: Any) -> None:
        self.ecs = ecs
        self.health: dict[str, str] = {}
        self.started: dict[str, datetime.datetime] = {}
        self.stopping: dict[str, str] = {}  # task ARN -> lastStatus while ECS stops it

    def get_paginator(self, name: str) -> Any:
        return self.ecs.get_paginator(name)

    def list_tasks(self, **kwargs: Any) -> Any:
        return self.ecs.list_tasks(**kwargs)

    def describe_tasks(self, **kwargs: Any) -> Any:
        answer = self.ecs.describe_tasks(**kwargs)
        for task in answer["tasks"]:
            arn = task["taskArn"]
            task["healthStatus"] = self.health.get(arn, "UNKNOWN")
            task["startedAt"] = self.started.get(arn, task.get("createdAt"))
            if arn in self.stopping and task["lastStatus"] != "STOPPED":
                task["desiredStatus"], task["lastStatus"] = "STOPPED", self.stopping[arn]
        return answer


class Front:
    """A front service of several tasks (community: autoscaling, rolling deployments) seen through AwsTaskView;
    `run(event)` is one run of the follower (the event only says that something happened: it is not read)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.ecs = AwsTaskView(world.ecs)
        self.clock = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)

    def start(self, health: str = "UNKNOWN", *, ipv6: bool = True) -> dict[str, str]:
        task = self.world.start_task(ipv6=ipv6)
        self.clock += datetime.timedelta(minutes=1)
        self.ecs.started[task["arn"]] = self.clock
        self.ecs.health[task["arn"]] = health
        return task

    def run(self, event: dict[str, Any] | None = None) -> dict[str, Any]:
        w = self.world
        return dns_follower.reconcile(self.ecs, w.ec2, w.r53, CLUSTER, SERVICE, w.zone, RECORD)


def published(*tasks: dict[str, str]) -> dict[str, tuple[int, list[str]]]:
    """The records that publish exactly `tasks`: one multi-value A (and AAAA) record, sorted, TTL 60."""
    out = {"A": (60, sorted(t["ipv4"] for t in tasks))}
    if any(t["ipv6"] for t in tasks):
        out["AAAA"] = (60, sorted(t["ipv6"] for t in tasks if t["ipv6"]))
    return out


def test_every_healthy_task_is_published_and_only_those(world: World) -> None:
    front = Front(world)
    a, b = front.start("HEALTHY"), front.start("HEALTHY")
    c = front.start("UNKNOWN")  # scaled out a moment ago: Puma still booting
    d = front.start("UNHEALTHY")  # failing its health check: ECS will replace it
    world.start_task(group="service:web")  # another service's task: never published
    result = front.run(SCHEDULE)
    assert result["action"] == "changed" and result["tasks"] == sorted([a["arn"], b["arn"]])
    assert world.records() == published(a, b)
    assert result["A"] == sorted([a["ipv4"], b["ipv4"]]), "sorted: the same set is always the same record"

    # Nothing changed: no UPSERT, however often it runs and whatever the events say.
    for event in (task_event(c, "RUNNING"), task_event(a, "RUNNING"), task_event(d, "RUNNING"), SCHEDULE):
        assert front.run(event)["action"] == "unchanged"

    # The scaled-out task turns healthy (ECS sends no event for that: the scheduled run adds it).
    front.ecs.health[c["arn"]] = "HEALTHY"
    assert front.run(SCHEDULE)["changes"] == ["UPSERT A", "UPSERT AAAA"]
    assert world.records() == published(a, b, c)
    assert front.run(SCHEDULE)["action"] == "unchanged"


def test_the_same_set_in_another_order_is_not_rewritten(world: World) -> None:
    front = Front(world)
    a, b = front.start("HEALTHY", ipv6=False), front.start("HEALTHY", ipv6=False)
    reverse = sorted([a["ipv4"], b["ipv4"]], reverse=True)
    world.r53.change_resource_record_sets(
        HostedZoneId=world.zone,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": RECORD,
                        "Type": "A",
                        "TTL": 60,
                        "ResourceRecords": [{"Value": v} for v in reverse],
                    },
                }
            ]
        },
    )
    assert front.run(SCHEDULE)["action"] == "unchanged"


@pytest.mark.parametrize("last_status", ["RUNNING", "DEACTIVATING", "STOPPING"])
def test_a_task_ecs_is_stopping_leaves_the_record_at_the_first_run(world: World, last_status: str) -> None:
    """Scale-in, a Spot interruption or a replaced task: ECS sets desiredStatus STOPPED first, and the task
    keeps running (its Caddy drains) while the record drops it; a late event saying it runs brings it back
    never, and when it is gone for good nothing changes again."""
    front = Front(world)
    a, b, c = front.start("HEALTHY"), front.start("HEALTHY"), front.start("HEALTHY")
    front.run(SCHEDULE)
    assert world.records() == published(a, b, c)

    front.ecs.stopping[b["arn"]] = last_status  # ECS decided to stop b; its health still reads HEALTHY
    result = front.run(task_event(b, "RUNNING"))
    assert result["action"] == "changed" and b["arn"] not in result["tasks"]
    assert world.records() == published(a, c)
    for event in (task_event(b, "RUNNING"), task_event(b, "RUNNING"), SCHEDULE):  # late, duplicated
        assert front.run(event)["action"] == "unchanged"
    world.stop(b)  # gone (moto: STOPPED)
    assert front.run(task_event(b, "STOPPED"))["action"] == "unchanged"
    assert world.records() == published(a, c)


def test_a_rolling_deployment_moves_the_record_without_a_gap(world: World) -> None:
    """minimumHealthyPercent 100 / maximumPercent 200: the new task starts beside the old, ECS stops the old
    once the new is healthy. At every step the record holds a task that serves, and never one being stopped;
    events arrive late, twice and out of order."""
    front = Front(world)
    old = front.start("HEALTHY")
    front.run(task_event(old, "RUNNING"))
    assert world.records() == published(old)

    new = front.start("UNKNOWN")
    for event in (task_event(new, "PENDING"), task_event(new, "RUNNING"), task_event(new, "RUNNING")):
        front.run(event)
        assert world.records() == published(old), "the new task takes clients once it is healthy"

    front.ecs.health[new["arn"]] = "HEALTHY"
    front.run(SCHEDULE)
    assert world.records() == published(old, new), "both serve for a moment: the load is shared"

    front.ecs.stopping[old["arn"]] = "RUNNING"  # the deployment stops the old task
    for event in (task_event(old, "RUNNING"), task_event(new, "RUNNING"), task_event(old, "DEACTIVATING")):
        front.run(event)
        assert world.records() == published(new), event
    front.ecs.stopping[old["arn"]] = "STOPPING"
    front.run(task_event(old, "STOPPING"))
    world.stop(old)
    for event in (task_event(old, "STOPPED"), task_event(old, "RUNNING"), SCHEDULE):
        front.run(event)
        assert world.records() == published(new), event


def test_without_a_healthy_task_the_newest_running_one_is_published(world: World) -> None:
    """A first start: no task's health is known yet (Puma boots), but the name must point somewhere for Caddy
    to get its certificate: the newest running task. Once tasks are healthy, those."""
    front = Front(world)
    older, newer = front.start("UNKNOWN", ipv6=False), front.start("UNKNOWN", ipv6=False)
    assert front.run(SCHEDULE)["tasks"] == [newer["arn"]]
    assert world.records() == published(newer)
    front.ecs.health[older["arn"]] = "HEALTHY"
    assert front.run(SCHEDULE)["tasks"] == [older["arn"]], "a healthy task beats a newer unknown one"
    front.ecs.stopping[older["arn"]] = "STOPPING"
    assert front.run(SCHEDULE)["tasks"] == [newer["arn"]], "a task being stopped is never the fallback"


def test_when_every_task_has_stopped_the_record_keeps_the_last_set(world: World) -> None:
    front = Front(world)
    a, b = front.start("HEALTHY"), front.start("HEALTHY")
    front.run(SCHEDULE)
    for task in (a, b):
        world.stop(task)
    for event in (task_event(a, "STOPPED"), task_event(b, "STOPPED"), SCHEDULE):
        assert front.run(event)["action"] == "none"
    assert world.records() == published(a, b)
