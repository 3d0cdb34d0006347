"""ECS at run time: one-off tasks (migrations, tootctl), watching service rollouts, what is running.

A one-off task is polled through deploy.polling (its log lines are streamed while it runs, which no
waiter does); services are read here and watched by deploy.rollout while CloudFormation updates them (the
`services_stable` waiter gives up after 10 minutes and cannot tell a circuit-breaker rollback from
success, aws.md). Functions return data; rendering is the caller's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mastofargate import aws
from mastofargate.aws import NotFound
from mastofargate.deploy import logs
from mastofargate.deploy.polling import DEFAULT_INTERVAL, Clock, Poller, SystemClock
from mastofargate.errors import EXIT_TIMEOUT, MastofargateError

if TYPE_CHECKING:
    from mypy_boto3_ecs.type_defs import (
        ContainerOverrideTypeDef,
        ContainerTypeDef,
        DeploymentTypeDef,
        NetworkConfigurationTypeDef,
        ServiceEventTypeDef,
        ServiceTypeDef,
        TaskTypeDef,
    )

    from mastofargate.target import Target

LOG_TAIL_LINES = 30
EVENTS_SHOWN = 5
STOPPED_SHOWN = 3
DESCRIBE_BATCH = 10  # describe_services takes at most 10 names per call
STARTED_BY = "mastofargate"
PURPOSE_TAG = "mastofargate:purpose"
# Fields describe_task_definition returns that register_task_definition refuses.
READ_ONLY_FIELDS = (
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
)


@dataclass(frozen=True)
class StoppedTask:
    task_arn: str
    stopped_reason: str
    exit_code: int | None
    container_reason: str
    container: str = ""  # the container that stopped the task (named when the task has several)
    containers: int = 1

    @property
    def summary(self) -> str:
        """stoppedReason with the container's own reason (e.g. OutOfMemoryError) when it adds something, and
        the container's name when the task holds several (which of them stopped it)."""
        own = self.container_reason if self.container_reason not in self.stopped_reason else ""
        if self.containers > 1 and self.container:
            own = f"container {self.container}" + (f": {own}" if own else "")
        if own:
            return f"{self.stopped_reason} ({own})" if self.stopped_reason else own
        return self.stopped_reason


@dataclass(frozen=True)
class TaskResult:
    task_arn: str
    task_definition: str
    exit_code: int | None
    stopped_reason: str
    log_tail: list[str]

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class ServiceProgress:
    service: str
    desired: int
    running: int
    pending: int
    failed_tasks: int
    rollout_state: str
    rollout_reason: str


# --- one-off tasks -------------------------------------------------------------------------------------


def run_one_off(
    target: Target,
    family: str,
    command: list[str] | None = None,
    *,
    image: str | None = None,
    environment: dict[str, str] | None = None,
    timeout: float = 1800,
    poll: float = DEFAULT_INTERVAL,
    clock: Clock | None = None,
    on_line: Callable[[str], None] | None = None,
) -> TaskResult:
    """Start one task of `family` on on-demand FARGATE (never Spot: a migration cut short by a Spot
    reclaim is worse than the saving), stream its log lines to on_line while it runs, return its result.

    A non-zero exit is returned, not raised (the caller decides); a timeout stops the task and raises
    exit code 3 naming it.
    """
    definition = latest_task_definition(target, family)
    if image and container_image(definition) != image:
        definition = register_with_image(target, definition, image)
    task_arn = _start_task(target, definition, command, environment)
    reader = _log_reader(target, family, definition, task_arn)
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)

    def pump() -> None:
        for line in reader.read():
            tail.append(line)
            if on_line:
                on_line(line)

    poller = Poller(clock or SystemClock(), poll)
    deadline = poller.deadline(timeout)
    while True:
        task = describe_task(target, task_arn)
        pump()
        if task.get("lastStatus") == "STOPPED":
            break
        if poller.expired(deadline):
            _give_up(target, family, task, timeout)
        poller.pause(deadline)
    pump()  # awslogs flushes the last lines as the container exits
    stopped = stopped_task(task, _container_name(definition))
    return TaskResult(
        task_arn=task_arn,
        task_definition=task.get("taskDefinitionArn", definition["taskDefinitionArn"]),
        exit_code=stopped.exit_code,
        stopped_reason=stopped.summary,
        log_tail=list(tail),
    )


