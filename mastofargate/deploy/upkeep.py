"""What `status` checks beyond "is it running": the maintenance nobody watches, and the safety nets.

- scheduled jobs: when each last succeeded. ECS forgets a stopped task after about an hour, so the record is
  the success line every scheduled run prints when its command exits 0 (stack/jobs.py SUCCESS_MARKER),
  read back from the tootctl job's log group; runs EventBridge Scheduler could not even start wait in the
  schedules' dead-letter queue.
- services held at zero: the app stack's ServicesEnabled=false (a first install stopped before its
  migrations finished) keeps web, streaming and Sidekiq at zero tasks, which looks "healthy" to ECS.
- the data stack without termination protection (an interrupted first deploy never set it).

Every function reads, never changes, and returns plain data for `status --json`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mastofargate import aws, names

if TYPE_CHECKING:
    from mastofargate.target import Target

DAY_SECONDS = 86400


@dataclass(frozen=True)
class StackFacts:
    name: str
    status: str
    termination_protection: bool
    parameters: dict[str, str]
    created: datetime


def stack_facts(target: Target, stack: str) -> StackFacts | None:
    """One DescribeStacks: status, termination protection, parameters, creation time; None when absent."""
    from botocore.exceptions import ClientError

    with aws.aws_errors(f"reading stack {stack}"):
        try:
            found = target.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
        except ClientError as e:
            if "does not exist" not in str(e):
                raise
            return None
    return StackFacts(
        name=stack,
        status=str(found["StackStatus"]),
        termination_protection=bool(found.get("EnableTerminationProtection", False)),
        parameters={p["ParameterKey"]: str(p.get("ParameterValue", "")) for p in found.get("Parameters", [])},
        created=found["CreationTime"],
    )


def schedules(target: Target) -> dict[str, tuple[str, list[str]]]:
    """{schedule title: (expression, tootctl command)} exactly as the stack builders make them."""
    from mastofargate.stack.context import Build
    from mastofargate.stack.jobs import maintenance_commands

    return {title: (expr, cmd) for title, (cmd, expr) in maintenance_commands(Build(target.config)).items()}


def last_successes(target: Target, since: datetime) -> dict[str, datetime]:
    """When each scheduled job last printed its success line, from the tootctl job's log group (newest per
    title, looking back to `since`). A job missing from the result has not succeeded since then."""
    from botocore.exceptions import ClientError

    from mastofargate.stack.jobs import SUCCESS_MARKER

    logs = target.client("logs")
    found: dict[str, datetime] = {}
    pattern = re.compile(rf"{SUCCESS_MARKER} (\w+)")
    with aws.aws_errors("reading the scheduled jobs' log group"):
        try:
            pages = logs.get_paginator("filter_log_events").paginate(
                logGroupName=names.log_group(target.name, "tootctl"),
                filterPattern=f'"{SUCCESS_MARKER}"',
                startTime=int(since.timestamp() * 1000),
                endTime=int(time.time() * 1000) + 60_000,
            )
            for page in pages:
                for event in page.get("events", []):
                    m = pattern.search(event.get("message", ""))
                    if not m:
                        continue
                    when = datetime.fromtimestamp(event["timestamp"] / 1000, tz=UTC)
                    if m.group(1) not in found or when > found[m.group(1)]:
                        found[m.group(1)] = when
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
    return found


def dead_letters(target: Target) -> int | None:
    """Messages in the schedules' dead-letter queue (runs Scheduler could not start); None without a queue."""
    from botocore.exceptions import ClientError

    from mastofargate.stack.jobs import dead_letter_queue_name

    sqs = target.client("sqs")
    with aws.aws_errors("reading the schedules' dead-letter queue"):
        try:
            url = sqs.get_queue_url(QueueName=dead_letter_queue_name(target.name))["QueueUrl"]
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if "NonExistentQueue" in code or code == "QueueDoesNotExist":
                return None
            raise
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))


def expected_gap(expression: str) -> timedelta:
    """How long a healthy schedule may go without a success: two intervals (one run may fail and be
    retried the next time) plus a day of slack for the flexible window and a slow run."""
    from mastofargate.schedule import DAYS_PER_MONTH, runs_per_month

    runs = runs_per_month(expression)
    interval_days = DAYS_PER_MONTH / runs if runs else DAYS_PER_MONTH
    return timedelta(days=2 * interval_days + 1)


