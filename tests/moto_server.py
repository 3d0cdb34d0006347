"""A real moto server for tests of AWS call sequences, and a small "deployed server" built on it.

Import the fixtures into a test module (no conftest needed); a local alias keeps ruff's F811 quiet:

    from tests.moto_server import aws_endpoint, deploy_world, moto_server  # noqa: F401

    @pytest.fixture
    def moto(aws_endpoint: str) -> str:  # noqa: F811
        return aws_endpoint

`moto_server` starts one `python -m moto.server` per test process (xdist worker) on a free port;
`aws_endpoint` wipes it before each test, points boto3 at it through AWS_ENDPOINT_URL and returns the URL.

moto's ECS tasks and how to make them stop (moto 5.2): a task starts RUNNING and moves one step
(RUNNING -> DEACTIVATING -> STOPPING -> DEPROVISIONING -> STOPPED) each time `describe_tasks` returns it,
so a poller sees it STOPPED on the 4th describe, with exit code 0 and an empty stoppedReason.
`stop_task(cluster, task, reason)` stops it at once with that reason. `set_task_transition(url, ...)`
changes the pace for the whole server: `keep_tasks_running(url)` (never stops on its own: timeouts) or
`progression="immediate"` (STOPPED on the first describe). `aws_endpoint` restores the default.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mastofargate import aws
from mastofargate.config import Config
from mastofargate.target import Target

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Variables that would send boto3 elsewhere or to a real account.
AWS_ENV_CLEARED = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONFIG_FILE", "AWS_ROLE_ARN")
JOB_NAMES = ("migrate-pre", "migrate", "tootctl")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict[str, Any] | None = None) -> None:
    data = json.dumps(body or {}).encode()
    urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST"), timeout=10).read()


@contextlib.contextmanager
def serving(argv: list[str], cwd: Path | None = None) -> Iterator[str]:
    """A moto server started as `python ARGV -H 127.0.0.1 -p PORT`: its URL once it answers; stopped after."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, *argv, "-H", "127.0.0.1", "-p", str(port)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.05)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """URL of a moto server running for this test process."""
    with serving(["-m", "moto.server"]) as url:
        yield url


@pytest.fixture
def aws_endpoint(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A wiped moto server that boto3 (here and in subprocesses inheriting os.environ) talks to."""
    _post(f"{moto_server}/moto-api/reset")
    _post(f"{moto_server}/moto-api/state-manager/unset-transition", {"model_name": "ecs::task"})
    for name in AWS_ENV_CLEARED:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**AWS_ENV, "AWS_ENDPOINT_URL": moto_server}.items():
        monkeypatch.setenv(name, value)
    aws.reset_clients()
    yield moto_server
    aws.reset_clients()


def set_task_transition(url: str, progression: str = "manual", times: int = 1) -> None:
    """How fast moto moves ECS tasks towards STOPPED (see the module docstring)."""
    transition: dict[str, Any] = {"progression": progression}
    if progression == "manual":
        transition["times"] = times
    _post(f"{url}/moto-api/state-manager/set-transition", {"model_name": "ecs::task", "transition": transition})


def keep_tasks_running(url: str) -> None:
    set_task_transition(url, "manual", 1_000_000)


@dataclass
class World:
    """What `deploy_world` created: enough of a deployed server for the day-2 verbs."""

    target: Target
    subnets: list[str]
    security_group: str
    images: dict[str, str] = field(default_factory=dict)  # service/job -> image


def _log_configuration(target: Target, name: str) -> dict[str, Any]:
    return {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": f"/mastofargate/{target.name}/{name}",
            "awslogs-region": target.region,
            "awslogs-stream-prefix": name,
        },
    }


def register(target: Target, family_suffix: str, container: str, image: str) -> str:
    ecs = target.client("ecs")
    resp = ecs.register_task_definition(
        family=f"{target.name}-{family_suffix}",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": container,
                "image": image,
                "memory": 512,
                "essential": True,
                "environment": [{"name": "LOCAL_DOMAIN", "value": "social.example.org"}],
                "logConfiguration": _log_configuration(target, family_suffix),
            }
        ],
        tags=[{"key": "mastofargate:stack", "value": target.app_stack}],
    )
    return str(resp["taskDefinition"]["taskDefinitionArn"])


