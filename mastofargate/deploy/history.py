"""The deploy history: image tags of recent successful deploys, newest first (what `rollback` goes back to).

Kept in an SSM parameter: stack tags would touch every resource on each deploy.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from mastofargate import aws
from mastofargate.aws import NotFound
from mastofargate.deploy.options import Tags
from mastofargate.errors import UsageError
from mastofargate.target import Target

HISTORY_KEEP = 10


def history_parameter(target: Target) -> str:
    return f"/mastofargate/{target.name}/deploy-history"


def read_history(target: Target) -> list[dict[str, str]]:
    try:
        with aws.aws_errors("reading the deploy history"):
            value = target.client("ssm").get_parameter(Name=history_parameter(target))["Parameter"]["Value"]
    except NotFound:
        return []
    try:
        entries = json.loads(value)
    except json.JSONDecodeError:
        return []
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def record_history(target: Target, tags: Tags, *, seconds: float | None = None) -> None:
    """Add a successful deploy (and how long its rollout took: the one-task server's downtime estimate)."""
    entries = read_history(target)
    if entries and entries[0].get("mastodon") == tags.mastodon and entries[0].get("streaming") == tags.streaming:
        return
    entry = {
        "mastodon": tags.mastodon,
        "streaming": tags.streaming,
        "version": target.config.deployment.mastodon_version,
        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if seconds is not None:
        entry["seconds"] = str(round(seconds))
    with aws.aws_errors("writing the deploy history"):
        target.client("ssm").put_parameter(
            Name=history_parameter(target),
            Value=json.dumps([entry, *entries][:HISTORY_KEEP]),
            Type="String",
            Overwrite=True,
            Description="mastofargate: image tags of recent deploys (for rollback)",
        )


def previous_tags(target: Target, current: Tags | None) -> Tags:
    for entry in read_history(target):
        tags = Tags(entry.get("mastodon", ""), entry.get("streaming", ""))
        if tags.mastodon and tags.streaming and tags != current:
            return tags
    raise UsageError(
        "There is no earlier deploy to roll back to.",
        why=f"the deploy history ({history_parameter(target)}) has no image tags other than the running ones",
        fix="deploy the tags you want with 'mastofargate deploy --mastodon-tag ... --streaming-tag ...'",
    )
