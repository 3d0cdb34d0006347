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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from mastofargate import aws
from mastofargate.errors import EXIT_FAILED, EXIT_STUCK, EXIT_TIMEOUT, EXIT_USAGE, MastofargateError

if TYPE_CHECKING:
    from troposphere import Template

    from mastofargate.deploy.target import Target

# CloudFormation refuses a TemplateBody larger than this; bigger templates go through S3.
TEMPLATE_BODY_LIMIT = 51_200
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
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
NO_CHANGES = ("didn't contain changes", "No updates are to be performed", "No changes")
OK_STATES = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE", "DELETE_COMPLETE")
ROLLED_BACK_STATES = ("ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_ROLLBACK_COMPLETE")
CANCELLED = ("Resource creation cancelled", "Resource update cancelled", "Resource deletion cancelled")
POLL_START = 0.25
POLL_MAX = 5.0

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


def _sleep_backoff(delay: float) -> float:
    time.sleep(delay)
    return min(delay * 1.6, POLL_MAX)


# --- stack state ---------------------------------------------------------------------------------------


def describe(target: Target, stack: str) -> dict[str, Any] | None:
    """The stack, or None when it does not exist (or only a leftover REVIEW_IN_PROGRESS shell exists)."""
    from botocore.exceptions import ClientError

    with aws.aws_errors(f"reading stack {stack}"):
        try:
            stacks = target.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
        except ClientError as e:
            if "does not exist" in str(e):
                return None
            raise
    return dict(stacks[0]) if stacks else None


def exists(info: dict[str, Any] | None) -> bool:
    return info is not None and info.get("StackStatus") not in ("REVIEW_IN_PROGRESS", "DELETE_COMPLETE")


def parameters(info: dict[str, Any] | None) -> dict[str, str]:
    return {p["ParameterKey"]: p.get("ParameterValue", "") for p in (info or {}).get("Parameters", [])}


def deployed_template(target: Target, stack: str) -> dict[str, Any] | None:
    """The template the stack runs now (its metadata names the LOCAL_DOMAIN it was built for)."""
    from botocore.exceptions import ClientError

    with aws.aws_errors(f"reading the template of stack {stack}"):
        try:
            body = target.client("cloudformation").get_template(StackName=stack, TemplateStage="Original")[
                "TemplateBody"
            ]
        except ClientError as e:
            if "does not exist" in str(e):
                return None
            raise
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
        if self.data_kind is None:
            return False
        return self.action == "Remove" or (self.action == "Modify" and self.replacement in ("True", "Conditional"))

    def line(self) -> str:
        sign = {"Add": "+", "Modify": "~", "Remove": "-"}.get(self.action, "?")
        extra = ""
        if self.action == "Modify" and self.replacement == "True":
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
    from botocore.exceptions import ClientError

    with aws.aws_errors(f"uploading the {stack} template to s3://{bucket}/{key}"):
        try:
            s3.head_object(Bucket=bucket, Key=key)  # same content, same key: already there
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
            s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json")
    return f"https://{bucket}.s3.{target.region}.amazonaws.com/{key}"


def create_change_set(
    target: Target,
    stack: str,
    template: dict[str, Any],
    params: dict[str, str],
    *,
    kind: Kind,
    bucket: str | None = None,
    timeout: float = 600,
) -> Plan:
    """Create a change set and wait until CloudFormation has computed it. A change set without changes
    is deleted and returned as a plan without changes (not an error)."""
    from botocore.exceptions import ClientError

    body = json.dumps(template, sort_keys=True)
    source: dict[str, str]
    url = None
    if bucket:
        url = upload_template(target, bucket, stack, body)
        source = {"TemplateURL": url}
    elif len(body.encode()) <= TEMPLATE_BODY_LIMIT:
        source = {"TemplateBody": body}
    else:
        raise MastofargateError(
            f"The {stack} template is {len(body.encode())} bytes; CloudFormation takes at most "
            f"{TEMPLATE_BODY_LIMIT} inline and there is no deploy bucket to upload it to.",
            fix="report this: the data stack template must stay small enough to pass inline",
        )
    name = f"mastofargate-{datetime.now(UTC).strftime('%Y%m%d%H%M%S%f')}"
    cfn = target.client("cloudformation")
    desc = descriptions(template)
    with aws.aws_errors(f"creating a change set for {stack}"):
        try:
            resp = cfn.create_change_set(
                StackName=stack,
                ChangeSetName=name,
                ChangeSetType=kind,
                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(params.items())],
                Capabilities=CAPABILITIES,
                Description="mastofargate deploy",
                Tags=[{"Key": "mastofargate:stack", "Value": target.name}],
                **source,
            )
        except ClientError as e:
            if any(s in str(e) for s in NO_CHANGES):
                return Plan(stack, kind, [], params, template, None, "", url, desc)
            raise
    change_set_id = str(resp["Id"])
    info = _wait_change_set(target, change_set_id, timeout)
    if info["Status"] == "FAILED":
        reason = str(info.get("StatusReason", ""))
        delete_change_set(target, change_set_id)
        if any(s in reason for s in NO_CHANGES):
            return Plan(stack, kind, [], params, template, None, "", url, desc)
        raise MastofargateError(
            f"CloudFormation could not plan {stack}.",
            why=reason or "the change set failed without a reason",
            fix="fix the cause above and run the command again; nothing was changed",
        )
    changes = [_change(rc, desc) for rc in _all_changes(target, change_set_id, info)]
    return Plan(stack, kind, changes, params, template, change_set_id, "", url, desc)


