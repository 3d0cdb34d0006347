"""CloudFormation stack operations that take time, as on AWS, driven by the emulator's clock.

moto applies a change set inside the ExecuteChangeSet call and answers with the stack already
*_COMPLETE: no stack ever waits for an ECS service, and nothing ever rolls back. Here, as on AWS:

  - ExecuteChangeSet returns at once; the stack is CREATE_IN_PROGRESS / UPDATE_IN_PROGRESS ("User
    Initiated"), and each changed resource gets its own events over emulated time: *_IN_PROGRESS when
    its turn comes (after the changed resources it refers to through Ref, Fn::GetAtt, Fn::Sub or
    DependsOn), then *_COMPLETE or *_FAILED;
  - an AWS::ECS::Service is updated (UpdateService) only when its turn comes, and its resource completes
    only when the service is steady: the deployment the update started is COMPLETED (a new service
    likewise; desiredCount 0 is steady at once), or, for a count change, runningCount = desiredCount;
  - when that deployment FAILS (the circuit breaker), the resource is UPDATE_FAILED / CREATE_FAILED with
    CloudFormation's own reason ('Resource handler returned message: "Error occurred during operation
    'ECS Deployment Circuit Breaker was triggered'." (RequestToken: ..., HandlerErrorCode:
    GeneralServiceException)'), resources still in progress are cancelled ("Resource update cancelled"),
    and the stack rolls back:
      UPDATE: UPDATE_ROLLBACK_IN_PROGRESS ("The following resource(s) failed to update: [X]. "), every
        resource the update touched UPDATE_IN_PROGRESS -> UPDATE_COMPLETE back to its old state (task
        definitions point at their previous revision again; a service is updated back to it and waits
        until steady on it), UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS (the new revisions deregistered,
        added resources deleted: DELETE_IN_PROGRESS -> DELETE_COMPLETE), UPDATE_ROLLBACK_COMPLETE;
      CREATE: ROLLBACK_IN_PROGRESS ("The following resource(s) failed to create: [X]. Rollback requested by
        user."), each started resource DELETE_IN_PROGRESS -> DELETE_COMPLETE, ROLLBACK_COMPLETE;
  - an exception while moto applies a resource fails that resource the same way, with the error's text;
  - a successful UPDATE passes through UPDATE_COMPLETE_CLEANUP_IN_PROGRESS, where replaced task definition
    revisions are deregistered and removed resources deleted (events for each), to UPDATE_COMPLETE;
  - the stack's outputs, exports, template and parameters change only when the operation succeeds; then a
    parameter the new template no longer declares is gone, and after a rollback the parameters are the old
    ones again (moto kept every parameter a stack ever had).

Still unlike AWS: every resource except a service's UpdateService is created or updated in moto at
ExecuteChangeSet (only its events wait their turn), removed resources are deleted then too (their events
come in the cleanup phase), and a rollback restores resources in one step (their events again wait).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox import ecs
from sandbox.timing import TIMING

LOCK = threading.RLock()  # the clock thread and the server's request threads both change stacks
_operations: list[StackOperation] = []

SERVICE = "AWS::ECS::Service"
TASK_DEFINITION = "AWS::ECS::TaskDefinition"
VERB = {"Add": "CREATE", "Modify": "UPDATE", "Remove": "DELETE"}


def circuit_breaker_reason() -> str:
    """CloudFormation's reason on an AWS::ECS::Service whose deployment the circuit breaker failed."""
    return (
        "Resource handler returned message: \"Error occurred during operation 'ECS Deployment Circuit Breaker "
        f"was triggered'.\" (RequestToken: {uuid.uuid4()}, HandlerErrorCode: GeneralServiceException)"
    )


@dataclass
class Step:
    """One resource's part in an operation: events when it starts and when it ends."""

    logical_id: str
    resource_type: str
    action: str  # CREATE | UPDATE | DELETE
    deps: set[str]
    state: str = "PENDING"  # PENDING -> IN_PROGRESS -> COMPLETE | FAILED
    started: float = 0.0
    deployment: str | None = None  # the ECS deployment an AWS::ECS::Service step waits for
    fail_with: str | None = None  # a reason to fail with when its turn comes (moto raised while applying)
    physical_id: str = ""
    on_complete: Callable[[], None] | None = None
    retained: bool = False  # DeletionPolicy Retain: DELETE_SKIPPED, and the resource stays
    cancelled: bool = False  # stopped because another resource failed


