"""CloudFormation for the deploy: change sets, a readable plan, execution with live events, and a verdict.

Every stack change goes through a change set, so what will happen is shown (and refused, for data-bearing
resources) before anything happens. Resources carry a human description in `Metadata.Description`; the
plan and the progress lines show it next to the logical id, so "Database: PostgreSQL database (RDS)..."
reads as what it is.

The end state of an operation decides the exit code (errors.py):
  *_COMPLETE                                   ok
  ROLLBACK_COMPLETE / UPDATE_ROLLBACK_COMPLETE 1: it failed and CloudFormation undid it (the first failed
                                               event's ResourceStatusReason says why)
  *_FAILED (UPDATE_ROLLBACK_FAILED, ...)       4: stuck, a human must act (continue-update-rollback)
  still *_IN_PROGRESS at the timeout           3: we stopped waiting; the state is unknown
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, cast

from mastofargate import aws
from mastofargate.aws import ChangeSetEmpty, NotFound, StackFailed, StackNotFound, StackStuck, WaitTimedOut
from mastofargate.errors import EXIT_USAGE, MastofargateError
from mastofargate.target import StackState, read_state

__all__ = ["StackState", "read_state"]

if TYPE_CHECKING:
    from mypy_boto3_cloudformation.literals import CapabilityType
    from mypy_boto3_cloudformation.type_defs import (
        ChangeTypeDef,
        DescribeChangeSetOutputTypeDef,
        StackEventTypeDef,
    )
    from troposphere import Template

    from mastofargate.deploy.polling import Poller
    from mastofargate.target import Target

# CloudFormation refuses a TemplateBody larger than this; bigger templates go through S3.
TEMPLATE_BODY_LIMIT = 51_200
CAPABILITIES: list[CapabilityType] = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
# Resources that hold user data or identity: replacing or removing one loses data (DESIGN invariant 3).
DATA_BEARING = {
    "AWS::RDS::DBInstance": "database",
    "AWS::EFS::FileSystem": "file system",
    "AWS::EFS::AccessPoint": "file system directory",
    "AWS::S3::Bucket": "bucket",
    "AWS::ElastiCache::ReplicationGroup": "Redis cache",
    "AWS::Backup::BackupVault": "backup vault",
    "AWS::KMS::Key": "encryption key",
    "AWS::ECR::Repository": "image repository",
}
# Data-bearing resources a release removed from the templates on purpose, each deployed with DeletionPolicy
# Retain from the start: CloudFormation keeps them in the account when the template drops them, so their
# removal deletes nothing (DESIGN invariant 3 holds). Anything else removed or replaced is still refused.
RETAINED = {
    ("ExecKey", "AWS::KMS::Key"): "issue 10's ECS Exec key; its transcripts need it until they expire "
    "(deploy/exec_key.py)",
}
STACK_TYPE = "AWS::CloudFormation::Stack"
CANCELLED = ("Resource creation cancelled", "Resource update cancelled", "Resource deletion cancelled")
CHANGE_SET_POLL_SECONDS = 2  # the change_set_create_complete waiter's delay (botocore's default is 30 s)

Kind = Literal["CREATE", "UPDATE"]


def render(template: Template) -> str:
    """The JSON CloudFormation receives (the same bytes every time for the same config)."""
    return json.dumps(template.to_dict(), sort_keys=True)


def descriptions(template: dict[str, Any]) -> dict[str, str]:
    """logical id -> human description (Metadata.Description) of every resource in a template."""
    out = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        desc = (resource.get("Metadata") or {}).get("Description")
        if desc:
            out[logical_id] = str(desc)
    return out


# --- stack state (the one reader lives in target.py, below deploy/ and images/) ------------------------------


def exists(state: StackState | None) -> bool:
    return state is not None and state.exists


def deployed_template(target: Target, stack: str) -> dict[str, Any] | None:
    """The template the stack runs now (its metadata names the LOCAL_DOMAIN it was built for)."""
    try:
        with aws.aws_errors(f"reading the template of stack {stack}"):
            body = target.cloudformation.get_template(StackName=stack, TemplateStage="Original")["TemplateBody"]
    except StackNotFound:
        return None
    if isinstance(body, dict):
        return body
    try:
        return dict(json.loads(body))
    except (json.JSONDecodeError, TypeError):
        import yaml

        loaded = yaml.safe_load(body)
        return dict(loaded) if isinstance(loaded, dict) else None


# --- plans ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    action: str  # Add | Modify | Remove (| Import | Dynamic)
    logical_id: str
    resource_type: str
    replacement: str  # "True" | "False" | "Conditional" | "" (unknown)
    description: str

    @property
    def data_kind(self) -> str | None:
        return DATA_BEARING.get(self.resource_type)

    @property
    def loses_data(self) -> bool:
        """A data-bearing resource removed, or replaced (or maybe replaced)."""
        if self.data_kind is None or self.retained:
            return False
        return self.action == "Remove" or (self.action == "Modify" and self.replacement in ("True", "Conditional"))

    @property
    def retained(self) -> bool:
        """Removed from the stack but kept in the account (RETAINED)."""
        return self.action == "Remove" and (self.logical_id, self.resource_type) in RETAINED

    def line(self) -> str:
        sign = {"Add": "+", "Modify": "~", "Remove": "-"}.get(self.action, "?")
        extra = ""
        if self.retained:
            extra = f" (KEPT in the account, no longer in the stack: {RETAINED[self.logical_id, self.resource_type]})"
        elif self.action == "Modify" and self.replacement == "True":
            extra = " (REPLACED)"
        elif self.action == "Modify" and self.replacement == "Conditional":
            extra = " (may be replaced)"
        desc = f": {self.description}" if self.description else ""
        return f"{sign} {self.logical_id} [{self.resource_type}]{extra}{desc}"


@dataclass
class Plan:
    """What one stack will do. `change_set_id` is None for a plan read off a template (a stack that does
    not exist yet) or when there are no changes."""

    stack: str
    kind: Kind
    changes: list[Change]
    parameters: dict[str, str]
    template: dict[str, Any]
    change_set_id: str | None = None
    note: str = ""
    template_url: str | None = None
    _descriptions: dict[str, str] = field(default_factory=dict, repr=False)
    deferred: bool = False  # not plannable yet (needs the data stack's new outputs or built images)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    @property
    def losses(self) -> list[Change]:
        return [c for c in self.changes if c.loses_data]

    def counts(self) -> str:
        n = {a: sum(1 for c in self.changes if c.action == a) for a in ("Add", "Modify", "Remove")}
        return f"{n['Add']} to add, {n['Modify']} to modify, {n['Remove']} to remove"

    def summary(self) -> list[str]:
        """Readable lines: a header, data losses LOUDLY first, then every change."""
        if self.deferred:
            return [f"{self.stack}: {self.note}"]
        if not self.changes:
            return [f"{self.stack}: no changes" + (f" ({self.note})" if self.note else "")]
        head = f"{self.stack}: {'new stack, ' if self.kind == 'CREATE' else ''}{self.counts()}"
        lines = [head + (f" ({self.note})" if self.note else "")]
        for c in self.losses:
            verb = "REMOVED" if c.action == "Remove" else "REPLACED"
            lines.append(
                f"  !!! DATA LOSS: {c.logical_id} ({c.data_kind}) would be {verb}"
                + (" (CloudFormation says it may be)" if c.replacement == "Conditional" else "")
                + f": {c.description}"
            )
        lines += [f"  {c.line()}" for c in self.changes]
        return lines


def deferred_plan(stack: str, template: dict[str, Any], params: dict[str, str], note: str) -> Plan:
    """A stack that can only be planned later in the deploy (the reason is the note)."""
    return Plan(stack, "UPDATE", [], params, template, None, note, None, descriptions(template), deferred=True)


def template_plan(stack: str, template: dict[str, Any], params: dict[str, str], note: str = "") -> Plan:
    """A plan for a stack that does not exist yet, read off the template (every resource is added)."""
    desc = descriptions(template)
    changes = [
        Change("Add", logical_id, str(res.get("Type", "")), "", desc.get(logical_id, ""))
        for logical_id, res in sorted((template.get("Resources") or {}).items())
    ]
    return Plan(stack, "CREATE", changes, params, template, None, note, None, desc)


def upload_template(target: Target, bucket: str, stack: str, body: str) -> str:
    """Put a template into the deploy bucket (content-addressed key) and return its URL."""
    digest = hashlib.sha256(body.encode()).hexdigest()
    key = f"templates/{stack}/{digest}.json"
    s3 = target.client("s3")
    try:
        with aws.aws_errors(f"looking for the {stack} template in s3://{bucket}/{key}"):
            s3.head_object(Bucket=bucket, Key=key)  # same content, same key: already there
    except NotFound:
        with aws.aws_errors(f"uploading the {stack} template to s3://{bucket}/{key}"):
            s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json")
    return f"https://{bucket}.s3.{target.region}.amazonaws.com/{key}"


def _template_source(target: Target, stack: str, body: str, bucket: str | None) -> tuple[dict[str, str], str | None]:
    if bucket:
        url = upload_template(target, bucket, stack, body)
        return {"TemplateURL": url}, url
    if len(body.encode()) <= TEMPLATE_BODY_LIMIT:
        return {"TemplateBody": body}, None
    raise MastofargateError(
        f"The {stack} template is {len(body.encode())} bytes; CloudFormation takes at most "
        f"{TEMPLATE_BODY_LIMIT} inline and there is no deploy bucket to upload it to.",
        fix="report this: the data stack template must stay small enough to pass inline",
    )


class ChangeSetFailed(MastofargateError):
    """CloudFormation could not compute a change set; `reason` is its StatusReason."""

    def __init__(self, stack: str, reason: str) -> None:
        super().__init__(
            f"CloudFormation could not plan {stack}.",
            why=reason or "the change set failed without a reason",
            fix="fix the cause above and run the command again; nothing was changed",
        )
        self.stack = stack
        self.reason = reason


def create_change_set(
    target: Target,
    stack: str,
    template: dict[str, Any],
    params: dict[str, str],
    *,
    kind: Kind,
    bucket: str | None = None,
    role_arn: str | None = None,
    timeout: float = 600,
) -> Plan:
    """Create a change set and wait (botocore's waiter) until CloudFormation has computed it. A change set
    without changes is deleted and returned as a plan without changes (not an error). A change set that
    imports an export the data stack has not published yet raises `aws.ExportsNotPublished`."""
    body = json.dumps(template, sort_keys=True)
    source, url = _template_source(target, stack, body, bucket)
    name = f"mastofargate-{datetime.now(UTC).strftime('%Y%m%d%H%M%S%f')}"
    cfn = target.cloudformation
    if role_arn:  # the CI stack's CloudFormation role (deploy.ci_roles): CloudFormation acts with it
        source = {**source, "RoleARN": role_arn}
    desc = descriptions(template)
    no_changes = Plan(stack, kind, [], params, template, None, "", url, desc)
    try:
        with aws.aws_errors(f"creating a change set for {stack}"):
            resp = cfn.create_change_set(
                StackName=stack,
                ChangeSetName=name,
                ChangeSetType=kind,
                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(params.items())],
                Capabilities=CAPABILITIES,
                Description="mastofargate deploy",
                Tags=[{"Key": "mastofargate:stack", "Value": target.name}],
                **source,  # type: ignore[arg-type]  # TemplateBody or TemplateURL, both str
            )
    except ChangeSetEmpty:
        return no_changes
    change_set_id = str(resp["Id"])
    info = _wait_change_set(target, change_set_id, timeout)
    if info.get("Status") == "FAILED":
        reason = str(info.get("StatusReason", ""))
        delete_change_set(target, change_set_id)
        if aws.is_no_changes(reason):
            return no_changes
        if aws.is_missing_export(reason):
            raise aws.ExportsNotPublished(
                f"The {stack} change set imports a value the data stack has not exported yet.",
                why=reason,
                fix="update the data stack first (deploy does this in order)",
            )
        raise ChangeSetFailed(stack, reason)
    changes = [_change(rc, desc) for rc in _all_changes(target, change_set_id)]
    return Plan(stack, kind, changes, params, template, change_set_id, "", url, desc)


def _wait_change_set(target: Target, change_set_id: str, timeout: float) -> DescribeChangeSetOutputTypeDef:
    """The change set once computed (CREATE_COMPLETE or FAILED): botocore's waiter, whose end states are
    terminal. The waiter raises on FAILED; its last response is the answer either way."""
    from botocore.exceptions import WaiterError

    cfn = target.cloudformation
    attempts = max(1, int(timeout // CHANGE_SET_POLL_SECONDS))
    try:
        with aws.aws_errors("waiting for a change set"):
            try:
                cfn.get_waiter("change_set_create_complete").wait(
                    ChangeSetName=change_set_id,
                    WaiterConfig={"Delay": CHANGE_SET_POLL_SECONDS, "MaxAttempts": attempts},
                )
            except WaiterError as e:
                last: Any = e.last_response or {}
                if last.get("Status") == "FAILED":
                    return cast("DescribeChangeSetOutputTypeDef", last)
                if "Error" in last:
                    raise
                raise WaitTimedOut(
                    f"CloudFormation took longer than {timeout:.0f} s to compute change set {change_set_id}.",
                    fix="try again; if it keeps happening, look at the change set in the CloudFormation console",
                ) from None
    except MastofargateError:
        raise
    with aws.aws_errors("reading a change set"):
        return cfn.describe_change_set(ChangeSetName=change_set_id)


def _all_changes(target: Target, change_set_id: str) -> list[ChangeTypeDef]:
    cfn = target.cloudformation
    out: list[ChangeTypeDef] = []
    with aws.aws_errors("reading a change set"):
        for page in cfn.get_paginator("describe_change_set").paginate(ChangeSetName=change_set_id):
            out += page.get("Changes", [])
    return out


def _change(raw: ChangeTypeDef, desc: dict[str, str]) -> Change:
    rc = raw.get("ResourceChange") or {}
    logical_id = str(rc.get("LogicalResourceId", ""))
    return Change(
        action=str(rc.get("Action", "")),
        logical_id=logical_id,
        resource_type=str(rc.get("ResourceType", "")),
        replacement=str(rc.get("Replacement", "") or ""),
        description=desc.get(logical_id, ""),
    )


def delete_change_set(target: Target, change_set_id: str) -> None:
    with aws.aws_errors("deleting a change set"):
        target.cloudformation.delete_change_set(ChangeSetName=change_set_id)


def discard(target: Target, plan: Plan) -> None:
    """Drop a plan's change set; for a CREATE change set also the empty REVIEW_IN_PROGRESS stack it made."""
    if plan.change_set_id is None:
        return
    delete_change_set(target, plan.change_set_id)
    plan.change_set_id = None
    if plan.kind == "CREATE":
        state = read_state(target, plan.stack)
        if state is not None and state.status == "REVIEW_IN_PROGRESS":
            with aws.aws_errors(f"deleting the empty stack {plan.stack}"):
                target.cloudformation.delete_stack(StackName=plan.stack)


class DataLossRefused(MastofargateError):
    """A plan would replace or remove a data-bearing resource (DESIGN invariant 3)."""


def refuse_data_loss(plans: list[Plan], allow: bool) -> None:
    """Stop before anything happens when a plan would replace or remove a data-bearing resource."""
    losses = [(p.stack, c) for p in plans for c in p.losses]
    if not losses or allow:
        return
    listed = "; ".join(f"{stack} {c.logical_id} ({c.data_kind}: {c.description})" for stack, c in losses)
    raise DataLossRefused(
        "REFUSED: this deploy would replace or remove resources that hold data. Nothing was changed.",
        why=listed,
        fix="find the config change that causes it and undo it; if losing that data is really intended, "
        "take a backup and run again with --allow-data-replacement",
        exit_code=EXIT_USAGE,
    )


# --- execution -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackEvent:
    at: datetime
    logical_id: str
    resource_type: str
    status: str
    reason: str
    description: str

    def line(self) -> str:
        desc = f" ({self.description})" if self.description else ""
        reason = f": {self.reason}" if self.reason else ""
        return f"{self.at.astimezone().strftime('%H:%M:%S')} {self.status:<28} {self.logical_id}{desc}{reason}"


class EventReader:
    """New events of one stack since the reader was made, oldest first."""

    def __init__(self, target: Target, stack: str, desc: dict[str, str]) -> None:
        self.target = target
        self.stack = stack
        self.desc = desc
        self.seen: set[str] = set()
        self.events: list[StackEvent] = []
        for event in self._page():  # what is already there is history, not this operation
            self.seen.add(event["EventId"])

    def _page(self) -> list[StackEventTypeDef]:
        """Events newer than the last seen one (the paginator's pages are newest first)."""
        cfn = self.target.cloudformation
        out: list[StackEventTypeDef] = []
        try:
            with aws.aws_errors(f"reading events of stack {self.stack}"):
                for page in cfn.get_paginator("describe_stack_events").paginate(StackName=self.stack):
                    batch = page.get("StackEvents", [])
                    out += batch
                    if any(e["EventId"] in self.seen for e in batch):
                        break
        except StackNotFound:
            return out
        return out

    def read(self) -> list[StackEvent]:
        new = [e for e in self._page() if e["EventId"] not in self.seen]
        fresh = []
        for raw in reversed(new):  # API order is newest first
            self.seen.add(raw["EventId"])
            at = raw.get("Timestamp") or datetime.now(UTC)
            event = StackEvent(
                at=at,
                logical_id=str(raw.get("LogicalResourceId", "")),
                resource_type=str(raw.get("ResourceType", "")),
                status=str(raw.get("ResourceStatus", "")),
                reason=str(raw.get("ResourceStatusReason", "") or ""),
                description=self.desc.get(str(raw.get("LogicalResourceId", "")), ""),
            )
            fresh.append(event)
        self.events += fresh
        return fresh

    def first_failure(self) -> StackEvent | None:
        """The first resource that failed (not the ones cancelled because of it)."""
        for event in self.events:
            own = event.resource_type != STACK_TYPE and not any(c in event.reason for c in CANCELLED)
            if own and event.status.endswith("_FAILED"):
                return event
        failed = next((e for e in self.events if e.status.endswith("_FAILED")), None)
        if failed is not None:
            return failed
        # No resource failed: CloudFormation rolled back for the stack itself (e.g. "Export X cannot be
        # deleted as it is in use by Y", found only when it reaches the outputs); its reason says why.
        return next(
            (e for e in self.events if e.resource_type == STACK_TYPE and e.status.endswith("ROLLBACK_IN_PROGRESS")),
            None,
        )


def start(target: Target, plan: Plan) -> EventReader | None:
    """Execute a plan's change set and return at once (the reader of its events); None when there is
    nothing to execute. Follow it with `follow`."""
    if plan.change_set_id is None:
        return None
    reader = EventReader(target, plan.stack, plan._descriptions or descriptions(plan.template))
    with aws.aws_errors(f"executing the change set of {plan.stack}"):
        target.cloudformation.execute_change_set(ChangeSetName=plan.change_set_id)
    plan.change_set_id = None
    return reader


def execute(
    target: Target,
    plan: Plan,
    poller: Poller,
    *,
    timeout: float,
    on_event: Callable[[StackEvent], None] | None = None,
    on_tick: Callable[[], None] | None = None,
) -> str:
    """Execute a plan's change set and follow it to the end; returns the final status or raises (see
    `follow`)."""
    reader = start(target, plan)
    if reader is None:
        return "NO_CHANGES"
    return follow(target, plan.stack, reader, poller, timeout=timeout, on_event=on_event, on_tick=on_tick)


def follow(
    target: Target,
    stack: str,
    reader: EventReader,
    poller: Poller,
    *,
    timeout: float,
    on_event: Callable[[StackEvent], None] | None = None,
    on_tick: Callable[[], None] | None = None,
    deleting: bool = False,
) -> str:
    """Poll a stack until it leaves *_IN_PROGRESS, streaming its new events to on_event and calling on_tick
    once per poll (the deploy reads its services' deployments there). Returns an OK status; raises
    StackFailed (rolled back: exit 1), StackStuck (exit 4) or WaitTimedOut (exit 3)."""
    deadline = poller.deadline(timeout)
    while True:
        state = read_state(target, stack)
        for event in reader.read():
            if on_event:
                on_event(event)
        if on_tick:
            on_tick()
        if state is None or (deleting and state.status == "DELETE_COMPLETE"):
            if deleting:
                return "DELETE_COMPLETE"
            raise StackFailed(stack, "", "", "", what=f"Stack {stack} disappeared while it was being changed.")
        if state.phase != "in_progress":
            return verdict(state, reader)
        if poller.expired(deadline):
            raise WaitTimedOut(
                f"Gave up waiting for stack {stack} after {timeout:.0f} s; it is still {state.status}.",
                why="the operation takes longer than --timeout; CloudFormation goes on with it",
                fix=f"watch it with 'mastofargate status' (or 'aws cloudformation describe-stacks --stack-name "
                f"{stack}'); when it has finished, run 'mastofargate deploy' again",
            )
        poller.pause(deadline)


def verdict(state: StackState, reader: EventReader) -> str:
    """OK states pass through; failures raise typed errors saying what failed, why, and what to do."""
    stack, status = state.name, state.status
    if state.phase == "ok":
        return status
    failure = reader.first_failure()
    logical_id = failure.logical_id if failure else ""
    what = f"{failure.logical_id} ({failure.description or failure.resource_type})" if failure else stack
    reason = failure.reason if failure and failure.reason else state.reason or status
    if state.phase == "rolled_back":
        undone = "the stack was never created" if status == "ROLLBACK_COMPLETE" else "the previous state is back"
        fix = (
            f"fix the cause and run 'mastofargate deploy' again (the failed stack is deleted first: "
            f"'aws cloudformation delete-stack --stack-name {stack}')"
            if status == "ROLLBACK_COMPLETE"
            else "fix the cause and run 'mastofargate deploy' again"
        )
        raise StackFailed(
            stack,
            logical_id,
            status,
            reason,
            what=f"Stack {stack} failed at {what} and was rolled back ({status}: {undone}).",
            fix=fix,
        )
    if status == "DELETE_FAILED":
        fix = (
            f"remove what blocks the delete (see why), then 'aws cloudformation delete-stack --stack-name {stack}' "
            "or run the command again"
        )
    elif failure:
        fix = (
            f"aws cloudformation continue-update-rollback --stack-name {stack}  (add --resources-to-skip "
            f"{failure.logical_id} if that resource cannot roll back), then run 'mastofargate deploy' again"
        )
    else:
        fix = f"aws cloudformation continue-update-rollback --stack-name {stack}, then 'mastofargate deploy'"
    what = f"Stack {stack} is stuck in {status} at {what}; it needs a human."
    raise StackStuck(stack, logical_id, status, reason, what=what, fix=fix)


def set_termination_protection(target: Target, stack: str, enabled: bool) -> None:
    with aws.aws_errors(f"{'enabling' if enabled else 'disabling'} termination protection of {stack}"):
        target.cloudformation.update_termination_protection(StackName=stack, EnableTerminationProtection=enabled)


def delete_stack(
    target: Target,
    stack: str,
    poller: Poller,
    *,
    timeout: float,
    on_event: Callable[[StackEvent], None] | None = None,
) -> str:
    """Delete a stack and wait for it to be gone."""
    template = deployed_template(target, stack) or {}
    reader = EventReader(target, stack, descriptions(template))
    with aws.aws_errors(f"deleting stack {stack}"):
        target.cloudformation.delete_stack(StackName=stack)
    return follow(target, stack, reader, poller, timeout=timeout, on_event=on_event, deleting=True)