def scheduled_jobs(
    target: Target, app: StackFacts, now: datetime | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows (title, expression, last_success ISO or None, overdue) and the problems they show. A job is
    overdue when the app stack is older than its expected gap and no success is recorded within that gap
    (nor within the log group's retention, which bounds how far back the record reaches)."""
    now = now or datetime.now(UTC)
    retention = timedelta(days=target.config.logs.retention_days)
    jobs = schedules(target)
    found = last_successes(target, now - retention)  # the whole record, to say since when a job is overdue
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for title, (expression, command) in sorted(jobs.items()):
        gap = min(expected_gap(expression), retention)
        last = found.get(title)
        overdue = app.created < now - gap and (last is None or last < now - gap)
        rows.append(
            {
                "name": title,
                "command": " ".join(command),
                "schedule": expression,
                "last_success": last.isoformat(timespec="seconds") if last else None,
                "overdue": overdue,
            }
        )
        if overdue:
            since = f"since {last:%Y-%m-%d %H:%M} UTC" if last else f"in the last {gap.days} days"
            problems.append(
                f"scheduled job {title} ({' '.join(command)}) has not succeeded {since}: see "
                "'mastofargate logs tootctl'"
            )
    depth = dead_letters(target)
    if depth:
        problems.append(
            f"{depth} scheduled run(s) could not be started (dead-letter queue "
            f"{_queue(target)}): see the message for the reason, then purge it"
        )
    return rows, problems


def _queue(target: Target) -> str:
    from mastofargate.stack.jobs import dead_letter_queue_name

    return dead_letter_queue_name(target.name)


def safety_problems(
    target: Target, data: StackFacts | None, app: StackFacts | None, desired: dict[str, int]
) -> list[str]:
    """Services held at zero and a data stack without termination protection, as status problems."""
    problems: list[str] = []
    if data is not None and not data.termination_protection:
        problems.append(
            f"stack {data.name} has no termination protection (an interrupted first deploy leaves it off): run "
            f"'mastofargate deploy', or 'aws cloudformation update-termination-protection "
            f"--enable-termination-protection --stack-name {data.name}'"
        )
    if app is not None and app.parameters.get("ServicesEnabled") == "false":
        problems.append(
            f"services are held at zero tasks (stack {app.name} has ServicesEnabled=false: a first install "
            "stopped before its migrations finished): run 'mastofargate deploy'"
        )
    else:  # held at zero by hand (or by a stuck scaling), not by the config saying desired = 0
        app_roles = ("web", "streaming", "sidekiq")
        wanted = {t.name: t.desired for t in target.config.tasks if any(t.has(r) for r in app_roles)}
        held = [n for n, d in desired.items() if d == 0 and wanted.get(n, 0) > 0]
        if held:
            problems.append(f"service(s) {', '.join(held)} held at zero tasks: run 'mastofargate deploy'")
    return problems


# A nightly backup plus a day of slack (one failed night is retried the next): older means a problem. RDS
# keeps its point-in-time window within minutes of now while its backups work.
BACKUP_MAX_AGE = timedelta(days=2)
# The drill runs monthly: a month, plus a week of slack for a failed run retried the next time.
DRILL_MAX_AGE = timedelta(days=38)


def backup_status(
    target: Target, data: StackFacts | None, now: datetime | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The newest usable backup (time, kind, age) and the last drill's result, and the problems they show:
    no backup newer than BACKUP_MAX_AGE (backup_jobs.overdue), a failed last drill, or none for longer than
    DRILL_MAX_AGE — each only once the data stack is older than that. A few calls: RDS's window and
    snapshots or the dump listing (no manifests, no AWS Backup vault: those hold no newer database backup),
    and one metric query."""
    from mastofargate.deploy import backup_jobs
    from mastofargate.deploy.backups import human_age, newest, restore_points

    now = now or datetime.now(UTC)
    points = restore_points(target, manifests=0, aws_backup=False)
    best = newest(points)
    drill = last_drill(target, now - DRILL_MAX_AGE - timedelta(days=2), now)
    info: dict[str, Any] = {
        "newest": {
            "time": best.time.isoformat(timespec="seconds"),
            "kind": best.kind,
            "id": best.id,
            "age_seconds": int(best.age(now).total_seconds()),
        }
        if best
        else None,
        "overdue": False,
        "max_age_seconds": int(BACKUP_MAX_AGE.total_seconds()),
        "last_drill": drill,
    }
    problems: list[str] = []
    old_enough = data is not None and data.created < now - BACKUP_MAX_AGE
    if old_enough and backup_jobs.overdue(points, BACKUP_MAX_AGE, now):
        info["overdue"] = True
        since = f"the newest is {human_age(best.age(now))} old" if best else "there is none"
        problems.append(
            f"no backup newer than {BACKUP_MAX_AGE.days} days ({since}): take one with 'mastofargate backup "
            "--wait' and see 'mastofargate logs backup'"
        )
    if drill is not None and not drill["succeeded"]:
        problems.append(
            f"the last restore drill FAILED ({drill['time']}): run 'mastofargate backup verify' and see "
            "'mastofargate logs backup'"
        )
    elif drill is None and data is not None and data.created < now - DRILL_MAX_AGE:
        problems.append(f"no restore drill in the last {DRILL_MAX_AGE.days} days: run 'mastofargate backup verify'")
    return info, problems


def last_drill(target: Target, since: datetime, now: datetime) -> dict[str, Any] | None:
    """The newest DrillSucceeded data point (hourly minimum: a failure in the hour wins), or None."""
    from mastofargate.stack.backups import METRIC_NAMESPACE

    with aws.aws_errors("reading the restore drill's metric"):
        found = target.client("cloudwatch").get_metric_statistics(
            Namespace=METRIC_NAMESPACE,
            MetricName="DrillSucceeded",
            Dimensions=[{"Name": "Server", "Value": target.name}],
            StartTime=since,
            EndTime=now + timedelta(minutes=5),
            Period=3600,
            Statistics=["Minimum"],
        )["Datapoints"]
    if not found:
        return None
    point = max(found, key=lambda d: d["Timestamp"])
    return {
        "time": point["Timestamp"].astimezone(UTC).isoformat(timespec="seconds"),
        "succeeded": point["Minimum"] >= 1,
    }