def deploy_world(
    config: Config,
    *,
    tag: str = "v4.5.4",
    data_stack: bool = True,
    app_stack: bool = True,
    services_running: bool = True,
    data_protected: bool = True,
) -> World:
    """Build a stand-in for a deployed server with boto3 calls (the real templates are the deploy's job).

    Names follow the stack builders: cluster `{name}`, families `{name}-{service}` and `{name}-{job}`,
    containers named after the role (services) or `mastodon` (jobs), log groups `/mastofargate/{name}/{x}`.
    The data stack is a tiny CloudFormation stack whose Outputs are the VPC's subnet and security group ids
    (literal values), so `Target.stack_outputs` reads them for real. Services are created at desired 0 and
    then scaled, because moto then reports them COMPLETED and running == desired; with
    services_running=False they stay at running 0 / pending desired, IN_PROGRESS. The data stack has
    termination protection, as a completed first deploy leaves it (data_protected=False: an interrupted one).
    """
    target = Target(config)
    ec2 = target.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{target.region}{az}")["Subnet"][
            "SubnetId"
        ]
        for i, az in enumerate("ab")
    ]
    sg = ec2.create_security_group(GroupName="tasks", Description="tasks", VpcId=vpc)["GroupId"]
    world = World(target, subnets, sg)
    if data_stack:
        _literal_stack(
            target,
            target.data_stack,
            {"SubnetIds": ",".join(subnets), "TaskSecurityGroupId": sg},
            protected=data_protected,
        )
    if not app_stack:
        return world
    registry = f"123456789012.dkr.ecr.{target.region}.amazonaws.com/{target.name}"
    ecs = target.client("ecs")
    ecs.create_cluster(clusterName=target.cluster)
    logs = target.client("logs")
    for job in JOB_NAMES:
        world.images[job] = f"{registry}/mastodon:{tag}"
        register(target, job, "mastodon", world.images[job])
        logs.create_log_group(logGroupName=f"/mastofargate/{target.name}/{job}")
    for size in config.all_services:
        repo = "streaming" if size.role == "streaming" else "mastodon"
        world.images[size.name] = f"{registry}/{repo}:{tag}"
        arn = register(target, size.name, size.role, world.images[size.name])
        logs.create_log_group(logGroupName=f"/mastofargate/{target.name}/{size.name}")
        start = 0 if services_running else size.desired
        ecs.create_service(
            cluster=target.cluster, serviceName=size.name, taskDefinition=arn, desiredCount=start, launchType="FARGATE"
        )
        if services_running and size.desired:
            ecs.update_service(cluster=target.cluster, service=size.name, desiredCount=size.desired)
    _literal_stack(target, target.app_stack, {"Url": f"https://{config.server.host}", "LoadBalancerDns": "alb.test"})
    return world


def _literal_stack(target: Target, name: str, outputs: dict[str, str], *, protected: bool = False) -> None:
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    cfn = target.client("cloudformation")
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template), EnableTerminationProtection=protected)
    cfn.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig={"Delay": 1})


def put_log_lines(target: Target, group: str, stream: str, lines: list[str], *, age_seconds: float = 5) -> None:
    """Write lines into CloudWatch Logs (creating the stream), spread just before now."""
    logs = target.client("logs")
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=group)
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    start = int((time.time() - age_seconds) * 1000)
    events = [{"timestamp": start + i, "message": line} for i, line in enumerate(lines)]
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


def subprocess_env(url: str) -> dict[str, str]:
    """Environment for `python -m mastofargate` against the moto server (plain output, no colours)."""
    env = {k: v for k, v in os.environ.items() if k not in AWS_ENV_CLEARED}
    env.update(AWS_ENV)
    env.update({"AWS_ENDPOINT_URL": url, "CI": "1", "NO_COLOR": "1", "COLUMNS": "200"})
    return env
