"""Patches of moto's CloudFormation backend (change sets are how every deploy talks to CloudFormation).

Where moto 5.2 differs from AWS, and what is done here instead (as AWS does):
  - a CREATE change set's stack sees the region's exports (moto builds it without them, so every
    `Fn::ImportValue` of the app stack failed);
  - executing a change set refreshes the stack's outputs, exports and parameters (moto keeps those of
    the empty REVIEW_IN_PROGRESS stack), records one event per changed resource (moto records only stack
    events), and turns an exception while applying into a rolled-back stack with a `*_FAILED` event
    carrying the reason, instead of an HTTP 500; and drops the stack's change sets once one has been
    executed;
  - a resource whose only change is a parameter, used directly or through a condition (`Fn::If`), or a
    changed task definition it refers to (a new revision, so a new ARN), is listed in the change set and
    updated when it executes (moto listed parameter-only changes not at all and missed conditions);
  - `UpdateTerminationProtection` exists, and `DeleteStack` refuses a protected stack (moto has neither);
  - deleting a stack forgets resources moto cannot delete (e.g. a VPC with dependants) instead of failing.
"""

from __future__ import annotations

import sys
from typing import Any

_FINAL_FAIL = {"CREATE": "ROLLBACK_COMPLETE", "UPDATE": "UPDATE_ROLLBACK_COMPLETE"}