@dataclass
class StackOperation:
    backend: Any  # moto's CloudFormationBackend of the stack's account and region
    stack: Any
    change_set: Any  # None for a delete
    kind: str  # CREATE | UPDATE | DELETE
    old_template_dict: dict[str, Any]
    old_parameters: dict[str, Any]
    old_objects: dict[str, Any]  # logical id -> the moto object before the operation
    phase: str = "FORWARD"  # FORWARD -> CLEANUP | ROLLBACK -> ROLLBACK_CLEANUP -> DONE
    steps: list[Step] = field(default_factory=list)
    removed: list[Any] = field(default_factory=list)  # the change set's Remove changes
    added: list[Step] = field(default_factory=list)  # resources the failed update created (deleted in cleanup)
    replaced: dict[str, Any] = field(default_factory=dict)  # logical id -> replacement to delete after rollback
    rollback_reason: str | None = None
    outputs_failure: str | None = None  # an export still imported elsewhere would go: roll back at the end
    finish: Callable[[], None] | None = None  # a delete's last act: moto deletes the stack and its resources

    # --- starting -------------------------------------------------------------------------------------

    @classmethod
    def start(cls, backend: Any, change_set: Any, now: float) -> StackOperation:
        """Apply the change set in moto (services' updates wait for their step) and begin the events."""
        stack = backend.stacks[change_set.stack_id]
        kind = change_set.change_set_type
        resource_map = stack.resource_map
        op = cls(
            backend=backend,
            stack=stack,
            change_set=change_set,
            kind=kind,
            old_template_dict=dict(stack.template_dict or {}),
            old_parameters=dict(resource_map.input_parameters or {}),
            old_objects={
                k: v
                for k, v in resource_map._parsed_resources.items()
                if k in (stack.template_dict or {}).get("Resources", {}) and v is not None
            },
        )
        op._stack_event(f"{kind}_IN_PROGRESS", "User Initiated")
        change_set.execution_status = "EXECUTE_IN_PROGRESS"
        error: tuple[str | None, str] | None = None
        in_use = _exports_in_use(backend, stack, change_set.template_dict) if kind == "UPDATE" else None
        if in_use is not None:
            # AWS updates the resources, fails at the outputs and rolls the resources back: the same end
            # state as changing nothing, which is what happens here (no resource events in between).
            op.outputs_failure = in_use
            _operations.append(op)
            op.advance(now)
            return op
        ecs.DEFER.active = True
        try:
            change_set.apply()
        except Exception as e:  # AWS reports the failed resource and rolls back; so do we
            reason = getattr(e, "message", None) or str(e) or type(e).__name__
            error = (getattr(e, "_sandbox_logical_id", None), str(reason))
        finally:
            ecs.DEFER.active = False
        template = change_set.template_dict.get("Resources", {})
        changes = [c for c in change_set.changes if c.action in ("Add", "Modify")]
        changed = {c.logical_resource_id for c in changes}
        for c in changes:
            deps = depends_on(template.get(c.logical_resource_id, {})) & changed - {c.logical_resource_id}
            op.steps.append(Step(c.logical_resource_id, c.resource_type, VERB[c.action], deps))
        if error is not None:
            failing = next((s for s in op.steps if s.logical_id == error[0]), None)
            if failing is None:  # not a resource of ours: fail the first one to start
                failing = op.steps[0] if op.steps else None
            if failing is None:
                op.steps.append(Step(stack.name, "AWS::CloudFormation::Stack", kind, set(), fail_with=error[1]))
            else:
                failing.fail_with = error[1]
        op.removed = [c for c in change_set.changes if c.action == "Remove"]
        _operations.append(op)
        op.advance(now)
        return op

    # --- the clock ------------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Move every step that can move, and the stack when its steps are done; repeat while anything moved."""
        moved = True
        while moved and self.phase != "DONE":
            moved = False
            for step in self.steps:
                if step.state == "PENDING" and all(self._done(d) for d in step.deps):
                    self._begin(step, now)
                    moved = True
                elif step.state == "IN_PROGRESS":
                    moved |= self._check(step, now)
            if self.phase in ("FORWARD", "ROLLBACK") and any(s.state == "FAILED" for s in self.steps):
                moved |= self._fail(now)
            elif all(s.state == "COMPLETE" for s in self.steps):
                self._next_phase(now)
                moved = True

    def _done(self, logical_id: str) -> bool:
        return any(s.logical_id == logical_id and s.state == "COMPLETE" for s in self.steps)

    def _object(self, logical_id: str) -> Any:
        return self.stack.resource_map._parsed_resources.get(logical_id)

    def _begin(self, step: Step, now: float) -> None:
        if step.retained:
            step.state = "COMPLETE"
            self._event(step, "DELETE_SKIPPED")
            return
        step.state, step.started = "IN_PROGRESS", now
        obj = self._object(step.logical_id)
        if step.resource_type == SERVICE and step.action != "DELETE" and obj is not None:
            before = _primary_id(obj)
            pending = obj.__dict__.pop("_sandbox_pending_update", None)
            if pending is not None:
                pending()  # UpdateService, now that its turn has come
            after = _primary_id(obj)
            step.deployment = after if (after != before or step.action == "CREATE") else None
        if not step.physical_id:
            step.physical_id = _physical_id(obj)
        self._event(step, f"{step.action}_IN_PROGRESS")

    def _check(self, step: Step, now: float) -> bool:
        """End a step in progress if it may; True when it ended."""
        if now - step.started < TIMING.resource:
            return False
        if step.fail_with is not None:
            step.state = "FAILED"
            self._event(step, f"{step.action}_FAILED", step.fail_with)
            return True
        if step.resource_type == SERVICE and step.action != "DELETE":
            verdict = _service_verdict(self._object(step.logical_id), step.deployment)
            if verdict == "WAIT":
                return False
            if verdict == "FAILED":
                step.state = "FAILED"
                self._event(step, f"{step.action}_FAILED", circuit_breaker_reason())
                return True
        if step.on_complete is not None:
            step.on_complete()
        step.state = "COMPLETE"
        self._event(step, f"{step.action}_COMPLETE")
        return True

    def _event(self, step: Step, status: str, reason: str | None = None) -> None:
        from moto.cloudformation.models import Event

        if step.resource_type == "AWS::CloudFormation::Stack":
            return  # the stack's own events are written by the phases
        self.stack.events.append(
            Event(
                stack_id=self.stack.stack_id,
                stack_name=self.stack.name,
                logical_resource_id=step.logical_id,
                physical_resource_id=step.physical_id,
                resource_type=step.resource_type,
                resource_status=status,
                resource_status_reason=reason,
                resource_properties=None,
            )
        )

    def _stack_event(self, status: str, reason: str | None = None) -> None:
        """The stack's own event; its reason is also DescribeStacks' StackStatusReason, as on AWS."""
        self.stack.status = status
        self.stack.stack_status_reason = reason
        self.stack._add_stack_event(status, resource_status_reason=reason)

    # --- phases ---------------------------------------------------------------------------------------

    def _next_phase(self, now: float) -> None:
        if self.phase == "FORWARD":
            if self.kind == "DELETE":
                self.phase = "DONE"
                if self.finish is not None:
                    events = len(self.stack.events)
                    self.finish()  # moto's delete writes DELETE_IN_PROGRESS again before DELETE_COMPLETE
                    repeated = [e for e in self.stack.events[events:] if e.resource_status == "DELETE_IN_PROGRESS"]
                    for event in repeated:
                        self.stack.events.remove(event)
                return
            if self.kind == "CREATE":
                self._succeed("CREATE_COMPLETE")
                return
            if self.outputs_failure is not None:
                self._stack_event("UPDATE_ROLLBACK_IN_PROGRESS", self.outputs_failure)
                self.phase, self.steps = "ROLLBACK", []
                return
            self._stack_event("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS")
            self.phase, self.steps = "CLEANUP", self._cleanup_steps(rolled_back=False)
        elif self.phase == "CLEANUP":
            self._succeed("UPDATE_COMPLETE")
        elif self.phase == "ROLLBACK":
            if self.kind == "CREATE":
                self._end("ROLLBACK_COMPLETE")
                return
            self._stack_event("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")
            self.phase, self.steps = "ROLLBACK_CLEANUP", self._cleanup_steps(rolled_back=True)
        elif self.phase == "ROLLBACK_CLEANUP":
            self._end("UPDATE_ROLLBACK_COMPLETE")

    def _fail(self, now: float) -> bool:
        """A resource failed: cancel what is in progress, then roll back (or stop, if rolling back failed)."""
        for step in self.steps:
            if step.state == "IN_PROGRESS":
                step.state, step.cancelled = "FAILED", True
                verb = "update" if step.action == "UPDATE" else "creation" if step.action == "CREATE" else "delete"
                self._event(step, f"{step.action}_FAILED", f"Resource {verb} cancelled")
        if self.phase == "ROLLBACK":
            self._end("UPDATE_ROLLBACK_FAILED" if self.kind == "UPDATE" else "ROLLBACK_FAILED")
            return True
        touched = [s for s in self.steps if s.state != "PENDING"]
        if self.kind == "CREATE":
            names = ", ".join(self._first_failures())
            reason = f"The following resource(s) failed to create: [{names}]. Rollback requested by user."
            self._stack_event("ROLLBACK_IN_PROGRESS", reason)
            self.stack.resource_map.delete()  # moto deletes at once; the events take their turn
            self.steps = [
                Step(s.logical_id, s.resource_type, "DELETE", set(), physical_id=s.physical_id)
                for s in reversed(touched)
            ]
        else:
            names = ", ".join(self._first_failures())
            self._stack_event("UPDATE_ROLLBACK_IN_PROGRESS", f"The following resource(s) failed to update: [{names}]. ")
            replaced = self._restore()
            if replaced is None:
                self._end("UPDATE_ROLLBACK_FAILED")
                return True
            self.replaced = replaced
            touched_updates = {s.logical_id for s in touched if s.action == "UPDATE"}
            template = self.old_template_dict.get("Resources", {})
            steps = []
            for s in touched:
                if s.action != "UPDATE":
                    continue
                deps = depends_on(template.get(s.logical_id, {})) & touched_updates - {s.logical_id}
                steps.append(Step(s.logical_id, s.resource_type, "UPDATE", deps))
            self.added = [s for s in touched if s.action == "CREATE"]
            self.steps = steps
        self.phase = "ROLLBACK"
        return True

    def _first_failures(self) -> list[str]:
        """The resources that failed by themselves (not the ones cancelled because of them)."""
        own = [s.logical_id for s in self.steps if s.state == "FAILED" and not s.cancelled]
        return own or [s.logical_id for s in self.steps if s.state == "FAILED"]

    def _restore(self) -> dict[str, Any] | None:
        """Put the stack's resources back as they were: replaced ones (new task definition revisions) by their
        old objects, the rest through moto's update to the old template. Returns logical id -> the
        replacement to delete in the cleanup phase, or None when moto could not restore (rollback failed)."""
        resource_map = self.stack.resource_map
        replaced: dict[str, Any] = {}
        for logical_id, old in self.old_objects.items():
            now_obj = resource_map._parsed_resources.get(logical_id)
            if now_obj is not None and now_obj is not old:
                replaced[logical_id] = now_obj
                resource_map._parsed_resources[logical_id] = old
        ecs.DEFER.active = True
        try:
            resource_map.update(self.old_template_dict, self.old_parameters)
        except Exception as e:
            self.rollback_reason = str(getattr(e, "message", None) or e)
            return None
        finally:
            ecs.DEFER.active = False
        # The stack's parameters are the old ones again, as on AWS (moto kept the ones the failed template added)
        declared = set(self.old_template_dict.get("Parameters") or {})
        for key in set(resource_map.resolved_parameters) - declared:
            resource_map.resolved_parameters.pop(key, None)
        started = {s.logical_id for s in self.steps if s.state != "PENDING"}
        for logical_id, obj in resource_map._parsed_resources.items():
            pending = getattr(obj, "__dict__", {}).get("_sandbox_pending_update")
            if pending is not None and logical_id not in started:
                obj.__dict__.pop("_sandbox_pending_update")
                pending()  # never updated forward, so its rollback changes nothing that anyone saw
        return replaced

    def _cleanup_steps(self, rolled_back: bool) -> list[Step]:
        """The cleanup phase: delete what the operation made obsolete (the old revisions after an update,
        the new ones and the added resources after a rollback), one DELETE step each."""
        steps: list[Step] = []
        if rolled_back:
            for logical_id, obj in self.replaced.items():
                steps.append(self._delete_step(logical_id, obj))
            for s in self.added:
                steps.append(Step(s.logical_id, s.resource_type, "DELETE", set(), physical_id=s.physical_id))
        else:
            for logical_id, old in self.old_objects.items():
                now_obj = self.stack.resource_map._parsed_resources.get(logical_id)
                if now_obj is not None and now_obj is not old:
                    steps.append(self._delete_step(logical_id, old))
            old_resources = self.old_template_dict.get("Resources", {})
            for change in self.removed:
                old = self.old_objects.get(change.logical_resource_id)
                rtype = old_resources.get(change.logical_resource_id, {}).get("Type", change.resource_type)
                step = Step(change.logical_resource_id, rtype, "DELETE", set(), physical_id=_physical_id(old))
                # AWS keeps a removed resource whose DeletionPolicy is Retain (DELETE_SKIPPED)
                step.retained = old_resources.get(change.logical_resource_id, {}).get("DeletionPolicy") == "Retain"
                steps.append(step)
        return steps

    def _delete_step(self, logical_id: str, obj: Any) -> Step:
        rtype = getattr(obj, "cf_resource_type", "") or TASK_DEFINITION
        step = Step(logical_id, rtype, "DELETE", set(), physical_id=_physical_id(obj))
        if rtype == TASK_DEFINITION:
            step.on_complete = lambda: _deregister(obj)
        return step

    def _succeed(self, status: str) -> None:
        stack, backend, change_set = self.stack, self.backend, self.change_set
        for export in list(stack.exports):
            backend.exports.pop(export.name, None)
        # A parameter the new template no longer declares is gone from the stack (DescribeStacks), as on AWS;
        # moto kept every parameter a stack ever had.
        declared = set(change_set.template_dict.get("Parameters") or {})
        for key in set(self.old_template_dict.get("Parameters") or {}) - declared:
            stack.resource_map.resolved_parameters.pop(key, None)
        stack.template = change_set.template
        stack._parse_template()
        stack.description = stack.template_dict.get("Description")
        stack.output_map = stack._create_output_map()
        for export in stack.exports:
            backend.exports[export.name] = export
        if change_set.parameters:
            stack.parameters = dict(change_set.parameters)
        change_set.execution_status = "EXECUTE_COMPLETE"
        self._end(status)

    def _end(self, status: str) -> None:
        if self.change_set is not None and (status.endswith("FAILED") or "ROLLBACK" in status):
            self.change_set.execution_status = "EXECUTE_FAILED"
        reason = self.rollback_reason if status.endswith("_FAILED") else None
        self._stack_event(status, reason)
        self.phase = "DONE"


