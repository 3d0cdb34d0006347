"""`mastofargate status`: is the server up, what runs, and where.

Gathering (`collect`) returns plain data, so `--json` and both renderers show the same facts.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption

if TYPE_CHECKING:
    from mypy_boto3_ecs.type_defs import ServiceTypeDef

    from mastofargate.target import Target

VERSION_TAG = re.compile(r"^v?\d+\.\d+\.\d+(?:-(?:alpha|beta|rc)(?:\.?\d+)*)?")


def stack_status(target: Target, stack: str) -> str | None:
    """CloudFormation status of a stack, None when it does not exist."""
    from mastofargate.target import read_state

    state = read_state(target, stack)
    return state.status if state else None


def stack_failed(status: str | None) -> bool:
    """A stack that needs a human, or whose creation failed (UPDATE_ROLLBACK_COMPLETE is fine: the previous
    version is serving)."""
    from mastofargate.target import phase

    return status is not None and (phase(status) == "stuck" or status == "ROLLBACK_COMPLETE")


def image_tag(image: str) -> str:
    """'repo/path:tag' -> 'tag' ('' when the image has no tag; a digest stays as it is)."""
    name = image.rsplit("/", 1)[-1]
    if "@" in name:
        return name.split("@", 1)[1]
    return name.split(":", 1)[1] if ":" in name else ""


def mastodon_version(tags: list[str]) -> str | None:
    """The Mastodon release in a running image tag (tags start with it, e.g. 'v4.5.4' or 'v4.5.4-abc123')."""
    for tag in tags:
        match = VERSION_TAG.match(tag)
        if match:
            return match.group(0)
    return None


def collect(target: Target) -> dict[str, Any]:
    """Everything `status` shows, as JSON-ready data, plus `healthy` and the `problems` that make it false."""
    from mastofargate.deploy import ecs, upkeep
    from mastofargate.errors import MastofargateError

    cfg = target.config
    stack_names = {"data": target.data_stack, "app": target.app_stack}
    facts = {key: upkeep.stack_facts(target, name) for key, name in stack_names.items()}
    stacks = {key: {"name": name, "status": getattr(facts[key], "status", None)} for key, name in stack_names.items()}
    problems = [f"stack {s['name']} is {s['status']}" for s in stacks.values() if stack_failed(s["status"])]
    deployed = any(s["status"] for s in stacks.values())
    if not deployed:
        problems.append("nothing is deployed")
    services: list[dict[str, Any]] = []
    url = None
    if stacks["app"]["status"]:
        url = target.stack_outputs(target.app_stack).get("Url")
        names = [t.name for t in cfg.tasks]  # ECS services; a packed task lists its containers as its role
        found = ecs.describe_services(target, names)
        images = ecs.service_images(target, names)
        roles = {t.name: "+".join(t.roles) for t in cfg.tasks}
        services = [_service_row(n, roles[n], found.get(n), images.get(n, "")) for n in names]
        for row in services:
            row["containers"] = row["role"].split("+")
        for row in services:
            if not row["exists"]:
                problems.append(f"service {row['name']} does not exist")
            elif row["running"] != row["desired"]:
                problems.append(f"service {row['name']} runs {row['running']} of {row['desired']} tasks")
            elif row["rollout_state"] == "FAILED":
                problems.append(f"service {row['name']}: last rollout FAILED: {row['rollout_reason']}")
    problems += upkeep.safety_problems(
        target, facts["data"], facts["app"], {r["name"]: r["desired"] for r in services if r["exists"]}
    )
    schedules: list[dict[str, Any]] = []
    if facts["app"] is not None:
        schedules, schedule_problems = upkeep.scheduled_jobs(target, facts["app"])
        problems += schedule_problems
    backups: dict[str, Any] | None = None
    data_ok = facts["data"] is not None and not stack_failed(facts["data"].status)  # a failed stack is the news
    if data_ok:
        try:
            backups, backup_problems = upkeep.backup_status(target, facts["data"])
            problems += backup_problems
        except MastofargateError as e:  # status still reports everything else
            problems.append(f"the backups could not be read: {e.what}")
    web_tags = [r["image_tag"] for r in services if {"web", "sidekiq"} & set(r["role"].split("+")) and r["image_tag"]]
    from mastofargate.deploy import spot

    fallbacks = spot.on_fallback(target) if stacks["app"]["status"] else []
    running = mastodon_version(web_tags)
    edge = None
    if cfg.deployment.edge == "direct" and stacks["app"]["status"]:
        from mastofargate.deploy import edgecheck

        edge = edgecheck.facts(target)
        problems += edge["problems"]
    return {
        "legacy_secrets": _legacy_secrets(target) if deployed else None,
        "retired_exec_key": _retired_exec_key(target) if data_ok else None,
        "edge": edge,
        "upstream": upstream(running or cfg.deployment.mastodon_version) if deployed else None,
        "queues": sidekiq_queues(target) if stacks["app"]["status"] else None,
        "dashboard": dashboard_link(target) if stacks["app"]["status"] else None,
        "name": target.name,
        "region": target.region,
        "domain": cfg.server.domain,
        "url": url,
        "deployed": deployed,
        "stacks": stacks,
        "services": services,
        "termination_protection": facts["data"].termination_protection if facts["data"] else None,
        "services_enabled": facts["app"].parameters.get("ServicesEnabled") != "false" if facts["app"] else None,
        "schedules": schedules,
        "spot_fallback": [
            {"service": f.service, "since": f.since, "note": f.describe(), "back_at_next_deploy_only": f.singleton}
            for f in fallbacks
        ],
        "backups": backups,
        "mastodon_version": mastodon_version(web_tags),
        "configured_mastodon_version": cfg.deployment.mastodon_version,
        "healthy": not problems,
        "problems": problems,
    }


def _legacy_secrets(target: Target) -> dict[str, Any] | None:
    """The three secrets of a server deployed before the one secret: in use, or unused and how to remove them.
    Never a problem (they cost $0.40/month each, and a deploy never deletes them); unreadable is no news."""
    from mastofargate.deploy import migrate_secrets
    from mastofargate.errors import MastofargateError

    try:
        return migrate_secrets.legacy_status(target)
    except MastofargateError:
        return None


def _legacy_line(data: dict[str, Any]) -> str | None:
    legacy = data.get("legacy_secrets")
    return f"legacy secrets {', '.join(legacy['names'])}: {legacy['note']}" if legacy else None


def _retired_exec_key(target: Target) -> dict[str, Any] | None:
    """The ECS Exec key retired by issue 12, if this server had one: unused since, safe to delete from when,
    and the command (deploy/exec_key.py). Not a problem: it only costs about $1/month until deleted."""
    from datetime import UTC, datetime

    from mastofargate.deploy import exec_key
    from mastofargate.errors import MastofargateError

    try:
        retired = exec_key.read(target)
    except MastofargateError as e:
        return {"error": e.what}
    if retired is None:
        return None
    now = datetime.now(UTC)
    after = retired.safe_after
    return {
        "key_arn": retired.key_arn,
        "unused_since": retired.unused_since.isoformat(),
        "retention_days": retired.retention_days,
        "safe_to_delete_after": after.isoformat() if after else None,
        "safe_to_delete_now": retired.safe(now),
        "deletion_scheduled_for": retired.deletion_date.isoformat() if retired.deletion_date else None,
        "command": "mastofargate retire-key",
        "aws_command": retired.command(),
        "note": retired.describe(now),
    }


def _retired_key_line(data: dict[str, Any]) -> str | None:
    key = data.get("retired_exec_key")
    if not key:
        return None
    return (
        f"kms: {key['note']}" if "note" in key else f"kms: the retired ECS Exec key could not be read: {key['error']}"
    )


def _service_row(name: str, role: str, service: ServiceTypeDef | None, image: str) -> dict[str, Any]:
    from mastofargate.deploy.ecs import primary_deployment

    if service is None:
        return {
            "name": name,
            "role": role,
            "exists": False,
            "desired": 0,
            "running": 0,
            "pending": 0,
            "rollout_state": "MISSING",
            "rollout_reason": "",
            "image_tag": "",
        }
    primary = primary_deployment(service)
    return {
        "name": name,
        "role": role,
        "exists": True,
        "desired": int(service.get("desiredCount", 0)),
        "running": int(service.get("runningCount", 0)),
        "pending": int(service.get("pendingCount", 0)),
        "rollout_state": primary.get("rolloutState", ""),
        "rollout_reason": primary.get("rolloutStateReason", ""),
        "image_tag": image_tag(image),
    }


QUEUE_METRICS_MAX_AGE_S = 600  # the sidecar writes a line a minute; older means it is not running


def sidekiq_queues(target: Target) -> dict[str, Any] | None:
    """The newest backlog line of the queue-metrics sidecar (stack/queue_metrics.py): per-queue sizes and
    waits, retries and dead jobs; None when there is none from the last ten minutes."""
    import time

    from botocore.exceptions import ClientError

    from mastofargate import aws, names
    from mastofargate.stack.queue_metrics import STREAM_PREFIX

    scheduler = next((s for s in target.config.resolved_services if s.role == "sidekiq" and s.singleton), None)
    if scheduler is None:
        return None
    group = names.log_group(target.name, scheduler.name)
    start = int((time.time() - QUEUE_METRICS_MAX_AGE_S) * 1000)
    newest: dict[str, Any] | None = None
    with aws.aws_errors(f"reading the queue metrics in {group}"):
        try:
            pages = (
                target.client("logs")
                .get_paginator("filter_log_events")
                .paginate(logGroupName=group, logStreamNamePrefix=f"{STREAM_PREFIX}/", startTime=start)
            )
            for page in pages:
                for event in page.get("events", []):
                    if newest is None or event["timestamp"] >= newest["timestamp"]:
                        newest = event
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None
            raise
    if newest is None:
        return None
    try:
        line = json.loads(newest["message"])
    except ValueError:
        return None
    return {
        "at": newest["timestamp"],
        "oldest_job_seconds": line.get("OldestJobSeconds"),
        "enqueued": line.get("EnqueuedJobs"),
        "retry": line.get("RetryJobs"),
        "dead": line.get("DeadJobs"),
        "queues": line.get("Queues") or {},
    }


def dashboard_link(target: Target) -> str:
    from mastofargate.stack.observability import dashboard_name, dashboard_url

    return dashboard_url(dashboard_name(target.name), target.region)


def _queue_line(data: dict[str, Any]) -> str | None:
    q = data.get("queues")
    if data.get("queues", 0) is None and data.get("dashboard"):
        return "sidekiq: no queue metrics in the last 10 minutes (is the scheduler's Sidekiq task running?)"
    if not q:
        return None
    per = " ".join(
        f"{name}={v.get('size', 0)}" + (f"({v['latency']:g}s)" if v.get("latency") else "")
        for name, v in sorted(q["queues"].items())
    )
    return (
        f"sidekiq: {per or 'no queues'}; retry={q['retry']} dead={q['dead']} "
        f"oldest job waits {q['oldest_job_seconds']:g}s"
    )


def _edge_lines(data: dict[str, Any]) -> list[str]:
    """The direct edge: where DNS points and where the task is; the certificate the task serves."""
    edge = data.get("edge")
    if not edge:
        return []
    task = edge["task"]
    dns = ", ".join(f"{k} {' '.join(v)}" for k, v in sorted(edge["dns"].items())) or "no A/AAAA record"
    if "reason" in task:
        return [f"dns: {edge['host']} -> {dns}; {task['reason']}"]
    at = ", ".join(f"{k} {' '.join(task[k])}" for k in ("A", "AAAA") if task.get(k))
    serving = "the serving tasks" if len(task["tasks"]) > 1 else "the running task"
    verdict = f"points at {serving}" if edge.get("dns_points_at_task") else f"NOT {serving} ({at})"
    lines = [f"dns: {edge['host']} -> {dns}: {verdict}"]
    cert = edge.get("certificate") or {}
    if "error" in cert:
        lines.append(f"certificate: none served yet ({cert['error']})")
    elif cert:
        lines.append(
            f"certificate: expires {cert['expires']} ({cert['days_left']:g} days left), issuer {cert['issuer'] or '?'}"
            + ("" if cert["names_host"] else f", does NOT name {edge['host']}")
        )
    return lines


def upstream(version: str) -> dict[str, Any]:
    """Newer Mastodon releases than `version` (what `versions --json` shows), or why they are unknown. Never
    fails status: being behind is news, not a fault, and an offline machine still gets its status."""
    import os

    from mastofargate import releases
    from mastofargate.errors import MastofargateError

    registry = os.environ.get(releases.REGISTRY_ENV) or releases.DEFAULT_REGISTRY
    try:
        return releases.check(version, registry)
    except MastofargateError as e:
        return {"pinned": version, "registry": registry, "behind": None, "error": e.what}


def _upstream_line(data: dict[str, Any]) -> str | None:
    up = data.get("upstream")
    if not up:
        return None
    if up.get("behind") is None:
        return f"releases: unknown ({up.get('error', 'registry not read')})"
    if not up["behind"]:
        return f"releases: {up['pinned']} is the newest"
    parts = [f"newest patch {up['newest_patch']}"] if up.get("newest_patch") else []
    if up.get("newest") != up.get("newest_patch"):
        parts.append(f"newest {up['newest']}")
    return (
        f"releases: BEHIND {up['pinned']} ({len(up['newer'])} newer: {', '.join(parts)}); see 'mastofargate versions'"
    )


def _version_line(data: dict[str, Any]) -> str:
    running, configured = data["mastodon_version"], data["configured_mastodon_version"]
    if running is None:
        return f"unknown (config: {configured})"
    return running if running == configured else f"{running} (config says {configured}: deploy to change)"


def _backup_lines(data: dict[str, Any]) -> list[str]:
    """The newest backup and the last drill, one line each."""
    from datetime import timedelta

    from mastofargate.deploy.backups import human_age

    b = data.get("backups")
    if not b:
        return []
    newest = b.get("newest")
    if newest:
        age = human_age(timedelta(seconds=newest["age_seconds"]))
        flag = " OVERDUE" if b.get("overdue") else ""
        first = f"backup: newest {newest['kind']} {newest['time']} ({age} old){flag}"
    else:
        first = "backup: none yet" + (" OVERDUE" if b.get("overdue") else "")
    drill = b.get("last_drill")
    second = (
        f"drill: last {'passed' if drill['succeeded'] else 'FAILED'} {drill['time']}"
        if drill
        else "drill: none recorded (run 'mastofargate backup verify')"
    )
    return [first, second]


def render_plain(data: dict[str, Any]) -> None:
    """One fact per line: readable in CI logs and easy to grep."""
    echo = typer.echo
    echo(f"server: {data['domain']} ({data['name']}, {data['region']})")
    for key, stack in data["stacks"].items():
        echo(f"stack {key}: {stack['name']} {stack['status'] or 'not deployed'}")
    if not data["deployed"]:
        echo("not deployed: run 'mastofargate deploy' to create it")
        return
    echo(f"url: {data['url'] or '-'}")
    echo(f"mastodon: {_version_line(data)}")
    if line := _upstream_line(data):
        echo(line)
    if line := _queue_line(data):
        echo(line)
    if data.get("dashboard"):
        echo(f"dashboard: {data['dashboard']}")
    for row in data["services"]:
        packed = f" containers={','.join(row['containers'])}" if len(row.get("containers", [])) > 1 else ""
        echo(
            f"service {row['name']}: desired={row['desired']} running={row['running']} pending={row['pending']} "
            f"rollout={row['rollout_state'] or '-'} image={row['image_tag'] or '-'}{packed}"
        )
    for job in data.get("schedules", []):
        echo(f"schedule {job['name']}: {job['schedule']} last success={job['last_success'] or 'none recorded'}")
    for fb in data.get("spot_fallback", []):
        echo(f"spot fallback: {fb['note']}")
    for line in _edge_lines(data):
        echo(line)
    for line in _backup_lines(data):
        echo(line)
    for line in filter(None, (_legacy_line(data), _retired_key_line(data))):
        echo(line)
    echo("healthy" if data["healthy"] else "unhealthy: " + "; ".join(data["problems"]))


def render_rich(data: dict[str, Any]) -> None:
    """Names, statuses and problems come from the config and from AWS: escaped, never read as markup."""
    from rich.markup import escape
    from rich.table import Table

    from mastofargate.ui import console

    c = console()
    c.print(f"[bold]{escape(data['domain'])}[/] ({escape(data['name'])}, {escape(data['region'])})")
    for key, stack in data["stacks"].items():
        status = stack["status"]
        colour = "red" if stack_failed(status) else "green" if status and status.endswith("_COMPLETE") else "yellow"
        c.print(f"  {key} stack {escape(stack['name'])}: [{colour}]{escape(status or 'not deployed')}[/]")
    if not data["deployed"]:
        c.print("Not deployed: run [bold]mastofargate deploy[/] to create it.")
        return
    c.print(f"  URL: {escape(data['url'] or '-')}    Mastodon: {escape(_version_line(data))}")
    for line in (_upstream_line(data), _queue_line(data)):
        if line:
            c.print(f"  {line}", markup=False, highlight=False)
    if data.get("dashboard"):
        c.print(f"  Dashboard: {data['dashboard']}", markup=False, highlight=False)
    if data["services"]:
        table = Table("service", "desired", "running", "pending", "rollout", "image tag")
        for row in data["services"]:
            ok = row["exists"] and row["running"] == row["desired"] and row["rollout_state"] != "FAILED"
            containers = row.get("containers", [])
            table.add_row(
                escape(row["name"] + (f" ({', '.join(containers)})" if len(containers) > 1 else "")),
                str(row["desired"]),
                f"[{'green' if ok else 'red'}]{row['running']}[/]",
                str(row["pending"]),
                escape(row["rollout_state"] or "-"),
                escape(row["image_tag"] or "-"),
            )
        c.print(table)
    for job in data.get("schedules", []):
        last = job["last_success"] or "none recorded"
        c.print(f"  schedule {escape(job['name'])} ({escape(job['schedule'])}): last success {escape(last)}")
    for fb in data.get("spot_fallback", []):
        c.print(f"  [yellow]Spot fallback:[/] {escape(fb['note'])}")
    for line in _edge_lines(data):
        c.print(f"  {line}", markup=False, highlight=False)
    for line in _backup_lines(data):
        c.print(f"  {line}", markup=False, highlight=False)
    for line in filter(None, (_legacy_line(data), _retired_key_line(data))):
        c.print(f"  {line}", markup=False, highlight=False)
    c.print("[green]healthy[/]" if data["healthy"] else "[red]unhealthy:[/] " + escape("; ".join(data["problems"])))


def status(
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (only JSON on stdout).")] = False,
) -> None:
    """Show both stacks, each ECS service's tasks and rollout, the running image tags, Mastodon version and URL.

    Exit status: 0 when healthy; 1 when nothing is deployed, a stack is in a failed state, a service does
    not exist, is not at its desired task count, is held at zero, or its last rollout FAILED, the data stack
    lacks termination protection, a scheduled job (media cleanup) is overdue or could not start, no backup
    is newer than two days, or the last restore drill failed (or none ran for 38 days).
    """
    from mastofargate.config import load_config
    from mastofargate.target import Target
    from mastofargate.ui import is_ci

    data = collect(Target(load_config(config)))
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
    elif is_ci():
        render_plain(data)
    else:
        render_rich(data)
    if not data["healthy"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("status")(status)
