"""What `plan` and `deploy` say about downtime (deploy/downtime.py), by shape, with the direct edge above all.

The deploy history lives in SSM (moto server); the plans are read off the real templates (stack.build) with
the change CloudFormation would report for the service the rollout touches.
"""

from __future__ import annotations

from typing import Any

import pytest

from mastofargate.deploy import downtime, history
from mastofargate.deploy.options import Tags
from mastofargate.deploy.stacks import Change, Plan
from mastofargate.stack import build
from mastofargate.target import Target
from tests.conftest import make_config
from tests.moto_server import aws_endpoint, moto_server  # noqa: F401


@pytest.fixture
def moto(aws_endpoint: str) -> str:  # noqa: F811
    return aws_endpoint


def rollout_plan(deployment: dict[str, Any]) -> tuple[Target, Plan]:
    """A plan that rolls out the task holding web (a new image: its service is modified)."""
    cfg = make_config(**deployment)
    template = build(cfg)["app"].to_dict()
    web = cfg.task_of("web")
    assert web is not None
    (logical,) = [
        k
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::ECS::Service" and r["Properties"]["ServiceName"] == web.name
    ]
    change = Change("Modify", logical, "AWS::ECS::Service", "False", "")
    return Target(cfg), Plan("social-app", "UPDATE", [change], {}, template)


def test_a_community_front_on_the_direct_edge_rolls_out_without_downtime(moto: str) -> None:
    """Several front tasks, new beside old (100 %/200 %), DNS on every healthy task and the old one draining:
    no OFFLINE claim."""
    target, plan = rollout_plan({"profile": "community", "edge": "direct"})
    front = target.config.task_of("web")
    assert front is not None and not front.singleton and front.max > 1
    assert downtime.offline_services(target, plan) == []
    assert downtime.warning(target, plan, installing=False) is None


def test_the_one_task_server_still_announces_its_outage(moto: str) -> None:
    deployment = {"profile": "personal", "database": "task", "cache": "task", "layout": "one-task", "edge": "direct"}
    target, plan = rollout_plan(deployment)
    text = downtime.warning(target, plan, installing=False)
    assert text is not None and "OFFLINE" in text and "no earlier rollout is recorded" in text
    history.record_history(target, Tags("v4.5.4", "v4.5.4"), seconds=151)
    text = downtime.warning(target, plan, installing=False)
    assert text is not None and "the last rollout took 2 min 31 s" in text
    assert downtime.warning(target, plan, installing=True) is None, "a first install takes nothing offline"
