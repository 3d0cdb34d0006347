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
from collections.abc import Callable
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
    deletion_date: datetime | None = None  # set once `retire-key` scheduled its deletion

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
        if self.deletion_date is not None:
            return (
                f"{head}; scheduled for deletion on {self.deletion_date:%Y-%m-%d} (until then "
                f"'aws kms cancel-key-deletion --key-id {self.key_arn}' keeps it)"
            )
        after = self.safe_after
        if after is None:
            return (
                f"{head}; the Exec transcripts' log group keeps events forever, so the transcripts written before "
                "then need this key as long as they exist: keep it (about $1/month), or delete those log streams "
                "first and then the key"
            )
        if now >= after:
            return f"{head}; its transcripts have expired: delete it with 'mastofargate retire-key' ({self.command()})"
        return (
            f"{head}; its last transcripts expire by {after:%Y-%m-%d %H:%M} UTC (retention {self.retention_days} "
            f"days): from then, delete it with 'mastofargate retire-key' ({self.command()})"
        )


def _recorded(target: Target) -> tuple[str, datetime, datetime | None] | None:
    """(key ARN, unused since, deletion date if scheduled) as recorded, or None."""
    try:
        with aws.aws_errors("reading the retired ECS Exec key's record"):
            value = target.client("ssm").get_parameter(Name=parameter(target))["Parameter"]["Value"]
    except NotFound:
        return None
    try:
        record = json.loads(value)
        deletion = record.get("deletion_date")
        return (
            str(record["key_arn"]),
            datetime.fromisoformat(record["unused_since"]),
            datetime.fromisoformat(deletion) if deletion else None,
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def read(target: Target) -> Retired | None:
    """The recorded retirement, with the transcripts' retention as the log group has it now (it may have
    changed since): what `status` shows."""
    found = _recorded(target)
    return Retired(found[0], found[1], exec_log_retention(target), found[2]) if found else None


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
        retired = Retired(known[0], known[1], retention, known[2])
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
    _write(target, retired)
    run.out.warn(f"{retired.describe(now)} (kept: nothing that may decrypt retained logs is deleted by a deploy)")
    return retired


def _write(target: Target, retired: Retired) -> None:
    record = {"key_arn": retired.key_arn, "unused_since": retired.unused_since.isoformat()}
    if retired.deletion_date is not None:
        record["deletion_date"] = retired.deletion_date.isoformat()
    with aws.aws_errors("recording the retired ECS Exec key"):
        target.client("ssm").put_parameter(
            Name=parameter(target),
            Value=json.dumps(record),
            Type="String",
            Overwrite=True,
            Description="mastofargate: the retired ECS Exec KMS key and since when nothing uses it",
        )


def still_used(target: Target, key_arn: str) -> list[str]:
    """What of this server still uses `key_arn` (empty: nothing): the data stack's key, the app stack's
    import of the old export, the Exec log group's key, the cluster's Exec configuration."""
    uses = []
    if target.stack_outputs(target.data_stack, refresh=True).get("KeyArn") == key_arn:
        uses.append(f"it is the key of {target.data_stack}")
    app = stacks.deployed_template(target, target.app_stack)
    if app is not None and names.export(target.name, OUTPUT) in template_imports(app):
        uses.append(f"{target.app_stack} still imports {names.export(target.name, OUTPUT)}")
    group = names.log_group(target.name, "exec")
    with aws.aws_errors("reading the ECS Exec log group"):
        groups = target.client("logs").describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    if any(g.get("logGroupName") == group and g.get("kmsKeyId") == key_arn for g in groups):
        uses.append(f"log group {group} encrypts with it")
    with aws.aws_errors("reading the ECS cluster"):
        clusters = target.client("ecs").describe_clusters(clusters=[target.cluster], include=["CONFIGURATIONS"])
    for cluster in clusters.get("clusters", []):
        exec_config = (cluster.get("configuration") or {}).get("executeCommandConfiguration") or {}
        if exec_config.get("kmsKeyId") == key_arn:
            uses.append(f"cluster {target.cluster}'s ECS Exec sessions use it")
    return uses


def schedule_deletion(run: Run, *, dry_run: bool, confirm: Callable[[str], bool]) -> Retired | None:
    """`mastofargate retire-key`: schedule the retired key's deletion (KMS's 30-day window), only once its
    last transcripts have expired and nothing uses it. Refuses (changing nothing) otherwise."""
    target = run.target
    now = datetime.now(UTC)
    retired = read(target)
    if retired is None:
        run.out.line(f"No retired ECS Exec key is recorded for {target.name}: nothing to delete.")
        return None
    if retired.deletion_date is not None:
        run.out.line(retired.describe(now))
        return retired
    if not retired.safe(now):
        after = retired.safe_after
        raise MastofargateError(
            f"Not deleting {retired.key_arn}: transcripts it encrypted may still be retained. Nothing was changed.",
            why=(
                f"the ECS Exec log group keeps events {retired.retention_days} days; the last ones written under "
                f"this key expire by {after:%Y-%m-%d %H:%M} UTC (with CloudWatch Logs' 72 hours to delete them)"
                if after
                else "the ECS Exec log group keeps events forever, so transcripts under this key never expire"
            ),
            fix=(
                f"run 'mastofargate retire-key' again after {after:%Y-%m-%d %H:%M} UTC"
                if after
                else "keep the key (about $1/month), or delete the log streams written before "
                f"{retired.unused_since:%Y-%m-%d} first and then the key with '{retired.command()}'"
            ),
        )
    uses = still_used(target, retired.key_arn)
    if uses:
        raise MastofargateError(
            f"Not deleting {retired.key_arn}: it is still in use. Nothing was changed.",
            why="; ".join(uses),
            fix="run 'mastofargate deploy' (it moves everything to the server's one key), then retire-key again",
        )
    try:
        with aws.aws_errors("reading the retired ECS Exec key"):
            state = target.client("kms").describe_key(KeyId=retired.key_arn)["KeyMetadata"]
    except NotFound:
        run.out.line(f"{retired.key_arn} no longer exists: nothing to delete.")
        return retired
    if state.get("KeyState") == "PendingDeletion":
        scheduled = Retired(retired.key_arn, retired.unused_since, retired.retention_days, state.get("DeletionDate"))
        run.out.line(scheduled.describe(now))
        return scheduled
    run.out.line(
        f"{retired.key_arn} (ECS Exec key of {target.name}, unused since {retired.unused_since:%Y-%m-%d}; its "
        f"transcripts expired by {retired.safe_after:%Y-%m-%d}) will be scheduled for deletion in "
        f"{PENDING_WINDOW_DAYS} days; until then it can be cancelled."
    )
    if dry_run:
        run.out.line("Dry run: nothing was changed.")
        return retired
    if not confirm("Schedule its deletion?"):
        raise MastofargateError("Cancelled; nothing was changed.")
    with aws.aws_errors("scheduling the deletion of the retired ECS Exec key"):
        answer = target.client("kms").schedule_key_deletion(
            KeyId=retired.key_arn, PendingWindowInDays=PENDING_WINDOW_DAYS
        )
    scheduled = Retired(retired.key_arn, retired.unused_since, retired.retention_days, answer["DeletionDate"])
    _write(target, scheduled)
    run.out.line(scheduled.describe(now))
    return scheduled
