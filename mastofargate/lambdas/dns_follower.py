"""Point the server's A/AAAA records at its running task (the direct edge has no load balancer).

Fired by ECS task state changes and every 5 minutes. Events arrive late, twice or out of order, so the
event is never trusted: each run re-reads which of the service's tasks are RUNNING now (preferring the
newest HEALTHY one during a rollout), their network interface's public IPv4/IPv6, and upserts the records
(TTL 60) only where they differ. While no task
runs, the records are left alone (the next task's address is unknown; a stale answer beats NXDOMAIN).
Environment: CLUSTER, SERVICE, HOSTED_ZONE_ID, RECORD_NAME, and TTL (default 60).
"""

import json
import os
from typing import Any

import boto3


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


def running_task_addresses(ecs: Any, ec2: Any, cluster: str, service: str) -> dict:
    """The newest RUNNING task of the service and its public addresses: {"task", "A", "AAAA"}, or
    {"reason"} (plus "task" when there is one) when there is nothing to point at. `status` reads it too."""
    arns = ecs.list_tasks(cluster=cluster, serviceName=service, desiredStatus="RUNNING")["taskArns"]
    tasks = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"] if arns else []
    running = [t for t in tasks if t.get("lastStatus") == "RUNNING" and t.get("group") == f"service:{service}"]
    if not running:
        return {"reason": "no running task"}
    # During a rollout two tasks run: the new one takes the name once ECS reports it HEALTHY (its Puma has
    # booted), not merely RUNNING; without a healthy one (a first start, health still unknown), the newest.
    healthy = [t for t in running if t.get("healthStatus") == "HEALTHY"]
    task = max(healthy or running, key=lambda t: str(t.get("startedAt") or t.get("createdAt") or ""))
    eni = next(
        (
            d["value"]
            for a in task.get("attachments", [])
            if a.get("type") == "ElasticNetworkInterface"
            for d in a.get("details", [])
            if d.get("name") == "networkInterfaceId"
        ),
        None,
    )
    if not eni:
        return {"reason": "running task has no network interface yet", "task": task["taskArn"]}
    ni = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
    found = {
        "task": task["taskArn"],
        "A": ni.get("Association", {}).get("PublicIp"),
        "AAAA": next((a["Ipv6Address"] for a in ni.get("Ipv6Addresses", [])), None),
    }
    if not found["A"] and not found["AAAA"]:
        return {"reason": "running task has no public address", "task": task["taskArn"]}
    return found


def current_records(r53: Any, zone: str, name: str) -> dict:
    """The name's A/AAAA record sets (plain ones; an alias has no ResourceRecords), by type."""
    name = name.rstrip(".") + "."
    have = {}
    for rrs in r53.list_resource_record_sets(HostedZoneId=zone, StartRecordName=name, MaxItems="10")[
        "ResourceRecordSets"
    ]:
        if rrs["Name"] == name and rrs["Type"] in ("A", "AAAA") and "ResourceRecords" in rrs:
            have[rrs["Type"]] = rrs
    return have


def reconcile(ecs: Any, ec2: Any, r53: Any, cluster: str, service: str, zone: str, name: str, ttl: int = 60) -> dict:
    name = name.rstrip(".") + "."
    found = running_task_addresses(ecs, ec2, cluster, service)
    if "reason" in found:
        return {"action": "none", **found}
    task = {"taskArn": found["task"]}
    want = {"A": found["A"], "AAAA": found["AAAA"]}
    have = current_records(r53, zone, name)
    changes: list[dict[str, Any]] = []
    for kind, address in want.items():
        old = have.get(kind)
        current = [r["Value"] for r in old["ResourceRecords"]] if old else []
        if address and not (old and old.get("TTL") == ttl and current == [address]):
            changes.append(
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": name,
                        "Type": kind,
                        "TTL": ttl,
                        "ResourceRecords": [{"Value": address}],
                    },
                }
            )
        elif not address and old:  # e.g. the new task's subnet has no IPv6: the old AAAA is not the task's
            changes.append({"Action": "DELETE", "ResourceRecordSet": old})
    if changes:
        r53.change_resource_record_sets(
            HostedZoneId=zone, ChangeBatch={"Comment": f"follow {task['taskArn']}", "Changes": changes}
        )
    return {
        "action": "changed" if changes else "unchanged",
        "task": task["taskArn"],
        "A": want["A"],
        "AAAA": want["AAAA"],
        "changes": [c["Action"] + " " + c["ResourceRecordSet"]["Type"] for c in changes],
    }