def start_one_off(
    target: Target, family: str, command: list[str] | None = None, environment: dict[str, str] | None = None
) -> str:
    """Start one task of `family` as run_one_off does and return its ARN without following it (a backup
    started without --wait runs on by itself)."""
    return _start_task(target, latest_task_definition(target, family), command, environment)


def latest_task_definition(target: Target, family: str) -> dict[str, Any]:
    """The family's latest ACTIVE revision, with its tags under the key "tags"."""
    try:
        with aws.aws_errors(f"reading task definition {family}"):
            resp = target.ecs.describe_task_definition(taskDefinition=family, include=["TAGS"])
    except NotFound as e:
        raise MastofargateError(
            f"There is no task definition {family}.",
            why=e.what,
            fix="deploy first ('mastofargate deploy'); one-off tasks come with the app stack",
        ) from None
    return {**resp["taskDefinition"], "tags": resp.get("tags", [])}


def container_image(definition: Mapping[str, Any]) -> str:
    return str(definition["containerDefinitions"][0].get("image", ""))


def _container_name(definition: dict[str, Any]) -> str:
    return str(definition["containerDefinitions"][0]["name"])


def register_with_image(target: Target, definition: dict[str, Any], image: str) -> dict[str, Any]:
    """Register a copy of `definition` whose container runs `image`, everything else unchanged.

    Pre-deployment migrations must run on the new image before the services roll, but CloudFormation
    registers the new revision only with the rollout. The copy is tagged so a human sees why it exists.
    """
    spec = {k: v for k, v in definition.items() if k not in (*READ_ONLY_FIELDS, "tags")}
    spec["containerDefinitions"] = [
        {**c, "image": image} if i == 0 else c for i, c in enumerate(definition["containerDefinitions"])
    ]
    why = f"one-off copy of {definition['family']}:{definition.get('revision')} on image {image}"
    tags = [t for t in definition.get("tags", []) if t.get("key") != PURPOSE_TAG]
    tags.append({"key": PURPOSE_TAG, "value": why[:256]})
    with aws.aws_errors(f"registering a copy of {definition['family']} on image {image}"):
        resp = target.ecs.register_task_definition(**spec, tags=tags)
    return {**resp["taskDefinition"], "tags": resp.get("tags", tags)}


def _network(target: Target) -> NetworkConfigurationTypeDef:
    try:
        return target.network_configuration()
    except KeyError:
        raise MastofargateError(
            f"Stack {target.data_stack} has no network outputs (SubnetIds, TaskSecurityGroupId).",
            why="the data stack is not deployed (or not completely)",
            fix="run 'mastofargate deploy' first",
        ) from None


def _start_task(
    target: Target, definition: dict[str, Any], command: list[str] | None, environment: dict[str, str] | None
) -> str:
    override: ContainerOverrideTypeDef = {"name": _container_name(definition)}
    if command:
        override["command"] = list(command)
    if environment:
        override["environment"] = [{"name": k, "value": v} for k, v in sorted(environment.items())]
    family = str(definition["family"])
    with aws.aws_errors(f"starting a {family} task"):
        resp = target.ecs.run_task(
            cluster=target.cluster,
            taskDefinition=definition["taskDefinitionArn"],
            count=1,
            launchType="FARGATE",
            platformVersion="LATEST",
            networkConfiguration=_network(target),
            overrides={"containerOverrides": [override]},
            startedBy=STARTED_BY,
            propagateTags="TASK_DEFINITION",
        )
    tasks = resp.get("tasks", [])
    if not tasks:
        reasons = "; ".join(f"{f.get('reason', '?')} {f.get('detail', '')}".strip() for f in resp.get("failures", []))
        raise MastofargateError(
            f"ECS did not start a {family} task.",
            why=reasons or "run_task returned no task",
            fix="check the cluster's capacity providers and the task definition, then try again",
        )
    return str(tasks[0]["taskArn"])