def patch() -> None:
    """Apply the backend patches listed in the module docstring."""
    from moto.cloudformation import models, responses
    from moto.cloudformation.exceptions import ValidationError
    from moto.cloudformation.parsing import ResourceMap
    from moto.core.utils import utcnow

    backend_cls = models.CloudFormationBackend
    original_create = backend_cls.create_change_set
    original_execute = backend_cls.execute_change_set
    original_delete = backend_cls.delete_stack
    original_map_delete = ResourceMap.delete
    from moto.cloudformation import parsing

    for fname in ("parse_and_create_resource", "parse_and_update_resource"):
        setattr(parsing, fname, _remember_failing_resource(getattr(parsing, fname)))

    def create_change_set(self: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
        change_set_id, stack_id = original_create(self, *args, **kwargs)
        stack = self.stacks[stack_id]
        stack.cross_stack_resources = self.exports
        stack.resource_map.cross_stack_resources = self.exports
        return change_set_id, stack_id

    def execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
        change_set = self.describe_change_set(change_set_name)
        if change_set.execution_status != "AVAILABLE":
            raise ValidationError(
                change_set.stack_name,
                message=f"ChangeSet [{change_set.change_set_id}] cannot be executed in its current status of "
                f"[{change_set.status}]",
            )
        stack = self.stacks[change_set.stack_id]
        kind = change_set.change_set_type
        old_exports = list(stack.exports)
        for export in old_exports:
            self.exports.pop(export.name, None)
        try:
            original_execute(self, change_set_name, stack_name)
        except Exception as e:  # AWS reports the failed resource and rolls back; so do we
            reason = getattr(e, "message", None) or str(e) or type(e).__name__
            failed = next(
                (c for c in change_set.changes if c.logical_resource_id == getattr(e, "_sandbox_logical_id", None)),
                None,
            )
            _resource_event(stack, failed, f"{kind}_FAILED", reason)
            stack.status = _FINAL_FAIL[kind]
            stack._add_stack_event(stack.status)
            change_set.execution_status = "EXECUTE_FAILED"
            for export in old_exports:
                self.exports[export.name] = export
            return
        stack.template = change_set.template
        stack._parse_template()
        stack.description = stack.template_dict.get("Description")
        stack.output_map = stack._create_output_map()
        for export in stack.exports:
            self.exports[export.name] = export
        if change_set.parameters:
            stack.parameters = dict(change_set.parameters)
        final = stack.events.pop()  # re-order: resource events before the stack's COMPLETE event
        status = "CREATE" if kind == "CREATE" else "UPDATE"
        for change in change_set.changes:
            action = {"Add": "CREATE", "Modify": "UPDATE", "Remove": "DELETE"}[change.action]
            _resource_event(stack, change, f"{action}_IN_PROGRESS", None)
            _resource_event(stack, change, f"{action}_COMPLETE", None)
        final.timestamp = utcnow()
        stack.events.append(final)
        stack.status = f"{status}_COMPLETE"
        for cs_id in [i for i, cs in self.change_sets.items() if cs.stack_id == stack.stack_id]:
            del self.change_sets[cs_id]  # AWS drops a stack's change sets once one is executed

    def diff(self: Any) -> list[Any]:
        names = self.stack.resource_map.build_resource_diff(self.template_dict, self.parameters)
        old = self.stack.resource_map._resource_json_map
        new = self.template_dict.get("Resources", {})
        changes = []
        for action, logical_ids in names.items():
            for logical_id in dict.fromkeys(logical_ids):
                rtype = (new.get(logical_id) or old.get(logical_id) or {}).get("Type", "")
                changes.append(models.Change(action=action, logical_resource_id=logical_id, resource_type=rtype))
        return changes

    def build_resource_diff(self: Any, other_template: dict[str, Any], params: dict[str, Any] | None = None) -> Any:
        old = self._resource_json_map
        new = other_template["Resources"]
        modify = [name for name in new if name in old and new[name] != old[name]]
        if params:
            changed = {p for p in params if self.input_parameters.get(p) != params[p]}
            conditions = _conditions_using(other_template.get("Conditions", {}), changed)
            for name in new:
                if name in old and name not in modify and _uses(new[name], changed, conditions):
                    modify.append(name)
        # A changed task definition is a new revision (a new ARN): what refers to it changes too, after it.
        replaced = {n for n in modify if new[n].get("Type") == "AWS::ECS::TaskDefinition"}
        for name in new:
            if name in old and name not in modify and _refs(new[name])[0] & replaced:
                modify.append(name)
        return {
            "Add": [name for name in new if name not in old],
            "Modify": modify,
            "Remove": [name for name in old if name not in new],
        }

    def delete_stack(self: Any, name_or_stack_id: str) -> None:
        for stack in list(self.stacks.values()):
            if name_or_stack_id in (stack.name, stack.stack_id) and stack.enable_termination_protection:
                raise ValidationError(
                    stack.name,
                    message=f"Stack [{stack.name}] cannot be deleted while TerminationProtection is enabled",
                )
        original_delete(self, name_or_stack_id)

    def map_delete(self: Any) -> None:
        try:
            original_map_delete(self)
        except Exception as e:  # moto cannot delete some resources (a VPC with dependants): forget them
            print(f"sandbox: forgot resources moto could not delete: {e}", file=sys.stderr, flush=True)

    def update_termination_protection(self: Any) -> Any:
        from moto.core.responses import ActionResult

        stack = self.cloudformation_backend.get_stack(self._get_param("StackName"))
        stack.enable_termination_protection = bool(self._get_bool_param("EnableTerminationProtection"))
        return ActionResult({"StackId": stack.stack_id})

    backend_cls.create_change_set = create_change_set  # type: ignore[method-assign]
    backend_cls.execute_change_set = execute_change_set  # type: ignore[method-assign]
    backend_cls.delete_stack = delete_stack  # type: ignore[method-assign]
    models.ChangeSet.diff = diff  # type: ignore[method-assign]
    ResourceMap.build_resource_diff = build_resource_diff  # type: ignore[method-assign]
    ResourceMap.delete = map_delete  # type: ignore[method-assign]
    responses.CloudFormationResponse.update_termination_protection = update_termination_protection  # type: ignore[attr-defined]


def _refs(node: Any) -> tuple[set[str], set[str]]:
    """(parameters/resources named by Ref, conditions named by Fn::If/Condition) anywhere in a node."""
    refs: set[str] = set()
    conds: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                refs.add(value)
            elif key == "Condition" and isinstance(value, str):
                conds.add(value)
            elif key == "Fn::If" and isinstance(value, list) and value and isinstance(value[0], str):
                conds.add(value[0])
            sub_refs, sub_conds = _refs(value)
            refs |= sub_refs
            conds |= sub_conds
    elif isinstance(node, list):
        for item in node:
            sub_refs, sub_conds = _refs(item)
            refs |= sub_refs
            conds |= sub_conds
    return refs, conds


def _conditions_using(conditions: dict[str, Any], params: set[str]) -> set[str]:
    """Conditions whose value depends (directly or through other conditions) on any of `params`."""
    found: set[str] = set()
    grew = True
    while grew:
        grew = False
        for name, definition in conditions.items():
            refs, conds = _refs(definition)
            if name not in found and (refs & params or conds & found):
                found.add(name)
                grew = True
    return found


def _uses(resource: dict[str, Any], params: set[str], conditions: set[str]) -> bool:
    refs, conds = _refs(resource)
    return bool(refs & params or conds & conditions)


def _remember_failing_resource(fn: Any) -> Any:
    """Wrap moto's per-resource create/update so an exception names the (innermost) failing resource."""
    if getattr(fn, "_sandbox_wrapped", False):
        return fn

    def wrapper(logical_id: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(logical_id, *args, **kwargs)
        except Exception as e:
            if not hasattr(e, "_sandbox_logical_id"):
                e._sandbox_logical_id = logical_id  # type: ignore[attr-defined]
            raise

    wrapper._sandbox_wrapped = True  # type: ignore[attr-defined]
    return wrapper


def _resource_event(stack: Any, change: Any, status: str, reason: str | None) -> None:
    from moto.cloudformation.models import Event

    logical_id = change.logical_resource_id if change else stack.name
    resource = stack.resource_map._parsed_resources.get(logical_id) if change else None
    stack.events.append(
        Event(
            stack_id=stack.stack_id,
            stack_name=stack.name,
            logical_resource_id=logical_id,
            physical_resource_id=str(getattr(resource, "physical_resource_id", "") or ""),
            resource_type=change.resource_type if change else "AWS::CloudFormation::Stack",
            resource_status=status,
            resource_status_reason=reason,
            resource_properties=None,
        )
    )

