"""botocore Stubber plumbing for the failure paths moto cannot produce (see each test's docstring)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mastofargate import aws
from mastofargate.target import Target

ACCOUNT = "123456789012"
REGION = "us-east-1"
NETWORK_OUTPUTS = {"SubnetIds": "subnet-1,subnet-2", "TaskSecurityGroupId": "sg-1"}


def stub_clients(monkeypatch: pytest.MonkeyPatch, *services: str) -> dict[str, Any]:
    """Stubbed boto3 clients that `mastofargate.aws.client` hands out; returns service -> Stubber."""
    import boto3
    from botocore.stub import Stubber

    clients = {
        s: boto3.session.Session().client(
            s,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            endpoint_url="http://127.0.0.1:9",
        )
        for s in services
    }
    stubs = {s: Stubber(c) for s, c in clients.items()}
    for stub in stubs.values():
        stub.activate()
    monkeypatch.setattr(aws, "client", lambda service, region: clients[service])
    return stubs


def fake_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Data-stack outputs without CloudFormation: these tests stub ECS, not the stack."""
    monkeypatch.setattr(Target, "stack_outputs", lambda self, stack, refresh=False: dict(NETWORK_OUTPUTS))


def task_arn(task_id: str, cluster: str = "social") -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster}/{task_id}"


def td_arn(family: str, revision: int) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:{revision}"


def job_definition(family: str = "social-tootctl", job: str = "tootctl", revision: int = 7) -> dict[str, Any]:
    return {
        "taskDefinitionArn": td_arn(family, revision),
        "family": family,
        "revision": revision,
        "status": "ACTIVE",
        "containerDefinitions": [
            {
                "name": "mastodon",
                "image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/social/mastodon:v4.5.4",
                "memory": 2048,
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {"awslogs-group": f"/mastofargate/social/{job}", "awslogs-stream-prefix": job},
                },
            }
        ],
    }


def at(seconds_ago: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds_ago)


def log_event(message: str, seconds_ago: float = 1) -> dict[str, Any]:
    return {"timestamp": int(at(seconds_ago).timestamp() * 1000), "message": message, "ingestionTime": 0}