def _log_reader(target: Target, family: str, definition: dict[str, Any], task_arn: str) -> logs.StreamReader:
    """Where the task logs: read from its own awslogs options, so the one-off's stream is found even if the
    stack's naming changes; falls back to the documented `/mastofargate/{name}/{job}` + `{job}/mastodon/ID`."""
    container = definition["containerDefinitions"][0]
    options = (container.get("logConfiguration") or {}).get("options") or {}
    job = family.removeprefix(f"{target.name}-")
    group = options.get("awslogs-group") or logs.log_group(target, job)
    prefix = options.get("awslogs-stream-prefix") or job
    return logs.StreamReader(target, group, logs.stream_name(prefix, container["name"], task_id(task_arn)))


def task_id(task_arn: str) -> str:
    return task_arn.rsplit("/", 1)[-1]


def describe_task(target: Target, task_arn: str) -> TaskTypeDef:
    with aws.aws_errors(f"reading task {task_arn}"):
        tasks = target.ecs.describe_tasks(cluster=target.cluster, tasks=[task_arn])["tasks"]
    if not tasks:
        raise MastofargateError(f"ECS no longer knows task {task_arn}.", fix="see 'mastofargate status'")
    return tasks[0]


def _give_up(target: Target, family: str, task: TaskTypeDef, timeout: float) -> None:
    arn = task["taskArn"]
    with aws.aws_errors(f"stopping task {arn}"):
        target.ecs.stop_task(
            cluster=target.cluster, task=arn, reason=f"mastofargate gave up waiting after {timeout:.0f} s"
        )
    raise MastofargateError(
        f"Task {arn} ({family}) did not finish within {timeout:.0f} s; it was asked to stop.",
        why=f"it was still {task.get('lastStatus', 'unknown')} when the wait ran out",
        fix=f"read its logs ('mastofargate logs {family.removeprefix(target.name + '-')}'), "
        "then run it again with a longer --timeout if it was just slow",
        exit_code=EXIT_TIMEOUT,
    )


def stopped_task(task: TaskTypeDef, container: str | None = None) -> StoppedTask:
    """Why a task stopped: its stoppedReason plus the essential container's exit code and reason."""
    containers = task.get("containers", [])
    empty: ContainerTypeDef = {}
    chosen = next((c for c in containers if container and c.get("name") == container), None)
    if chosen is None:
        chosen = culprit(containers) or (containers[0] if containers else empty)
    return StoppedTask(
        task_arn=str(task.get("taskArn", "")),
        stopped_reason=str(task.get("stoppedReason", "")),
        exit_code=chosen.get("exitCode"),
        container_reason=str(chosen.get("reason", "")),
        container=str(chosen.get("name", "")),
        containers=len(containers),
    )


# Exit codes of a process ECS stopped itself (SIGTERM = 143, SIGKILL after the stop timeout = 137): when one
# essential container exits, ECS stops the others, and they report these; they are not the cause.
STOPPED_BY_ECS = (137, 143)


def culprit(containers: Sequence[ContainerTypeDef]) -> ContainerTypeDef | None:
    """The container that stopped a task of several: one ECS marked unhealthy or gave a reason (e.g.
    OutOfMemoryError), else one that exited with an error of its own, else any non-zero exit."""
    ranked = (
        lambda c: c.get("healthStatus") == "UNHEALTHY",
        lambda c: bool(c.get("reason")) and c.get("exitCode") != 0,
        lambda c: c.get("exitCode") not in (None, 0, *STOPPED_BY_ECS),
        lambda c: c.get("exitCode") not in (None, 0),
    )
    for test in ranked:
        found = next((c for c in containers if test(c)), None)
        if found is not None:
            return found
    return None