# --- helpers --------------------------------------------------------------------------------------------


def _exports_in_use(backend: Any, stack: Any, template: dict[str, Any]) -> str | None:
    """AWS's reason when an update would delete or change an export another stack imports, else None
    (AWS: UPDATE_ROLLBACK_IN_PROGRESS "Export X cannot be deleted as it is in use by Y")."""
    from sandbox.cloudformation import template_imports

    new: dict[str, Any] = {}
    for output in (template.get("Outputs") or {}).values():
        name = (output.get("Export") or {}).get("Name")
        if isinstance(name, str):
            new[name] = output.get("Value")
    old = {e.name: e for e in stack.exports}
    for name in old:
        importers = [
            other.name
            for other in backend.stacks.values()
            if other.stack_id != stack.stack_id
            and not other.status.startswith("DELETE_COMPLETE")
            and name in template_imports(other.template_dict or {})
        ]
        if not importers:
            continue
        if name not in new:
            return f"Export {name} cannot be deleted as it is in use by {importers[0]}"
        value = new[name]
        if isinstance(value, str) and value != old[name].value:
            return f"Cannot update export {name} as it is in use by {importers[0]}"
    return None


def start(backend: Any, change_set: Any, now: float) -> StackOperation:
    with LOCK:
        return StackOperation.start(backend, change_set, now)


