"""CloudWatch Logs of services and one-off tasks: the last lines, or new lines as they arrive.

Every container logs through awslogs to `/mastofargate/{name}/{service-or-job}`, one stream per task
(`prefix/container/task-id`), so "the logs of web" means all streams of one group, interleaved by time.
Functions here return plain strings; printing (and any colour) is the caller's business.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mastofargate import aws
from mastofargate.deploy.polling import Clock, SystemClock

if TYPE_CHECKING:
    from mastofargate.target import Target

# awslogs delivers late: an event can show up seconds after later ones. `follow` re-reads this window
# each poll and drops what it has already shown, so late events are not lost.
LATE_EVENTS_SECONDS = 30


def log_group(target: Target, service_or_job: str) -> str:
    return f"/mastofargate/{target.name}/{service_or_job}"


def container_of(target: Target, service_or_job: str) -> str:
    """Container name inside a task: a service's role (web, sidekiq, ...), "mastodon" for one-off jobs, and
    the database setup task's own."""
    from mastofargate.stack import dbsetup
    from mastofargate.stack.jobs import JOB_CONTAINER
    from mastofargate.stack.services import container_name

    if service_or_job == dbsetup.JOB:
        return dbsetup.CONTAINER
    for size in target.config.all_services:
        if size.name == service_or_job:
            return container_name(size)
    return JOB_CONTAINER


def stream_name(prefix: str, container: str, task_id: str) -> str:
    """The awslogs stream of one task: `prefix/container/task-id`."""
    return f"{prefix}/{container}/{task_id}"


def group_exists(target: Target, service_or_job: str) -> bool:
    group = log_group(target, service_or_job)
    with aws.aws_errors(f"looking up log group {group}"):
        found = target.client("logs").describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    return any(g["logGroupName"] == group for g in found)


def format_event(event: dict[str, Any], *, with_task: bool) -> list[str]:
    """One line per line of the message: UTC time (Mastodon logs in UTC too), then the short task id when
    several tasks' streams are interleaved."""
    stamp = datetime.fromtimestamp(event["timestamp"] / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    head = f"{stamp} [{event.get('logStreamName', '').rsplit('/', 1)[-1][:8]}]" if with_task else stamp
    return [f"{head} {line}" for line in message_lines(event["message"])]


def message_lines(message: str) -> list[str]:
    return message.rstrip("\n").split("\n")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _events(target: Target, group: str, start_ms: int, streams: list[str] | None) -> Iterator[dict[str, Any]]:
    """Every event of `group` (or of `streams` in it) since start_ms, oldest first; none if the group or
    the streams do not exist yet."""
    logs = target.client("logs")
    # interleaved: ignored by AWS (always interleaved by time there); moto needs it to merge streams.
    kwargs: dict[str, Any] = {"logGroupName": group, "startTime": start_ms, "interleaved": True}
    if streams:
        kwargs["logStreamNames"] = streams
    from botocore.exceptions import ClientError

    with aws.aws_errors(f"reading logs of {group}"):
        try:
            for page in logs.get_paginator("filter_log_events").paginate(**kwargs):
                yield from page.get("events", [])
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise


def tail(
    target: Target,
    service_or_job: str,
    *,
    since_seconds: float = 600,
    limit: int = 200,
    task_id: str | None = None,
) -> list[str]:
    """The last `limit` lines of a service or job (of one task when task_id is given), oldest first.

    An empty list when nothing was logged in the window or the log group does not exist (yet): callers
    that report a failure must not fail again while gathering its cause.
    """
    group = log_group(target, service_or_job)
    streams = [stream_name(service_or_job, container_of(target, service_or_job), task_id)] if task_id else None
    lines: deque[str] = deque(maxlen=limit)
    for event in _events(target, group, _now_ms() - int(since_seconds * 1000), streams):
        lines.extend(format_event(event, with_task=task_id is None))
    return list(lines)


def follow(
    target: Target,
    service_or_job: str,
    *,
    since_seconds: float = 600,
    on_line: Callable[[str], None],
    stop: Callable[[], bool],
    poll: float = 2.0,
    clock: Clock | None = None,
) -> None:
    """Call on_line for each line logged since `since_seconds` ago, then for each new one, until stop()
    is true (checked after every poll). Ctrl-C (KeyboardInterrupt) propagates to the caller."""
    group = log_group(target, service_or_job)
    cursor = _now_ms() - int(since_seconds * 1000)
    seen: dict[tuple[str, str], int] = {}  # (stream, eventId) -> timestamp, for the re-read window only
    while True:
        for event in _events(target, group, cursor, None):
            key = (event.get("logStreamName", ""), str(event.get("eventId", "")))
            if key in seen:
                continue
            seen[key] = event["timestamp"]
            for line in format_event(event, with_task=True):
                on_line(line)
        cursor = max(cursor, _now_ms() - LATE_EVENTS_SECONDS * 1000)
        seen = {k: ts for k, ts in seen.items() if ts >= cursor}
        if stop():
            return
        (clock or SystemClock()).sleep(poll)


class StreamReader:
    """Reads one log stream forward from its start, across calls: the live output of a one-off task.

    The stream appears only once the container has started, so a missing stream just means "nothing yet".
    """

    def __init__(self, target: Target, group: str, stream: str) -> None:
        self.target = target
        self.group = group
        self.stream = stream
        self._token: str | None = None

    def read(self) -> list[str]:
        from botocore.exceptions import ClientError

        logs = self.target.client("logs")
        lines: list[str] = []
        with aws.aws_errors(f"reading log stream {self.stream}"):
            while True:
                kwargs: dict[str, Any] = {"logGroupName": self.group, "logStreamName": self.stream}
                kwargs.update({"nextToken": self._token} if self._token else {"startFromHead": True})
                try:
                    page = logs.get_log_events(**kwargs)
                except ClientError as e:
                    if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                        return lines
                    raise
                for event in page.get("events", []):
                    lines.extend(message_lines(event["message"]))
                token = page.get("nextForwardToken")
                if not page.get("events") or token in (None, self._token):
                    self._token = token or self._token
                    return lines
                self._token = token