def _wait_change_set(target: Target, change_set_id: str, timeout: float) -> dict[str, Any]:
    cfn = target.client("cloudformation")
    deadline = time.monotonic() + timeout
    delay = POLL_START
    while True:
        with aws.aws_errors("reading a change set"):
            info = dict(cfn.describe_change_set(ChangeSetName=change_set_id))
        if info.get("Status") in ("CREATE_COMPLETE", "FAILED"):
            return info
        if time.monotonic() > deadline:
            raise MastofargateError(
                f"CloudFormation took longer than {timeout:.0f} s to compute change set {change_set_id}.",
                fix="try again; if it keeps happening, look at the change set in the CloudFormation console",
                exit_code=EXIT_TIMEOUT,
            )
        delay = _sleep_backoff(delay)


def _all_changes(target: Target, change_set_id: str, first: dict[str, Any]) -> list[dict[str, Any]]:
    out = list(first.get("Changes", []))
    token = first.get("NextToken")
    cfn = target.client("cloudformation")
    while token:
        with aws.aws_errors("reading a change set"):
            page = cfn.describe_change_set(ChangeSetName=change_set_id, NextToken=token)
        out += page.get("Changes", [])
        token = page.get("NextToken")
    return out


def _change(raw: dict[str, Any], desc: dict[str, str]) -> Change:
    rc = raw.get("ResourceChange", {})
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
        target.client("cloudformation").delete_change_set(ChangeSetName=change_set_id)


def discard(target: Target, plan: Plan) -> None:
    """Drop a plan's change set; for a CREATE change set also the empty REVIEW_IN_PROGRESS stack it made."""
    if plan.change_set_id is None:
        return
    delete_change_set(target, plan.change_set_id)
    plan.change_set_id = None
    if plan.kind == "CREATE":
        info = describe(target, plan.stack)
        if info is not None and info.get("StackStatus") == "REVIEW_IN_PROGRESS":
            with aws.aws_errors(f"deleting the empty stack {plan.stack}"):
                target.client("cloudformation").delete_stack(StackName=plan.stack)