# --- services ------------------------------------------------------------------------------------------


def describe_services(target: Target, services: list[str]) -> dict[str, ServiceTypeDef]:
    """Active services by name, batched (<= 10 per call); missing or deleted ones are left out."""
    found: dict[str, ServiceTypeDef] = {}
    ecs = target.ecs
    for i in range(0, len(services), DESCRIBE_BATCH):
        try:
            with aws.aws_errors(f"reading ECS services of cluster {target.cluster}"):
                resp = ecs.describe_services(cluster=target.cluster, services=services[i : i + DESCRIBE_BATCH])
        except NotFound:  # no cluster (yet)
            return {}
        for svc in resp.get("services", []):
            if svc.get("status") == "ACTIVE":
                found[svc["serviceName"]] = svc
    return found


def primary_deployment(service: ServiceTypeDef) -> DeploymentTypeDef:
    """The deployment ECS is rolling towards ({} for a service that has none)."""
    none: DeploymentTypeDef = {}
    return next((d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"), none)


def format_events(events: list[ServiceEventTypeDef]) -> list[str]:
    """The last service events, newest first (ECS's own order), as "HH:MM:SS message" in local time."""
    out = []
    for event in events[:EVENTS_SHOWN]:
        at = event.get("createdAt")
        stamp = at.astimezone().strftime("%H:%M:%S") if isinstance(at, datetime) else "--:--:--"
        out.append(f"{stamp} {event.get('message', '')}")
    return out


def recent_stopped_tasks(target: Target, service: str, deployment_id: str | None) -> list[StoppedTask]:
    """The service's recently stopped tasks (ECS keeps them about an hour), newest first, preferring those
    the given deployment started (a service task's startedBy is its deployment id)."""
    ecs = target.ecs
    with aws.aws_errors(f"reading stopped tasks of {service}"):
        arns = ecs.list_tasks(cluster=target.cluster, serviceName=service, desiredStatus="STOPPED")["taskArns"]
        tasks = ecs.describe_tasks(cluster=target.cluster, tasks=arns[:100])["tasks"] if arns else []
    mine = [t for t in tasks if deployment_id and t.get("startedBy") == deployment_id]
    chosen = sorted(mine or tasks, key=_stopped_at, reverse=True)[:STOPPED_SHOWN]
    return [stopped_task(t) for t in chosen]


def _stopped_at(task: TaskTypeDef) -> float:
    at = task.get("stoppedAt") or task.get("createdAt")
    return at.timestamp() if isinstance(at, datetime) else 0.0


def service_images(target: Target, services: list[str]) -> dict[str, str]:
    """service -> image its PRIMARY deployment runs (first container); services that do not exist are left
    out. Status shows it; a rollback needs it."""
    found = describe_services(target, services)
    definitions: dict[str, str] = {}
    images: dict[str, str] = {}
    ecs = target.ecs
    for name in services:
        if name not in found:
            continue
        arn = primary_deployment(found[name]).get("taskDefinition") or found[name].get("taskDefinition")
        if not arn:
            continue
        if arn not in definitions:
            with aws.aws_errors(f"reading task definition {arn}"):
                definitions[arn] = container_image(ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"])
        images[name] = definitions[arn]
    return images


def running_tasks(target: Target, service: str) -> list[TaskTypeDef]:
    """The service's tasks that are RUNNING now (ECS Exec needs one), newest first."""
    ecs = target.ecs
    with aws.aws_errors(f"listing tasks of {service}"):
        arns = ecs.list_tasks(cluster=target.cluster, serviceName=service, desiredStatus="RUNNING")["taskArns"]
        tasks = ecs.describe_tasks(cluster=target.cluster, tasks=arns[:100])["tasks"] if arns else []
    running = [t for t in tasks if t.get("lastStatus") == "RUNNING"]
    return sorted(running, key=lambda t: t["startedAt"].timestamp() if t.get("startedAt") else 0.0, reverse=True)
