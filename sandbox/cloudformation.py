"""Patches of moto's CloudFormation backend (change sets are how every deploy talks to CloudFormation).

Where moto 5.2 differs from AWS, and what is done here instead (as AWS does):
  - ExecuteChangeSet returns at once and the stack changes over time, waiting for ECS services and rolling
    back on failure (sandbox/operations.py has the sequences); moto applied everything inside the call;
  - while a stack operation is in progress, CreateChangeSet and ExecuteChangeSet on that stack are refused
    ("... is in UPDATE_IN_PROGRESS state and can not be updated."); executing a change set drops the
    stack's other change sets;
  - a CREATE change set's stack sees the region's exports (moto builds it without them, so every
    `Fn::ImportValue` of the app stack failed);
  - a resource whose only change is a parameter, used directly, through `Fn::Sub` or through a condition
    (`Fn::If`), or a changed task definition it refers to (a new revision, so a new ARN), is listed in the
    change set and updated when it executes (moto listed parameter-only changes not at all and missed
    conditions and Fn::Sub); modified resources are applied after the modified resources they refer to;
  - DescribeStackEvents pages (100 events, NextToken), newest first (moto returned every event at once);
  - a change set that imports an export no stack publishes FAILS with "No export named X found", as AWS
    computes it (moto accepted it and failed only on execution);
  - a change set whose template holds a Secrets Manager dynamic reference
    (`{{resolve:secretsmanager:NAME:SecretString:KEY}}`) to a secret that does not exist, is scheduled for
    deletion, or lacks that JSON key FAILS, as AWS resolves dynamic references while computing the change set
    (moto never resolved them: an RDS password naming a missing secret deployed). The value itself is not
    put anywhere (moto's stand-ins keep the reference string), so nothing secret reaches the emulator's state;
  - an update that removes a resource whose DeletionPolicy is Retain keeps it (DELETE_SKIPPED; moto deleted
    it, e.g. a KMS key);
  - an update that would delete or change an export another stack imports fails and rolls back ("Export X
    cannot be deleted as it is in use by Y"; moto let it go and left the importer dangling);
  - `UpdateTerminationProtection` exists, and `DeleteStack` refuses a protected stack (moto has neither);
  - deleting a stack forgets resources moto cannot delete (e.g. a VPC with dependants) instead of failing;
  - a modified resource whose type moto cannot update (AWS::RDS::DBInstance: a new MasterUserPassword) is kept
    as it was, as AWS updates such properties in place (moto dropped it, and DescribeStacks then failed on
    the outputs' Fn::GetAtt with an internal error).

  - DeleteStack returns at once: DELETE_IN_PROGRESS, each resource DELETE_IN_PROGRESS -> DELETE_COMPLETE
    after the resources that refer to it, DELETE_COMPLETE; then the stack is found only by its id (moto
    deleted everything inside the call).
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any

from sandbox import operations

EVENTS_PAGE = 100  # DescribeStackEvents returns at most this many events per page, newest first


def _refuse_if_busy(stack: Any) -> None:
    """AWS refuses to change a stack while an operation on it is in progress."""
    from moto.cloudformation.exceptions import ValidationError

    if stack.status.endswith("_IN_PROGRESS") and stack.status != "REVIEW_IN_PROGRESS":
        raise ValidationError(
            stack.name,
            message=f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated.",
        )


def patch() -> None:
    """Apply the backend patches listed in the module docstring."""
    from moto.cloudformation import models, responses
    from moto.cloudformation.exceptions import ValidationError
    from moto.cloudformation.parsing import ResourceMap

    backend_cls = models.CloudFormationBackend
    original_create = backend_cls.create_change_set
    original_delete = backend_cls.delete_stack
    original_map_delete = ResourceMap.delete
    from moto.cloudformation import parsing

    for fname in ("parse_and_create_resource", "parse_and_update_resource"):
        setattr(parsing, fname, _remember_failing_resource(getattr(parsing, fname)))
    parsing.parse_and_update_resource = _keep_what_moto_cannot_update(parsing.parse_and_update_resource)

    def create_change_set(self: Any, stack_name: str, *args: Any, **kwargs: Any) -> tuple[str, str]:
        for stack in self.stacks.values():
            if stack.name == stack_name:
                _refuse_if_busy(stack)
        change_set_id, stack_id = original_create(self, stack_name, *args, **kwargs)
        stack = self.stacks[stack_id]
        stack.cross_stack_resources = self.exports
        stack.resource_map.cross_stack_resources = self.exports
        change_set = self.change_sets[change_set_id]
        missing = sorted(_imports(change_set.template_dict) - set(self.exports))
        unresolvable = _unresolvable_secret(change_set.template_dict, self.account_id, self.region_name)
        if missing and change_set.status == "CREATE_COMPLETE":
            # AWS resolves Fn::ImportValue while computing the change set and fails it (moto resolved it only
            # when executing, so an app stack needing a data stack's new export looked plannable).
            change_set.status = "FAILED"
            change_set.execution_status = "UNAVAILABLE"
            change_set.status_reason = f"No export named {missing[0]} found"
        elif unresolvable and change_set.status == "CREATE_COMPLETE":
            change_set.status = "FAILED"
            change_set.execution_status = "UNAVAILABLE"
            change_set.status_reason = unresolvable
        return change_set_id, stack_id

    def execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
        change_set = self.describe_change_set(change_set_name)
        if change_set.execution_status != "AVAILABLE":
            raise ValidationError(
                change_set.stack_name,
                message=f"ChangeSet [{change_set.change_set_id}] cannot be executed in its current status of "
                f"[{change_set.status}]",
            )
        _refuse_if_busy(self.stacks[change_set.stack_id])
        for cs_id in [i for i, cs in self.change_sets.items() if cs.stack_id == change_set.stack_id]:
            del self.change_sets[cs_id]  # AWS drops a stack's change sets once one is executed
        operations.start(self, change_set, time.monotonic())

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
            "Modify": _dependency_order(modify, new),
            "Remove": [name for name in old if name not in new],
        }

    def delete_stack(self: Any, name_or_stack_id: str) -> None:
        for stack in list(self.stacks.values()):
            if name_or_stack_id in (stack.name, stack.stack_id) and stack.enable_termination_protection:
                raise ValidationError(
                    stack.name,
                    message=f"Stack [{stack.name}] cannot be deleted while TerminationProtection is enabled",
                )
        stack = next((st for st in self.stacks.values() if name_or_stack_id in (st.name, st.stack_id)), None)
        if stack is None or stack.status == "DELETE_IN_PROGRESS":
            return  # AWS: deleting a stack that does not exist (or is being deleted) succeeds and does nothing
        if stack.status == "REVIEW_IN_PROGRESS":  # nothing was ever created
            original_delete(self, stack.stack_id)
            return
        _refuse_if_busy(stack)
        operations.start_delete(self, stack, lambda: original_delete(self, stack.stack_id), time.monotonic())

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

    def describe_stack_events(self: Any) -> Any:
        from moto.core.responses import ActionResult

        events = self.cloudformation_backend.describe_stack_events(self._get_param("StackName"))[::-1]
        token = self._get_param("NextToken")
        start = int(token) if token and str(token).isdigit() else 0
        result: dict[str, Any] = {"StackEvents": events[start : start + EVENTS_PAGE]}
        if start + EVENTS_PAGE < len(events):
            result["NextToken"] = str(start + EVENTS_PAGE)
        return ActionResult(result)

    backend_cls.create_change_set = create_change_set  # type: ignore[method-assign]
    backend_cls.execute_change_set = execute_change_set  # type: ignore[method-assign]
    backend_cls.delete_stack = delete_stack  # type: ignore[method-assign]
    models.ChangeSet.diff = diff  # type: ignore[method-assign]
    ResourceMap.build_resource_diff = build_resource_diff  # type: ignore[method-assign]
    ResourceMap.delete = map_delete  # type: ignore[method-assign]
    original_delete_resource = ResourceMap._delete_resource

    def delete_resource(self: Any, parsed_resource: Any, resource_json: dict[str, Any]) -> None:
        if resource_json.get("DeletionPolicy") == "Retain":
            return  # AWS keeps it (DELETE_SKIPPED); moto deleted it when an update removed it
        original_delete_resource(self, parsed_resource, resource_json)

    ResourceMap._delete_resource = delete_resource  # type: ignore[method-assign,assignment]
    responses.CloudFormationResponse.update_termination_protection = update_termination_protection  # type: ignore[attr-defined]
    responses.CloudFormationResponse.describe_stack_events = describe_stack_events  # type: ignore[method-assign]


SECRET_REFERENCE = re.compile(r"\{\{resolve:secretsmanager:([^:}]+):SecretString:([^:}]*)[^}]*\}\}")


def _unresolvable_secret(template: dict[str, Any], account_id: str, region: str) -> str:
    """Why a Secrets Manager dynamic reference of `template` cannot be resolved ("" when all can), in the
    words AWS uses; reads the emulator's own Secrets Manager."""
    import json

    from moto.secretsmanager.models import secretsmanager_backends

    backend = secretsmanager_backends[account_id][region]
    for name, key in sorted(set(SECRET_REFERENCE.findall(json.dumps(template)))):
        secret = next((s for s in backend.secrets.values() if name in (s.name, s.arn)), None)
        if secret is None or secret.is_deleted():
            return f"Secrets Manager can't find the specified secret. (Secret: {name})"
        if key:
            try:
                values = json.loads(secret.versions[secret.default_version_id].get("secret_string") or "{}")
            except (KeyError, ValueError):
                values = {}
            if key not in values:
                return f"Could not find SecretString key {key} in secret {name}"
    return ""


