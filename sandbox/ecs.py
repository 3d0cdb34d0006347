"""ECS in the emulator: CloudFormation handlers for task definitions and services, and what ECS does by itself
as time passes (one-off tasks stop, deployments complete or trip the circuit breaker).

Where moto 5.2 differs from AWS, and what this module does instead (as AWS does):
  - AWS::ECS::TaskDefinition: moto keeps only family, containers, volumes and memory, and re-registers
    PascalCase containers on update; here every property is registered (cpu, network mode, roles, runtime
    platform, compatibilities), camelCased. An update registers a new revision (a replacement: new ARN);
    the old revision is deregistered in the stack's cleanup phase (sandbox/operations.py), and deleting
    the resource deregisters its revision (moto left both ACTIVE).
  - AWS::ECS::Service: moto drops the network configuration, capacity providers, deployment configuration
    and load balancers, never deletes the service and never starts a new deployment on update; here they
    are kept, a new PRIMARY deployment (rolloutState IN_PROGRESS) starts when the task definition changes,
    a count change alone scales the PRIMARY deployment (no new deployment, as on ECS), and the service is
    deleted with the stack. Inside a stack operation the update (UpdateService) is applied only when the
    resource's turn comes, so the deployment starts after the service's UPDATE_IN_PROGRESS event.
  - moto steps a task one state per DescribeTasks call; here only the clock moves tasks (see `tick`).
  - CreateService (the API): moto drops the capacity provider strategy and the deployment configuration; AWS
    keeps both (and launches with them), so here they are kept and the first deployment carries the strategy;
  - UpdateService: moto accepts a change of the capacity provider strategy without forceNewDeployment and
    only renames the deployment on forceNewDeployment; ECS refuses the former (InvalidParameterException:
    "... you must force a new deployment") and starts a new PRIMARY deployment for the latter, with the
    service's capacity provider strategy recorded in the deployment (as ECS's Deployment carries it).
  - DescribeTaskDefinition of a bare family took moto's latest revision even when deregistered; here, as
    on AWS, the latest ACTIVE one (none left: not found).

What ECS does by itself, on the emulator's clock (timing.TIMING):
  - a task started by `RunTask` stops `task` seconds later with exit code 0 and stoppedReason "Essential
    container in task exited"; it first writes one log line (`[sandbox] ran: COMMAND`) to the task's
    awslogs stream, and for `tootctl accounts create` the `New password: ...` line real tootctl prints;
    the backup task's pgtask.py commands (and the image's schema version) answer, and exit, as
    sandbox/backups.py describes;
  - a deployment IN_PROGRESS for `rollout` seconds becomes COMPLETED with runningCount = desiredCount and
    the older deployments go away, as after a rolling deploy; a service whose desired count changed
    (without a new deployment) reaches it `rollout` seconds later; each writes the service event
    "(service X) has reached a steady state.".

Failures on purpose (the emulator's own knobs, chosen by the image tag; the product knows nothing of them):
  - a one-off task whose image tag contains `-sandbox-exit-N` exits with code N (e.g. a failing migration);
  - a deployment to an image tag containing `-sandbox-unhealthy` trips the deployment circuit breaker:
    two stopped tasks (exit code 1, stoppedReason "Essential container in task exited"), the deployment
    rolloutState FAILED with "ECS deployment circuit breaker: tasks failed to start.", a service event,
    and (as with rollback enabled) a new PRIMARY deployment of the last COMPLETED deployment's task
    definition; with nothing to roll back to (a new service) the failed deployment stays PRIMARY. In a task
    of several containers, as on ECS, only the container running the marked image (the first such) exits 1
    with its reason; ECS stops the others, which report 143 (SIGTERM) and no reason;
  - a deployment to an image tag containing `-sandbox-slow-N` takes N seconds instead of the usual rollout.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import string
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sandbox.standins import new_uuid, rand
from sandbox.timing import TIMING


class _Defer(threading.local):
    active = False


# Set by a stack operation while moto applies its change set: service updates then wait for their step.
DEFER = _Defer()
UNHEALTHY_MARK = "-sandbox-unhealthy"  # image tag marker: the service's new tasks never get healthy
SLOW_MARK = "-sandbox-slow-"  # image tag marker: `-sandbox-slow-N`, the deployment takes N seconds
CIRCUIT_BREAKER_REASON = "ECS deployment circuit breaker: tasks failed to start."


# --- CloudFormation handlers ----------------------------------------------------------------------------


STRATEGY_NEEDS_DEPLOYMENT = (
    "When switching from launch type to capacity provider strategy on an existing service, or making a change to "
    "a capacity provider strategy on a service that is already using one, you must force a new deployment."
)


def register() -> None:
    """Replace moto's CloudFormation handlers of AWS::ECS::TaskDefinition and AWS::ECS::Service, and make
    UpdateService treat capacity provider strategies and forceNewDeployment as ECS does."""
    from moto.cloudformation import parsing

    model_map = parsing.get_model_map()
    for rtype, cls in _models().items():
        model_map[rtype] = cls
    _patch_update_service()
    _latest_active_revision()


def _patch_update_service() -> None:
    from moto.ecs.exceptions import InvalidParameterException
    from moto.ecs.models import EC2ContainerServiceBackend
    from moto.ecs.responses import EC2ContainerServiceResponse

    original_create = EC2ContainerServiceResponse.create_service
    if not getattr(original_create, "_sandbox_wrapped", False):

        def create_service(self: Any) -> Any:
            result = original_create(self)
            name = self._get_param("serviceName")
            cluster = str(self._get_param("cluster", "default")).split("/")[-1]
            service = self.ecs_backend.services.get(f"{cluster}:{name}")
            strategy = self._get_param("capacityProviderStrategy")
            if service is not None and (strategy or self._get_param("deploymentConfiguration")):
                service.capacity_provider_strategy = strategy or []
                service.deployment_configuration = self._get_param("deploymentConfiguration") or {}
                service.deployments = []
                start_deployment(service)
            return result

        create_service._sandbox_wrapped = True  # type: ignore[attr-defined]
        EC2ContainerServiceResponse.create_service = create_service  # type: ignore[method-assign]

    original = EC2ContainerServiceBackend.update_service
    if getattr(original, "_sandbox_wrapped", False):
        return

    def update_service(self: Any, service_properties: dict[str, Any]) -> Any:
        force = bool(service_properties.get("force_new_deployment"))
        strategy = service_properties.get("capacity_provider_strategy")
        name = str(service_properties.get("service", "")).split("/")[-1]
        cluster = str(service_properties.get("cluster", "default")).split("/")[-1]
        current = self.services.get(f"{cluster}:{name}")
        had = getattr(current, "capacity_provider_strategy", None) or []
        changed = current is not None and _normal(strategy or []) != _normal(had)
        if strategy is not None and changed and not force:
            raise InvalidParameterException(STRATEGY_NEEDS_DEPLOYMENT)
        service = original(self, service_properties)
        if force:
            start_deployment(service)
        return service

    update_service._sandbox_wrapped = True  # type: ignore[attr-defined]
    EC2ContainerServiceBackend.update_service = update_service  # type: ignore[method-assign]


def _normal(strategy: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    return sorted((s["capacityProvider"], int(s.get("base", 0)), int(s.get("weight", 0))) for s in strategy)


def _latest_active_revision() -> None:
    """DescribeTaskDefinition of a bare family: AWS uses the latest ACTIVE revision (and fails when none is
    left); moto took the latest revision whatever its status."""
    from moto.ecs.exceptions import TaskDefinitionNotFoundException
    from moto.ecs.models import EC2ContainerServiceBackend

    original = EC2ContainerServiceBackend.describe_task_definition
    if getattr(original, "_sandbox_wrapped", False):
        return

    def describe_task_definition(self: Any, task_definition_str: str) -> Any:
        name = task_definition_str.split("/")[-1]
        if ":" in name:
            return original(self, task_definition_str)
        active = [r for r, td in self.task_definitions.get(name, {}).items() if td.status == "ACTIVE"]
        if not active:
            raise TaskDefinitionNotFoundException()
        return self.task_definitions[name][max(active)]

    describe_task_definition._sandbox_wrapped = True  # type: ignore[attr-defined]
    EC2ContainerServiceBackend.describe_task_definition = describe_task_definition  # type: ignore[method-assign]


def _models() -> dict[str, type]:
    """Replacement CloudFormation handlers for ECS task definitions and services (see module docstring)."""
    from moto.core.utils import pascal_to_camelcase, remap_nested_keys
    from moto.ecs.models import Service, TaskDefinition, ecs_backends

    def camel(value: Any) -> Any:
        return remap_nested_keys(value, pascal_to_camelcase) if value is not None else None

    def task_definition_kwargs(props: dict[str, Any]) -> dict[str, Any]:
        return {
            "family": props.get("Family") or f"task-definition-{rand(6)}",
            "container_definitions": camel(props.get("ContainerDefinitions", [])),
            "volumes": camel(props.get("Volumes")),
            "network_mode": props.get("NetworkMode"),
            "requires_compatibilities": props.get("RequiresCompatibilities"),
            "cpu": props.get("Cpu"),
            "memory": props.get("Memory"),
            "task_role_arn": props.get("TaskRoleArn"),
            "execution_role_arn": props.get("ExecutionRoleArn"),
            "runtime_platform": camel(props.get("RuntimePlatform")),
            "tags": camel(props.get("Tags")),
        }

    class FullTaskDefinition(TaskDefinition):
        @classmethod
        def create_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> Any:
            kw = task_definition_kwargs(cloudformation_json["Properties"])
            td = ecs_backends[account_id][region_name].register_task_definition(**kw)
            td._sandbox_props = json.dumps(kw, sort_keys=True, default=str)
            return td

        @classmethod
        def update_from_cloudformation_json(  # type: ignore[override]
            cls,
            original_resource: Any,
            new_resource_name: str,
            cloudformation_json: Any,
            account_id: str,
            region_name: str,
        ) -> Any:
            kw = task_definition_kwargs(cloudformation_json["Properties"])
            if getattr(original_resource, "_sandbox_props", None) == json.dumps(kw, sort_keys=True, default=str):
                return original_resource
            backend = ecs_backends[account_id][region_name]
            td = backend.register_task_definition(**kw)
            td._sandbox_props = json.dumps(kw, sort_keys=True, default=str)
            if not DEFER.active:  # in a stack operation, the old revision goes in its cleanup phase
                backend.deregister_task_definition(original_resource.arn)
            return td

        @classmethod
        def delete_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
        ) -> None:
            # Deleting the resource deregisters its revision (INACTIVE), as CloudFormation does.
            with contextlib.suppress(Exception):  # already deregistered
                ecs_backends[account_id][region_name].deregister_task_definition(str(resource_name))

    def service_settings(props: dict[str, Any]) -> dict[str, Any]:
        net = props.get("NetworkConfiguration", {}).get("AwsvpcConfiguration")
        return {
            "network_configuration": {"awsvpcConfiguration": camel(net)} if net else None,
            "load_balancers": camel(props.get("LoadBalancers", [])),
            "service_registries": camel(props.get("ServiceRegistries", [])),
            "platform_version": props.get("PlatformVersion"),
            "propagate_tags": props.get("PropagateTags", "NONE"),
        }

    def extras(service: Any, props: dict[str, Any]) -> None:
        service.capacity_provider_strategy = camel(props.get("CapacityProviderStrategy", []))
        service.deployment_configuration = camel(props.get("DeploymentConfiguration", {}))
        service.health_check_grace_period_seconds = props.get("HealthCheckGracePeriodSeconds")
        service.enable_execute_command = props.get("EnableExecuteCommand", False)

    def cluster_name(props: dict[str, Any]) -> str:
        c = props["Cluster"]
        return str(getattr(c, "name", c)).split("/")[-1]

    def task_definition_arn(props: dict[str, Any]) -> str:
        td = props["TaskDefinition"]
        return str(getattr(td, "arn", td))

    class FullService(Service):
        @classmethod
        def create_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> Any:
            props = cloudformation_json["Properties"]
            backend = ecs_backends[account_id][region_name]
            service = backend.create_service(
                cluster_name(props),
                props.get("ServiceName") or resource_name,
                int(props.get("DesiredCount", 1)),
                task_definition_str=task_definition_arn(props),
                launch_type="FARGATE",
                **service_settings(props),
            )
            extras(service, props)
            service.deployments = []  # moto made one; ours follows the ECS rules below
            start_deployment(service)
            return service

        @classmethod
        def update_from_cloudformation_json(  # type: ignore[override]
            cls,
            original_resource: Any,
            new_resource_name: str,
            cloudformation_json: Any,
            account_id: str,
            region_name: str,
        ) -> Any:
            props = cloudformation_json["Properties"]
            service = original_resource
            desired = int(props.get("DesiredCount", 1))
            td = task_definition_arn(props)

            def update_service() -> None:  # what UpdateService does
                new_definition = service.task_definition != td
                service.task_definition = td
                for key, value in service_settings(props).items():
                    if value is not None:
                        setattr(service, key, value)
                extras(service, props)
                if new_definition:
                    service.desired_count = desired
                    start_deployment(service)
                elif service.desired_count != desired:  # ECS scales the PRIMARY deployment; no new deployment
                    service.desired_count = desired
                    if service.deployments:
                        service.deployments[0]["desiredCount"] = desired

            if DEFER.active:  # inside a stack operation: UpdateService is called when the resource's turn comes
                service._sandbox_pending_update = update_service
            else:
                update_service()
            return service

        @classmethod
        def delete_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
        ) -> None:
            # moto's create_service returns its own Service, so deletion comes here with the physical id (ARN).
            cluster, name = str(resource_name).split(":service/", 1)[-1].split("/")[-2:]
            backend = ecs_backends[account_id][region_name]
            if f"{cluster}:{name}" in backend.services:
                backend.delete_service(cluster, name, force=True)
                backend.services.pop(f"{cluster}:{name}", None)

    return {"AWS::ECS::TaskDefinition": FullTaskDefinition, "AWS::ECS::Service": FullService}


def start_deployment(service: Any) -> dict[str, Any]:
    """A new PRIMARY deployment of the service's task definition, as ECS starts on a task-definition change.
    With a desired count of 0 it is COMPLETED at once (nothing to start) and replaces the others."""
    now = datetime.now(UTC)
    for old in service.deployments:
        if old.get("status") == "PRIMARY":
            old["status"] = "ACTIVE"
    dep_id = f"ecs-svc/{secrets.randbelow(10**18):018d}"
    service.deployments.insert(
        0,
        {
            "id": dep_id,
            "status": "PRIMARY",
            "taskDefinition": service.task_definition,
            "desiredCount": service.desired_count,
            "pendingCount": service.desired_count,
            "runningCount": 0,
            "failedTasks": 0,
            "createdAt": now,
            "updatedAt": now,
            **(
                {"capacityProviderStrategy": list(service.capacity_provider_strategy)}
                if getattr(service, "capacity_provider_strategy", None)
                else {"launchType": "FARGATE"}
            ),
            "rolloutState": "IN_PROGRESS" if service.desired_count else "COMPLETED",
            "rolloutStateReason": f"ECS deployment {dep_id} in progress.",
        },
    )
    service.running_count = 0 if service.desired_count else service.running_count
    service.pending_count = service.desired_count
    if not service.desired_count:
        service.deployments[1:] = []
        service.running_count = 0
        service.pending_count = 0
    return service.deployments[0]


# --- what ECS does as time passes -----------------------------------------------------------------------


def tick(now: float) -> None:
    """Advance every ECS task and service deployment that has waited long enough (see the docstring)."""
    from moto.ecs.models import ecs_backends

    for account, regions in list(ecs_backends.items()):
        for region, backend in list(regions.items()):
            for cluster_tasks in list(backend.tasks.values()):
                for task in list(cluster_tasks.values()):
                    _advance_task(task, backend, account, region, now)
            for service in list(backend.services.values()):
                _advance_service(service, now)


def _advance_task(task: Any, backend: Any, account: str, region: str, now: float) -> None:
    started = task.__dict__.setdefault("_sandbox_seen", now)
    if task.desired_status == "STOPPED" or task.__dict__.get("_sandbox_done") or now - started < TIMING.task:
        return
    task._sandbox_done = True
    code = _exit_code_for(_task_image(task, backend))
    lines: list[str] = []
    if not code:
        lines, code = _container_output(_command_of(task, backend), _environment_of(task), account, region)
    _write_task_log(task, backend, account, region, code, lines)
    _stop(task, "Essential container in task exited", code)


def _stop(task: Any, reason: str, code: int, container_reason: str = "", culprit: str | None = None) -> None:
    """Stop a task: every container exits with `code`, or, when `culprit` names one container of several,
    that one does and ECS stops the rest (exit 143, no reason), as ECS does after an essential exit."""
    task.last_status = "STOPPED"
    task.desired_status = "STOPPED"
    task.stopped_reason = reason
    task.stopped_at = datetime.now(UTC)
    task.stop_code = "EssentialContainerExited"
    for container in task.containers:
        mine = culprit is None or getattr(container, "name", None) == culprit
        container.last_status = "STOPPED"
        container.exitCode = code if mine else 143
        container.exit_code = container.exitCode
        if container_reason and mine:
            container.reason = container_reason


def _marked_container(backend: Any, task_definition: str) -> str | None:
    """The first container whose image carries the unhealthy mark (None: a task of one container)."""
    try:
        defs = backend.describe_task_definition(task_definition).container_definitions
    except Exception:
        return None
    if len(defs) < 2:
        return None
    return next((str(c.get("name")) for c in defs if UNHEALTHY_MARK in str(c.get("image", ""))), None)


def _task_image(task: Any, backend: Any) -> str:
    try:
        return str(backend.describe_task_definition(task.task_definition_arn).container_definitions[0].get("image"))
    except Exception:
        return ""


def _exit_code_for(image: str) -> int:
    """`...-sandbox-exit-N` in the image tag: the task exits with N (a failing migration, on purpose)."""
    match = re.search(r"-sandbox-exit-(\d+)", image.rsplit(":", 1)[-1]) if ":" in image else None
    return int(match.group(1)) if match else 0


def _task_command(task: Any, container_def: dict[str, Any]) -> list[str]:
    for override in (task.overrides or {}).get("containerOverrides", []) or []:
        if override.get("name") == container_def.get("name") and override.get("command"):
            return list(override["command"])
    return list(container_def.get("command") or [])


def _command_of(task: Any, backend: Any) -> list[str]:
    try:
        container = backend.describe_task_definition(task.task_definition_arn).container_definitions[0]
    except Exception:
        return []
    return _task_command(task, container)


def _environment_of(task: Any) -> dict[str, str]:
    """The environment overrides RunTask gave the (first) container."""
    overrides = (task.overrides or {}).get("containerOverrides", []) or []
    env = overrides[0].get("environment", []) if overrides else []
    return {e["name"]: e.get("value", "") for e in env or []}


def _container_output(
    command: list[str], environment: dict[str, str], account: str, region: str
) -> tuple[list[str], int]:
    """What the container itself prints for the commands the deploy runs, and its exit code: the backup
    task's pgtask.py commands and the image's schema version answer as sandbox/backups.py says; real tootctl
    prints "OK" and the generated password for `accounts create`. A `bash -c SCRIPT` is followed as far as a
    pipe through `grep -v PATTERN`, which drops the lines PATTERN matches before they reach the log, as in
    the container."""
    from sandbox import backups

    answered = backups.answer(command, environment, account, region)
    if answered is not None:
        return answered
    script = command[command.index("-c") + 1] if command[:1] in (["bash"], ["sh"]) and "-c" in command else ""
    created = command[:3] == ["tootctl", "accounts", "create"] or "tootctl accounts create" in script
    lines = ["OK", "New password: " + rand(32, string.ascii_letters + string.digits)] if created else []
    dropped = re.search(r'\|\s*grep\b[^|]*\s-v\s+"([^"]+)"', script)
    if dropped:
        lines = [line for line in lines if not re.search(dropped.group(1), line)]
    return lines, 0


def _write_task_log(
    task: Any, backend: Any, account: str, region: str, code: int = 0, output: list[str] | None = None
) -> None:
    """One line per task in its awslogs stream (prefix/container/task-id), as the container would write."""
    from moto.logs.models import logs_backends

    try:
        td = backend.describe_task_definition(task.task_definition_arn)
        container = td.container_definitions[0]
        options = (container.get("logConfiguration") or {}).get("options") or {}
        group, prefix = options.get("awslogs-group"), options.get("awslogs-stream-prefix")
        if not group or not prefix:
            return
        command = _task_command(task, container)
        stream = f"{prefix}/{container.get('name')}/{task.id}"
        logs = logs_backends[account][region]
        if group not in logs.groups:
            return
        if stream not in logs.groups[group].streams:
            logs.create_log_stream(group, stream)
        lines = [f"[sandbox] ran: {' '.join(command)}"]
        lines += output or []
        if code and not output:
            lines += [f"[sandbox] failing on purpose: the image tag asks for exit code {code}"]
        ms = int(time.time() * 1000)
        logs.put_log_events(group, stream, [{"timestamp": ms + i, "message": m} for i, m in enumerate(lines)])
    except Exception as e:  # a log line is a nicety; never let it stop the clock
        print(f"sandbox: could not write a task log line: {e}", file=sys.stderr, flush=True)


def _advance_service(service: Any, now: float) -> None:
    if not service.deployments:
        return
    primary = service.deployments[0]
    if primary.get("rolloutState") == "COMPLETED" and service.running_count != service.desired_count:
        started = service.__dict__.setdefault("_sandbox_scale_seen", now)
        if now - started >= TIMING.rollout:
            service.__dict__.pop("_sandbox_scale_seen", None)
            service.running_count = service.desired_count
            service.pending_count = 0
            primary.update(runningCount=service.desired_count, pendingCount=0, updatedAt=datetime.now(UTC))
            _service_event(service, f"(service {service.name}) has reached a steady state.")
        return
    if primary.get("rolloutState") != "IN_PROGRESS":
        return
    started = primary.setdefault("_sandbox_seen", now)
    if now - started < _rollout_seconds(service, primary):
        return
    primary.pop("_sandbox_seen", None)
    if UNHEALTHY_MARK in _service_image(service, primary):
        _trip_circuit_breaker(service, primary)
        return
    primary.update(
        rolloutState="COMPLETED",
        rolloutStateReason=f"ECS deployment {primary['id']} completed.",
        runningCount=primary["desiredCount"],
        pendingCount=0,
        updatedAt=datetime.now(UTC),
    )
    service.deployments[1:] = []
    service.running_count = service.desired_count
    service.pending_count = 0
    _service_event(service, f"(service {service.name}) has reached a steady state.")


def _rollout_seconds(service: Any, deployment: dict[str, Any]) -> float:
    """`...-sandbox-slow-N` in the image tag: the deployment takes N seconds (a rollout that outlasts --timeout)."""
    match = re.search(SLOW_MARK + r"(\d+)", _service_image(service, deployment).rsplit(":", 1)[-1])
    return float(match.group(1)) if match else TIMING.rollout


def _service_image(service: Any, deployment: dict[str, Any]) -> str:
    from moto.ecs.models import ecs_backends

    backend = ecs_backends[service._account_id][service.region_name]
    try:
        td = backend.describe_task_definition(deployment["taskDefinition"])
        return str(td.container_definitions[0].get("image", ""))
    except Exception:
        return ""


def _trip_circuit_breaker(service: Any, failed: dict[str, Any]) -> None:
    """What ECS does when a new version's tasks keep failing: stopped tasks with a reason, the deployment
    FAILED, and (rollback on) a new PRIMARY deployment of the last COMPLETED deployment's task definition.
    With no deployment to go back to (a new service), the failed one stays PRIMARY."""
    from moto.ecs.models import ecs_backends

    backend = ecs_backends[service._account_id][service.region_name]
    for _ in range(2):
        try:
            task = backend.run_task(
                service.cluster_name,
                failed["taskDefinition"],
                1,
                None,
                failed["id"],
                [],
                "FARGATE",
                service.network_configuration or None,
            )[0]
        except Exception as e:  # keep the failure visible even without its stopped tasks
            print(f"sandbox: could not record a failed task: {e}", file=sys.stderr, flush=True)
            break
        task._sandbox_done = True
        _stop(
            task,
            "Essential container in task exited",
            1,
            "the image tag asks the sandbox for unhealthy tasks",
            culprit=_marked_container(backend, failed["taskDefinition"]),
        )
    failed.update(
        rolloutState="FAILED",
        rolloutStateReason=CIRCUIT_BREAKER_REASON,
        failedTasks=2,
        runningCount=0,
        pendingCount=0,
        updatedAt=datetime.now(UTC),
    )
    service.__dict__.setdefault("_sandbox_failed_deployments", set()).add(failed["id"])
    others = service.deployments[1:]
    previous = next((d for d in others if d.get("rolloutState") == "COMPLETED"), None)
    service.deployments = [failed]
    _service_event(
        service, f"(service {service.name}) (deployment {failed['id']}) deployment failed: tasks failed to start."
    )
    if previous is not None:
        failed["status"] = "ACTIVE"
        service.task_definition = previous["taskDefinition"]
        start_deployment(service)
        service.deployments[0]["rolloutStateReason"] = f"ECS deployment {service.deployments[0]['id']} rolling back."


def _service_event(service: Any, message: str) -> None:
    service.events.insert(0, {"id": new_uuid(), "createdAt": datetime.now(UTC), "message": message})
