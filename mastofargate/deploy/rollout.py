"""Deploy step 5, the rollout: a stack change executed while its services are watched, and explained.

On AWS, CloudFormation does not finish updating an `AWS::ECS::Service` until the service is stable, and
when the deployment circuit breaker trips it fails the resource and rolls the *stack* back. So the services
are watched *while* the change set executes: every poll reads the stack's new events and, for each service
the change touches, the deployment the update started (desired / running / pending / failed tasks, rollout
state). The deployments that existed before are recorded first, so the one being reported is the new one,
not the one ECS restores.

When the stack fails, the failure names the service, the stopped task's reason and exit code (and, in a
task of several containers, which container stopped it), the last log lines of that container and the newest
service events — what the user needs to fix it — says that the
previous version is still serving, and gives the next command (`StackFailed`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mastofargate.aws import StackFailed
from mastofargate.deploy import ecs, logs, stacks
from mastofargate.deploy.context import Run
from mastofargate.deploy.ecs import ServiceProgress, StoppedTask
from mastofargate.target import phase

if TYPE_CHECKING:
    from mypy_boto3_ecs.type_defs import DeploymentTypeDef, ServiceTypeDef

LOG_LINES_SHOWN = 15
EVENTS_SHOWN = 3


def touched_services(plan: stacks.Plan) -> list[str]:
    """ECS service names whose resources the plan adds or modifies (read off the template)."""
    resources = plan.template.get("Resources") or {}
    names = []
    for change in plan.changes:
        if change.resource_type != "AWS::ECS::Service" or change.action not in ("Add", "Modify"):
            continue
        name = str(((resources.get(change.logical_id) or {}).get("Properties") or {}).get("ServiceName", ""))
        if name:
            names.append(name)
    return names


def service_of(plan: stacks.Plan, logical_id: str) -> str | None:
    resource = (plan.template.get("Resources") or {}).get(logical_id) or {}
    if resource.get("Type") != "AWS::ECS::Service":
        return None
    return str((resource.get("Properties") or {}).get("ServiceName", "")) or None


@dataclass
class ServiceWatch:
    """What was seen of one service during the update."""

    before: str  # PRIMARY deployment id before the update ("" for a new service)
    desired_before: int = 0
    deployment: DeploymentTypeDef = field(default_factory=lambda: no_deployment())
    service: ServiceTypeDef | None = None
    progress: ServiceProgress | None = None

    @property
    def failed(self) -> bool:
        return self.progress is not None and self.progress.rollout_state == "FAILED"

    def started(self, dep: DeploymentTypeDef) -> bool:
        """The update has visibly begun for this service: a new deployment, or a new task count."""
        return dep.get("id") != self.before or int(dep.get("desiredCount", 0)) != self.desired_before


class RolloutMonitor:
    """Reads the touched services once per poll and reports the deployment the update started."""

    def __init__(self, run: Run, services: list[str]) -> None:
        self.run = run
        self.watches: dict[str, ServiceWatch] = {}
        self.culprits: dict[str, str] = {}  # service -> the log name of the container that stopped its task
        found = ecs.describe_services(run.target, services) if services else {}
        for name in services:
            primary = ecs.primary_deployment(found[name]) if name in found else no_deployment()
            self.watches[name] = ServiceWatch(str(primary.get("id", "")), int(primary.get("desiredCount", 0)))

    def tick(self) -> None:
        if not self.watches:
            return
        found = ecs.describe_services(self.run.target, list(self.watches))
        for name, watch in self.watches.items():
            svc = found.get(name)
            if svc is None or watch.failed:  # a failed deployment stays the one reported, whatever ECS does next
                continue
            watch.service = svc
            followed = watch.deployment.get("id")
            followed = followed if followed != watch.before else None
            dep = same_deployment(svc, followed) or new_deployment(svc, watch.before)
            if not watch.started(dep):  # ECS has not started the update's deployment yet
                continue
            watch.deployment = dep
            watch.progress = progress_of(name, svc, dep)
            self.run.out.service(watch.progress)

    def story(self, service: str) -> list[str]:
        """Why a service's new deployment failed: its rollout reason, stopped tasks (reason, exit code), the
        failing container's last log lines and the newest service events. Never raises: gathering the
        cause must not hide the failure."""
        watch = self.watches.get(service)
        if watch is None:
            return []
        try:
            return self._story(service, watch)
        except Exception as e:  # reading the cause failed (permissions, throttling): say so, keep the failure
            return [f"(could not read the service's own story: {type(e).__name__})"]

    def _story(self, service: str, watch: ServiceWatch) -> list[str]:
        target = self.run.target
        found = ecs.describe_services(target, [service]).get(service) or watch.service
        if found is None:
            return []
        lines: list[str] = []
        dep = watch.deployment or new_deployment(found, watch.before)
        if dep.get("rolloutStateReason"):
            lines.append(f"ECS: {dep['rolloutStateReason']}")
        stopped = ecs.recent_stopped_tasks(target, service, dep.get("id") or None)
        lines += [describe_stopped(task) for task in stopped[:2]]
        if stopped:
            newest = ecs.task_id(stopped[0].task_arn)
            source = log_name(self.run, service, stopped[0].container)
            self.culprits[service] = source
            tail = logs.tail(target, source, since_seconds=3600, limit=LOG_LINES_SHOWN, task_id=newest)
            if tail:
                where = f" ({stopped[0].container})" if source != service else ""
                lines.append(f"last log lines of the failed task{where}:\n    " + "\n    ".join(tail))
        lines += [f"event {e}" for e in ecs.format_events(found.get("events", []))[:EVENTS_SHOWN]]
        return lines


def log_name(run: Run, service: str, container: str) -> str:
    """The log group/`logs` name of a service's container: a packed task logs each container under its own
    row's name (web, sidekiq, postgres...); a task of one container under the service's."""
    from mastofargate.stack.services import container_name

    task = next((t for t in run.target.config.tasks if t.name == service), None)
    if task is None or not task.packed:
        return service
    return next((c.name for c in task.containers if container_name(c) == container), service)


def describe_stopped(task: StoppedTask) -> str:
    code = f", exit code {task.exit_code}" if task.exit_code is not None else ""
    return f"stopped task {ecs.task_id(task.task_arn)[:12]}: {task.summary or 'no reason given'}{code}"


def no_deployment() -> DeploymentTypeDef:
    return {}


def new_deployment(service: ServiceTypeDef, before: str) -> DeploymentTypeDef:
    """The deployment the update started: the newest one that did not exist before (ECS lists the
    newest first); the PRIMARY one when the update started none (a count change)."""
    for dep in service.get("deployments", []):
        if dep.get("id") != before:
            return dep
    return ecs.primary_deployment(service)


def same_deployment(service: ServiceTypeDef, deployment_id: str | None) -> DeploymentTypeDef | None:
    """The deployment already being followed: once the update's deployment is known it is followed to
    its end, even after a circuit-breaker rollback starts a newer one (which restores the old version)."""
    if not deployment_id:
        return None
    return next((d for d in service.get("deployments", []) if d.get("id") == deployment_id), None)


def progress_of(name: str, service: ServiceTypeDef, dep: DeploymentTypeDef) -> ServiceProgress:
    state = str(dep.get("rolloutState", "") or "IN_PROGRESS")
    reason = str(dep.get("rolloutStateReason", "") or "")
    return ServiceProgress(
        service=name,
        desired=int(dep.get("desiredCount", service.get("desiredCount", 0))),
        running=int(dep.get("runningCount", service.get("runningCount", 0))),
        pending=int(dep.get("pendingCount", service.get("pendingCount", 0))),
        failed_tasks=int(dep.get("failedTasks", 0)),
        rollout_state=state,
        rollout_reason=reason,
    )


def apply(run: Run, plan: stacks.Plan, *, timeout: float, serving: str = "") -> None:
    """Execute the plan's change set, streaming stack events and the touched services' new deployments
    until the stack settles. A failure raises StackFailed with the service's story, the fact that the
    previous version (`serving`) is still serving, and the next command."""
    monitor = RolloutMonitor(run, touched_services(plan))
    stack = plan.stack
    pending = (
        f"CloudFormation is changing {stack}; it carries on without mastofargate (and rolls back by itself if "
        "the services fail to start)"
    )
    with run.pending(pending), run.out.live():
        try:
            stacks.execute(
                run.target,
                plan,
                run.poller,
                timeout=timeout,
                on_event=lambda e: run.out.stack_event(stack, e.line()),
                on_tick=monitor.tick,
            )
        except StackFailed as failure:
            raise explain(failure, plan, monitor, serving) from None


def explain(failure: StackFailed, plan: stacks.Plan, monitor: RolloutMonitor, serving: str) -> StackFailed:
    """Add the ECS side of a failed stack change: which service, why its tasks stopped, what they logged."""
    failed = [n for n, w in monitor.watches.items() if w.failed]
    service = service_of(plan, failure.logical_id) or (failed[0] if failed else None)
    if phase(failure.status) != "rolled_back":
        return failure
    still = ""
    if plan.kind == "UPDATE":
        still = f" The previous version{f' ({serving})' if serving else ''} is still serving."
    if service is None:
        what = f"{failure.what}{still}"
        why = failure.why
        fix = failure.fix
    else:
        names = sorted({service, *failed})
        listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else service
        what = f"The rollout of {listed} failed and CloudFormation rolled {plan.stack} back.{still}"
        why = "; ".join([f"{service}: CloudFormation: {failure.reason}", *monitor.story(service)])
        others = [n for n in names if n != service]
        likewise = f" (and likewise {', '.join(others)})" if others else ""
        fix = (
            f"read 'mastofargate logs {monitor.culprits.get(service, service)}'{likewise}, fix the cause (image, "
            "config, memory), then run 'mastofargate deploy' again (or 'mastofargate rollback')"
        )
    return StackFailed(failure.stack, failure.logical_id, failure.status, failure.reason, what=what, why=why, fix=fix)
