"""The ECS Exec key of servers deployed before issue 12: retired by the deploy, never deleted by it.

Issue 10 gave ECS Exec its own KMS key (`ExecKey`, DeletionPolicy Retain, exported as `ExecKeyArn`); issue 12
moves the cluster's Exec sessions and the Exec transcripts' log group to the server's one key (stack/keys.py).
On such a server the deploy:
  1. keeps the `ExecKeyArn` export while the app stack imports it (deploy/exports.py), and lets the data
     stack drop `ExecKey`, which CloudFormation keeps in the account (Retain; deploy/stacks.py RETAINED);
  2. updates the app stack, whose cluster and log group now use the one key;
  3. records here, once the deployed app stack no longer imports `ExecKeyArn`, that the old key is unused
     and since when (an SSM parameter beside the deploy history), and says from when it may be deleted.
The transcripts CloudWatch Logs wrote before the switch stay encrypted under the old key, so they are readable
only while it exists. CloudWatch Logs' API reference, AssociateKmsKey: "Only the log events ingested after the
key is associated are encrypted with that key", the association "is stored as long as the data encrypted with
the KMS key is still within CloudWatch Logs", and it "can take up to 5 minutes ... to take effect";
PutRetentionPolicy: expired events are deleted "typically ... up to 72 hours after" they reach the retention.
So the old key decrypts nothing still retained once the retention, 5 minutes and 72 hours have passed since
the switch. Nothing here deletes or schedules the deletion of a key: `deploy` and `status` show the command,
whose 30-day pending window still lets a mistake be undone (`aws kms cancel-key-deletion`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mastofargate import aws, names
from mastofargate.aws import NotFound
from mastofargate.deploy import stacks
from mastofargate.deploy.exports import template_imports
from mastofargate.errors import MastofargateError

if TYPE_CHECKING:
    from mastofargate.deploy.context import Run
    from mastofargate.target import Target

OUTPUT = "ExecKeyArn"  # the data stack's output (and export key) of the retired key
ASSOCIATE_LAG = timedelta(minutes=5)  # AssociateKmsKey takes up to 5 minutes to take effect
EXPIRY_LAG = timedelta(hours=72)  # CloudWatch Logs deletes expired events typically within 72 hours
PENDING_WINDOW_DAYS = 30  # the longest KMS allows: a mistaken deletion can still be cancelled for a month


def parameter(target: Target) -> str:
    return f"/mastofargate/{target.name}/retired-exec-key"


@dataclass(frozen=True)
class Retired:
    """The retired key, since when nothing uses it, and the transcripts' retention now (None: kept forever)."""

    key_arn: str
    unused_since: datetime
    retention_days: int | None

    @property
    def safe_after(self) -> datetime | None:
        """When the last transcript it encrypted has expired and been deleted (None: never, at this retention)."""
        if self.retention_days is None:
            return None
        return self.unused_since + ASSOCIATE_LAG + timedelta(days=self.retention_days) + EXPIRY_LAG

    def safe(self, now: datetime) -> bool:
        after = self.safe_after
        return after is not None and now >= after

    def command(self) -> str:
        region = self.key_arn.split(":")[3] if self.key_arn.count(":") >= 5 else ""
        where = f" --region {region}" if region else ""
        return (
            f"aws kms schedule-key-deletion --key-id {self.key_arn} --pending-window-in-days {PENDING_WINDOW_DAYS}"
            + where
        )

    def describe(self, now: datetime) -> str:
        """One line for `deploy` and `status`: unused since when, safe to delete from when, and how."""
        head = f"old ECS Exec key {self.key_arn} unused since {self.unused_since:%Y-%m-%d %H:%M} UTC"
        after = self.safe_after
        if after is None:
            return (
                f"{head}; the Exec transcripts' log group keeps events forever, so the transcripts written before "
                "then need this key as long as they exist: keep it (about $1/month), or delete those log streams "
                "first and then the key"
            )
        if now >= after:
            return f"{head}; its transcripts have expired: delete it with '{self.command()}'"
        return (
            f"{head}; its last transcripts expire by {after:%Y-%m-%d} (retention {self.retention_days} days): "
            f"from then, delete it with '{self.command()}'"
        )


