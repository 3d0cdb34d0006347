"""Move a Fargate Spot service to on-demand Fargate when Spot has no capacity, and back to Spot later.

ECS does not fall back by itself: a service whose strategy says FARGATE_SPOT just cannot place its task and
reports a `SERVICE_TASK_PLACEMENT_FAILURE` service action event (capacityProviderArns .../FARGATE_SPOT,
reason "RESOURCE:FARGATE"). A personal server must not wait hours for capacity, so:

  - Placement failure of a service of this cluster whose strategy uses FARGATE_SPOT: UpdateService to
    [FARGATE, weight 1] with forceNewDeployment (ECS refuses a strategy change without a new deployment),
    and the service is tagged `mastofargate:spot-fallback` (when, UTC) and `mastofargate:spot-strategy`
    (the strategy to return to, as `PROVIDER:BASE:WEIGHT` items: tag values allow no JSON). Anything else
    (another cluster, on-demand capacity, a service already off Spot, a duplicate event) changes nothing.
  - Hourly: a service on the fallback for RETRY_HOURS or more whose deployments keep the old task serving
    until the new one runs (minimumHealthyPercent >= 100) gets its Spot strategy back (again with a new
    deployment) and loses the tags. If Spot still has no capacity, its new task cannot be placed, the
    on-demand task keeps serving, and the next placement failure brings it back here: no outage either way.
    Singletons (maximumPercent <= 100: the one-task server, the scheduler Sidekiq, a Redis task) are never
    retried here: ECS would stop their only task before knowing whether Spot can place the next one. The
    next `mastofargate deploy` returns them to Spot (it restarts them anyway).

Every run prints one JSON line (the record in CloudWatch Logs). Environment: CLUSTER, RETRY_HOURS (6).
Standard library and boto3 only: the template embeds this file as inline code.
"""

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

SINCE_TAG = "mastofargate:spot-fallback"
STRATEGY_TAG = "mastofargate:spot-strategy"
SPOT = "FARGATE_SPOT"
ON_DEMAND = [{"capacityProvider": "FARGATE", "weight": 1, "base": 0}]


def handler(event: dict[str, Any] | None, context: Any) -> dict:
    ecs = boto3.client("ecs")
    cluster = os.environ["CLUSTER"]
    event = event or {}
    if event.get("detail-type") == "ECS Service Action":
        result = on_placement_failure(ecs, cluster, event)
    else:
        result = retry_spot(ecs, cluster, float(os.environ.get("RETRY_HOURS", "6")), datetime.now(UTC))
    print(json.dumps({"trigger": event.get("detail-type"), **result}, default=str))
    return result


def encode(strategy: list[dict[str, Any]]) -> str:
    """[{capacityProvider, base, weight}] as a tag value: 'FARGATE:1:0 FARGATE_SPOT:0:1'."""
    return " ".join(f"{s['capacityProvider']}:{int(s.get('base', 0))}:{int(s.get('weight', 0))}" for s in strategy)


def decode(text: str) -> list[dict[str, Any]]:
    out = []
    for item in text.split():
        provider, base, weight = item.split(":")
        out.append({"capacityProvider": provider, "base": int(base), "weight": int(weight)})
    return out


def uses_spot(service: dict[str, Any]) -> bool:
    return any(s.get("capacityProvider") == SPOT for s in service.get("capacityProviderStrategy") or [])


def on_placement_failure(ecs: Any, cluster: str, event: dict[str, Any]) -> dict:
    detail = event.get("detail") or {}
    providers = detail.get("capacityProviderArns") or []
    if detail.get("eventName") != "SERVICE_TASK_PLACEMENT_FAILURE":
        return {"action": "none", "reason": f"not a placement failure: {detail.get('eventName')}"}
    if not any(str(p).endswith("/" + SPOT) for p in providers):
        return {"action": "none", "reason": "the failed placement was not on Fargate Spot"}
    arn = next((r for r in event.get("resources") or [] if ":service/" in r), "")
    parts = arn.split(":service/", 1)[-1].split("/")
    if len(parts) != 2 or parts[0] != cluster:
        return {"action": "none", "reason": f"not a service of cluster {cluster}: {arn or 'no service'}"}
    name = parts[1]
    found = ecs.describe_services(cluster=cluster, services=[name], include=["TAGS"])["services"]
    if not found or found[0].get("status") != "ACTIVE":
        return {"action": "none", "reason": f"service {name} is not active", "service": name}
    service = found[0]
    if not uses_spot(service):
        return {"action": "none", "reason": "already on on-demand Fargate", "service": name}
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ecs.update_service(cluster=cluster, service=name, capacityProviderStrategy=ON_DEMAND, forceNewDeployment=True)
    ecs.tag_resource(
        resourceArn=service["serviceArn"],
        tags=[
            {"key": SINCE_TAG, "value": now},
            {"key": STRATEGY_TAG, "value": encode(service["capacityProviderStrategy"])},
        ],
    )
    return {
        "action": "fallback",
        "service": name,
        "since": now,
        "from": encode(service["capacityProviderStrategy"]),
        "reason": detail.get("reason"),
    }


def _services(ecs: Any, cluster: str) -> list[dict[str, Any]]:
    arns: list[str] = []
    for page in ecs.get_paginator("list_services").paginate(cluster=cluster):
        arns += page["serviceArns"]
    out = []
    for i in range(0, len(arns), 10):  # DescribeServices takes at most 10
        out += ecs.describe_services(cluster=cluster, services=arns[i : i + 10], include=["TAGS"])["services"]
    return out


def retry_spot(ecs: Any, cluster: str, retry_hours: float, now: datetime) -> dict:
    retried, waiting, singletons = [], [], []
    for service in _services(ecs, cluster):
        tags = {t["key"]: t["value"] for t in service.get("tags") or []}
        if SINCE_TAG not in tags or STRATEGY_TAG not in tags:
            continue
        name = service["serviceName"]
        if uses_spot(service):  # back on Spot by other means (a deploy, a rollback): the record is stale
            ecs.untag_resource(resourceArn=service["serviceArn"], tagKeys=[SINCE_TAG, STRATEGY_TAG])
            continue
        deployment = service.get("deploymentConfiguration") or {}
        if deployment.get("maximumPercent", 200) <= 100 or deployment.get("minimumHealthyPercent", 100) < 100:
            singletons.append(name)
            continue
        since = datetime.strptime(tags[SINCE_TAG], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if now - since < timedelta(hours=retry_hours):
            waiting.append(name)
            continue
        ecs.update_service(
            cluster=cluster,
            service=name,
            capacityProviderStrategy=decode(tags[STRATEGY_TAG]),
            forceNewDeployment=True,
        )
        ecs.untag_resource(resourceArn=service["serviceArn"], tagKeys=[SINCE_TAG, STRATEGY_TAG])
        retried.append(name)
    return {
        "action": "retried" if retried else "none",
        "retried": retried,
        "waiting": waiting,
        "left_for_the_next_deploy": singletons,
    }