def start_delete(backend: Any, stack: Any, finish: Callable[[], None], now: float) -> StackOperation:
    """DeleteStack: each resource's DELETE events after the resources that refer to it, then `finish`
    (moto's own delete of the stack and its resources), which writes DELETE_COMPLETE."""
    with LOCK:
        resources = (stack.template_dict or {}).get("Resources", {})
        parsed = stack.resource_map._parsed_resources
        present = [k for k in resources if parsed.get(k) is not None]
        op = StackOperation(
            backend=backend,
            stack=stack,
            change_set=None,
            kind="DELETE",
            old_template_dict=dict(stack.template_dict or {}),
            old_parameters={},
            old_objects={},
            finish=finish,
        )
        for logical_id in present:
            referrers = {k for k in present if logical_id in depends_on(resources[k]) and k != logical_id}
            step = Step(logical_id, resources[logical_id].get("Type", ""), "DELETE", referrers)
            step.physical_id = _physical_id(parsed.get(logical_id))
            step.retained = resources[logical_id].get("DeletionPolicy") == "Retain"
            op.steps.append(step)
        op._stack_event("DELETE_IN_PROGRESS", "User Initiated")
        _operations.append(op)
        op.advance(now)
        return op


def tick(now: float) -> None:
    """Advance every stack operation in progress (after ECS has moved its deployments)."""
    with LOCK:
        for op in list(_operations):
            op.advance(now)
            if op.phase == "DONE":
                _operations.remove(op)