def _recorded(target: Target) -> tuple[str, datetime] | None:
    """(key ARN, unused since) as recorded, or None."""
    try:
        with aws.aws_errors("reading the retired ECS Exec key's record"):
            value = target.client("ssm").get_parameter(Name=parameter(target))["Parameter"]["Value"]
    except NotFound:
        return None
    try:
        record = json.loads(value)
        return str(record["key_arn"]), datetime.fromisoformat(record["unused_since"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def read(target: Target) -> Retired | None:
    """The recorded retirement, with the transcripts' retention as the log group has it now (it may have
    changed since): what `status` shows."""
    found = _recorded(target)
    return Retired(found[0], found[1], exec_log_retention(target)) if found else None


def exec_log_retention(target: Target) -> int | None:
    """Retention in days of the Exec transcripts' log group now (None: never expire, or no such group)."""
    group = names.log_group(target.name, "exec")
    with aws.aws_errors("reading the ECS Exec log group"):
        found = target.client("logs").describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    for g in found:
        if g.get("logGroupName") == group:
            days = g.get("retentionInDays")
            return int(days) if days else None
    return None


def template_retention(app_template: dict[str, Any] | None) -> int | None:
    """The Exec log group's retention as the deployed app template sets it (the deploy reads no log group:
    its CI role need not describe them); None when it sets none (never expire)."""
    group = ((app_template or {}).get("Resources") or {}).get("ExecLogGroup") or {}
    days = (group.get("Properties") or {}).get("RetentionInDays")
    return int(days) if isinstance(days, (int, str)) and str(days).isdigit() else None


def settle(run: Run, *, dry_run: bool, remind: bool) -> Retired | None:
    """Record the old key as unused once the deployed app stack no longer imports it, and say what follows
    (`remind`: also when it was recorded before). Runs before the plan (a deploy cut short after the app
    stack moved is recorded by the next one, before its data update drops the export) and after the rollout.
    Never fails a deploy: a record it could not write is written by the next one (it warns).
    Returns the retirement (recorded now or before), or None when this server never had the old key."""
    try:
        return _settle(run, dry_run=dry_run, remind=remind)
    except MastofargateError as e:
        run.out.warn(
            f"could not check or record the retired ECS Exec key: {e.what} (nothing was deleted; the next deploy "
            "tries again)"
        )
        return None


def _settle(run: Run, *, dry_run: bool, remind: bool) -> Retired | None:
    target = run.target
    now = datetime.now(UTC)
    known = _recorded(target)
    old = target.stack_outputs(target.data_stack, refresh=True).get(OUTPUT)
    if known is None and old is None:
        return None  # a server that never had the old key: nothing more to read
    app = stacks.deployed_template(target, target.app_stack)
    retention = template_retention(app)
    if known is not None and (old is None or old == known[0]):
        retired = Retired(known[0], known[1], retention)
        if remind:
            run.out.line(retired.describe(now))
        return retired
    if old is None:
        return None
    if app is not None and names.export(target.name, OUTPUT) in template_imports(app):
        return None  # the app stack still uses it: the next step of this deploy moves it
    retired = Retired(old, now, retention)
    if dry_run:
        run.out.line(f"  would record: {retired.describe(now)}")
        return retired
    with aws.aws_errors("recording the retired ECS Exec key"):
        target.client("ssm").put_parameter(
            Name=parameter(target),
            Value=json.dumps({"key_arn": old, "unused_since": now.isoformat()}),
            Type="String",
            Overwrite=True,
            Description="mastofargate: the retired ECS Exec KMS key and since when nothing uses it",
        )
    run.out.warn(f"{retired.describe(now)} (kept: nothing that may decrypt retained logs is deleted by a deploy)")
    return retired