def refuse_data_loss(plans: list[Plan], allow: bool) -> None:
    """Stop before anything happens when a plan would replace or remove a data-bearing resource."""
    losses = [(p.stack, c) for p in plans for c in p.losses]
    if not losses or allow:
        return
    listed = "; ".join(f"{stack} {c.logical_id} ({c.data_kind}: {c.description})" for stack, c in losses)
    raise MastofargateError(
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
        self.since = datetime.now(UTC)
        for event in self._page():  # what is already there is history, not this operation
            self.seen.add(event["EventId"])

    def _page(self) -> list[dict[str, Any]]:
        from botocore.exceptions import ClientError

        cfn = self.target.client("cloudformation")
        out: list[dict[str, Any]] = []
        with aws.aws_errors(f"reading events of stack {self.stack}"):
            try:
                for page in cfn.get_paginator("describe_stack_events").paginate(StackName=self.stack):
                    batch = page.get("StackEvents", [])
                    out += batch
                    if any(e["EventId"] in self.seen for e in batch):
                        break
            except ClientError as e:
                if "does not exist" in str(e):
                    return out
                raise
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
            own = event.resource_type != "AWS::CloudFormation::Stack" and not any(c in event.reason for c in CANCELLED)
            if own and event.status.endswith("_FAILED"):
                return event
        return next((e for e in self.events if e.status.endswith("_FAILED")), None)


def execute(
    target: Target,
    plan: Plan,
    *,
    timeout: float,
    on_event: Callable[[StackEvent], None] | None = None,
) -> str:
    """Execute a plan's change set and watch it to the end; returns the final status or raises with
    the exit code its end state deserves (see the module docstring)."""
    if plan.change_set_id is None:
        return "NO_CHANGES"
    reader = EventReader(target, plan.stack, plan._descriptions or descriptions(plan.template))
    with aws.aws_errors(f"executing the change set of {plan.stack}"):
        target.client("cloudformation").execute_change_set(ChangeSetName=plan.change_set_id)
    plan.change_set_id = None
    return wait(target, plan.stack, reader, timeout=timeout, on_event=on_event)


def wait(
    target: Target,
    stack: str,
    reader: EventReader,
    *,
    timeout: float,
    on_event: Callable[[StackEvent], None] | None = None,
    deleting: bool = False,
) -> str:
    """Poll a stack until it leaves *_IN_PROGRESS; report its new events on the way."""
    deadline = time.monotonic() + timeout
    delay = POLL_START
    while True:
        info = describe(target, stack)
        for event in reader.read():
            if on_event:
                on_event(event)
        status = "DELETE_COMPLETE" if info is None and deleting else str((info or {}).get("StackStatus", ""))
        if info is None and not deleting:
            raise MastofargateError(f"Stack {stack} disappeared while it was being changed.", exit_code=EXIT_TIMEOUT)
        if not status.endswith("_IN_PROGRESS"):
            return verdict(stack, status, reader, info)
        if time.monotonic() > deadline:
            raise MastofargateError(
                f"Gave up waiting for stack {stack} after {timeout:.0f} s; it is still {status}.",
                why="the operation takes longer than --timeout; the state on AWS is unknown until it ends",
                fix=f"watch it with 'aws cloudformation describe-stacks --stack-name {stack}' (or the console); "
                "when it has finished, run 'mastofargate deploy' again",
                exit_code=EXIT_TIMEOUT,
            )
        delay = _sleep_backoff(delay)


def verdict(stack: str, status: str, reader: EventReader, info: dict[str, Any] | None) -> str:
    """OK states pass through; failures raise with what failed, why, and what to do."""
    if status in OK_STATES:
        return status
    failure = reader.first_failure()
    what = f"{failure.logical_id} ({failure.description or failure.resource_type})" if failure else stack
    why = failure.reason if failure and failure.reason else str((info or {}).get("StackStatusReason", "")) or status
    if status in ROLLED_BACK_STATES:
        undone = "the stack was never created" if status == "ROLLBACK_COMPLETE" else "the previous state is back"
        fix = (
            f"fix the cause and run 'mastofargate deploy' again (the failed stack is deleted first: "
            f"'aws cloudformation delete-stack --stack-name {stack}')"
            if status == "ROLLBACK_COMPLETE"
            else "fix the cause and run 'mastofargate deploy' again"
        )
        raise MastofargateError(
            f"Stack {stack} failed at {what} and was rolled back ({status}: {undone}).",
            why=why,
            fix=fix,
            exit_code=EXIT_FAILED,
        )
    if status == "DELETE_FAILED":
        fix = (
            f"remove what blocks the delete (see why), then 'aws cloudformation delete-stack --stack-name {stack}' "
            "or run the command again"
        )
    else:
        fix = (
            f"aws cloudformation continue-update-rollback --stack-name {stack}  (add --resources-to-skip "
            f"{failure.logical_id} if that resource cannot roll back), then run 'mastofargate deploy' again"
            if failure
            else f"aws cloudformation continue-update-rollback --stack-name {stack}, then 'mastofargate deploy'"
        )
    raise MastofargateError(
        f"Stack {stack} is stuck in {status} at {what}; it needs a human.",
        why=why,
        fix=fix,
        exit_code=EXIT_STUCK,
    )


def set_termination_protection(target: Target, stack: str, enabled: bool) -> None:
    with aws.aws_errors(f"{'enabling' if enabled else 'disabling'} termination protection of {stack}"):
        target.client("cloudformation").update_termination_protection(
            StackName=stack, EnableTerminationProtection=enabled
        )


def delete_stack(
    target: Target, stack: str, *, timeout: float, on_event: Callable[[StackEvent], None] | None = None
) -> str:
    """Delete a stack and wait for it to be gone."""
    template = deployed_template(target, stack) or {}
    reader = EventReader(target, stack, descriptions(template))
    with aws.aws_errors(f"deleting stack {stack}"):
        target.client("cloudformation").delete_stack(StackName=stack)
    return wait(target, stack, reader, timeout=timeout, on_event=on_event, deleting=True)