def running(stack_id: str) -> bool:
    return any(op.stack.stack_id == stack_id for op in _operations)


def reset() -> None:
    """Forget operations in progress (moto's /moto-api/reset forgets their stacks)."""
    with LOCK:
        _operations.clear()


def depends_on(resource: dict[str, Any]) -> set[str]:
    """Logical ids a template resource refers to: Ref, Fn::GetAtt, ${X} in Fn::Sub, DependsOn."""
    import re

    found: set[str] = set()
    depends = resource.get("DependsOn", [])
    found |= {depends} if isinstance(depends, str) else set(depends)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "Ref" and isinstance(value, str):
                    found.add(value)
                elif key == "Fn::GetAtt":
                    target = value[0] if isinstance(value, list) else str(value).split(".", 1)[0]
                    found.add(str(target))
                elif key == "Fn::Sub":
                    text = value[0] if isinstance(value, list) else value
                    found.update(m.split(".", 1)[0] for m in re.findall(r"\$\{([^}!]+)\}", str(text)))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(resource.get("Properties", {}))
    return found


def _primary_id(service: Any) -> str | None:
    deployments = getattr(service, "deployments", None) or []
    return deployments[0].get("id") if deployments else None


def _service_verdict(service: Any, deployment: str | None) -> str:
    """WAIT, DONE or FAILED for a service resource, as CloudFormation's stabilisation check sees it."""
    if service is None or getattr(service, "status", "ACTIVE") != "ACTIVE":
        return "FAILED"
    deployments = service.deployments or []
    if deployment is not None:
        dep = next((d for d in deployments if d.get("id") == deployment), None)
        failed = service.__dict__.get("_sandbox_failed_deployments", set())
        if dep is None or dep.get("rolloutState") == "FAILED" or deployment in failed:
            return "FAILED"
        done = dep.get("status") == "PRIMARY" and dep.get("rolloutState") == "COMPLETED"
        return "DONE" if done and service.running_count >= service.desired_count else "WAIT"
    primary = deployments[0] if deployments else None
    if primary is not None and primary.get("rolloutState") == "FAILED":
        return "FAILED"
    steady = primary is None or (
        primary.get("rolloutState") == "COMPLETED" and primary.get("taskDefinition") == service.task_definition
    )
    return "DONE" if steady and service.running_count == service.desired_count else "WAIT"


def _physical_id(obj: Any) -> str:
    if obj is None:
        return ""
    for attr in ("physical_resource_id", "arn"):
        try:
            value = getattr(obj, attr, None)
        except Exception:  # some moto models compute it from state that is gone
            value = None
        if value:
            return str(value)
    return ""


def _deregister(task_definition: Any) -> None:
    from moto.ecs.models import ecs_backends

    try:
        _, _, _, region, account, _ = str(task_definition.arn).split(":", 5)
        ecs_backends[account][region].deregister_task_definition(task_definition.arn)
    except Exception:  # already gone: nothing to clean up
        return
