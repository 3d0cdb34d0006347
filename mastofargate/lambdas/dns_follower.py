"""Point the server's A/AAAA records at its serving tasks (the direct edge has no load balancer).

Fired by ECS task state changes and on a schedule. Events arrive late, twice or out of order, so the
event is never trusted: each run re-reads the edge service's tasks from ECS and publishes every one that
is RUNNING, still meant to run (desiredStatus RUNNING) and HEALTHY, as a multi-value record (sorted, so
the same set is always the same record; TTL 60), changed only where it differs. Several tasks (a front
that autoscales, or a rolling deployment that starts the new task before it stops the old) each get their
share of clients. A task ECS is stopping (desiredStatus STOPPED; lastStatus DEACTIVATING, STOPPING...) is
dropped at the first run that sees it, while its Caddy still serves for a TTL (stack/direct_edge.py DRAIN_SECONDS).
With no healthy task (a first start: health not known yet) the newest running one is published; while no
task runs, the records are left alone (the next task's address is unknown; a stale answer beats NXDOMAIN).
ECS sends no event when a task turns HEALTHY: the scheduled run adds it.
Environment: CLUSTER, SERVICE, HOSTED_ZONE_ID, RECORD_NAME, and TTL (default 60).
"""

import json
import os
from typing import Any

import boto3

KINDS = ("A", "AAAA")


def handler(event: dict[str, Any] | None, context: Any) -> dict:
    ecs, ec2, r53 = boto3.client("ecs"), boto3.client("ec2"), boto3.client("route53")
    env = os.environ
    result = reconcile(
        ecs,
        ec2,
        r53,
        env["CLUSTER"],
        env["SERVICE"],
        env["HOSTED_ZONE_ID"],
        env["RECORD_NAME"],
        int(env.get("TTL", "60")),
    )
    print(json.dumps({"trigger": (event or {}).get("detail-type"), **result}))
    return result


def _eni(task: dict) -> str | None:
    for attachment in task.get("attachments", []):
        if attachment.get("type") == "ElasticNetworkInterface":
            for detail in attachment.get("details", []):
                if detail.get("name") == "networkInterfaceId":
                    return detail["value"]
    return None


def serving_tasks(ecs: Any, cluster: str, service: str) -> list[dict]:
    """The service's tasks that should take traffic: every RUNNING task ECS still means to run that reports
    HEALTHY; with none healthy, the newest running one (a first start); [] when none runs."""
    arns: list[str] = []
    for page in ecs.get_paginator("list_tasks").paginate(cluster=cluster, serviceName=service, desiredStatus="RUNNING"):
        arns += page["taskArns"]
    tasks: list[dict] = []
    for i in range(0, len(arns), 100):  # DescribeTasks takes at most 100 tasks
        tasks += ecs.describe_tasks(cluster=cluster, tasks=arns[i : i + 100])["tasks"]
    # Listed as meant to run a moment ago, but ECS may have decided to stop it since: desiredStatus says so
    # first, before lastStatus leaves RUNNING (the ECS task lifecycle).
    running = [
        t
        for t in tasks
        if t.get("lastStatus") == "RUNNING"
        and t.get("desiredStatus", "RUNNING") == "RUNNING"
        and t.get("group") == f"service:{service}"
    ]
    healthy = [t for t in running if t.get("healthStatus") == "HEALTHY"]
    if healthy:
        return sorted(healthy, key=lambda t: t["taskArn"])
    newest = max(running, key=lambda t: str(t.get("startedAt") or t.get("createdAt") or ""), default=None)
    return [newest] if newest else []


def running_task_addresses(ecs: Any, ec2: Any, cluster: str, service: str) -> dict:
    """The serving tasks and their public addresses: {"tasks": [arn...], "A": [...], "AAAA": [...]} (sorted,
    each task's own addresses), or {"reason"} (plus "tasks") when there is nothing to point at. `status`
    reads it too."""
    tasks = serving_tasks(ecs, cluster, service)
    if not tasks:
        return {"reason": "no running task"}
    arns = [t["taskArn"] for t in tasks]
    enis = [e for e in (_eni(t) for t in tasks) if e]
    if not enis:
        return {"reason": "running task has no network interface yet", "tasks": arns}
    found: dict[str, Any] = {"tasks": arns, "A": [], "AAAA": []}
    # A filter, not NetworkInterfaceIds: an interface gone since (its task stopped) is left out, not an error.
    filters = [{"Name": "network-interface-id", "Values": enis}]
    for ni in ec2.describe_network_interfaces(Filters=filters)["NetworkInterfaces"]:
        v4 = ni.get("Association", {}).get("PublicIp")
        v6 = next((a["Ipv6Address"] for a in ni.get("Ipv6Addresses", [])), None)
        found["A"] += [v4] if v4 else []
        found["AAAA"] += [v6] if v6 else []
    if not found["A"] and not found["AAAA"]:
        return {"reason": "running task has no public address", "tasks": arns}
    found["A"], found["AAAA"] = sorted(set(found["A"])), sorted(set(found["AAAA"]))
    return found


def current_records(r53: Any, zone: str, name: str) -> dict:
    """The name's A/AAAA record sets (plain ones; an alias has no ResourceRecords), by type."""
    name = name.rstrip(".") + "."
    have = {}
    for rrs in r53.list_resource_record_sets(HostedZoneId=zone, StartRecordName=name, MaxItems="10")[
        "ResourceRecordSets"
    ]:
        if rrs["Name"] == name and rrs["Type"] in KINDS and "ResourceRecords" in rrs:
            have[rrs["Type"]] = rrs
    return have


def reconcile(ecs: Any, ec2: Any, r53: Any, cluster: str, service: str, zone: str, name: str, ttl: int = 60) -> dict:
    name = name.rstrip(".") + "."
    found = running_task_addresses(ecs, ec2, cluster, service)
    if "reason" in found:
        return {"action": "none", **found}
    have = current_records(r53, zone, name)
    changes: list[dict[str, Any]] = []
    for kind in KINDS:
        want, old = found[kind], have.get(kind)
        current = sorted(r["Value"] for r in old["ResourceRecords"]) if old else []
        if want and not (old and old.get("TTL") == ttl and current == want):
            changes.append(
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": name,
                        "Type": kind,
                        "TTL": ttl,
                        "ResourceRecords": [{"Value": address} for address in want],
                    },
                }
            )
        elif not want and old:  # e.g. the tasks' subnet has no IPv6: the old AAAA is none of theirs
            changes.append({"Action": "DELETE", "ResourceRecordSet": old})
    if changes:
        tasks = ", ".join(arn.rsplit("/", 1)[-1] for arn in found["tasks"])
        r53.change_resource_record_sets(
            HostedZoneId=zone, ChangeBatch={"Comment": f"follow {tasks}"[:256], "Changes": changes}
        )
    return {
        "action": "changed" if changes else "unchanged",
        "tasks": found["tasks"],
        "A": found["A"],
        "AAAA": found["AAAA"],
        "changes": [c["Action"] + " " + c["ResourceRecordSet"]["Type"] for c in changes],
    }