def template_imports(template: dict[str, Any]) -> set[str]:
    """The export names a stack's template imports (sandbox/operations.py protects them, as AWS does)."""
    return _imports(template)


def _imports(node: Any) -> set[str]:
    """Literal export names a template imports (Fn::ImportValue of a string)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Fn::ImportValue" and isinstance(value, str):
                found.add(value)
            else:
                found |= _imports(value)
    elif isinstance(node, list):
        for item in node:
            found |= _imports(item)
    return found


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
            elif key == "Fn::Sub":  # "${Name}" and "${Resource.Attr}" in the string are references too
                text = value[0] if isinstance(value, list) and value else value
                refs |= {m.split(".", 1)[0] for m in re.findall(r"\$\{([^}!]+)\}", str(text))}
            sub_refs, sub_conds = _refs(value)
            refs |= sub_refs
            conds |= sub_conds
    elif isinstance(node, list):
        for item in node:
            sub_refs, sub_conds = _refs(item)
            refs |= sub_refs
            conds |= sub_conds
    return refs, conds


def _dependency_order(names: list[str], resources: dict[str, Any]) -> list[str]:
    """`names` with every resource after the ones among them it refers to (moto applies updates in list order,
    and a service updated before its task definition would keep the old revision)."""
    todo = list(names)
    ordered: list[str] = []
    while todo:
        ready = [n for n in todo if not (operations.depends_on(resources.get(n, {})) & set(todo)) - {n}]
        for name in ready or todo[:1]:  # a cycle cannot be deployed anyway; keep going in template order
            ordered.append(name)
            todo.remove(name)
    return ordered


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


def _keep_what_moto_cannot_update(fn: Any) -> Any:
    """A modified resource whose type moto cannot update (no update_from_cloudformation_json, e.g.
    AWS::RDS::DBInstance) came back as None and replaced the resource in the stack's map, so every later
    Fn::GetAtt of it (the stack's outputs: DescribeStacks) failed. AWS updates such properties in place (the
    schema's non-create-only properties: a new MasterUserPassword, instance class...): the resource stays, as
    it was (the changed property is not modelled here)."""
    if getattr(fn, "_sandbox_keeps", False):
        return fn

    def wrapper(logical_id: str, resource_json: Any, resources_map: Any, *args: Any, **kwargs: Any) -> Any:
        updated = fn(logical_id, resource_json, resources_map, *args, **kwargs)
        if updated is None:
            return resources_map[logical_id]
        return updated

    wrapper._sandbox_keeps = True  # type: ignore[attr-defined]
    wrapper._sandbox_wrapped = True  # type: ignore[attr-defined]
    return wrapper


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
