"""A deployed server in the emulator for the backup verbs' tests (RDS or the Postgres task), and helpers.

The backup task definition `{name}-backup` is part of the app stack (see the common contract); where the
templates of this checkout do not make it yet, `ensure_backup_task_definition` registers one shaped as the
contract says (one container `backup`, awslogs group /mastofargate/{name}/backup, stream prefix `backup`),
copied from the migrate task definition for its roles and network mode, so the verbs run their one-offs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.deploy_sandbox import (
    CliResult,
    Recorder,
    Sandbox,
    create_zone,
    push_fake_images,
    run_cli,
    running_sandbox,
    write_config,
)

TAG_A = "v4.5.4-a1"
DOMAIN = "social.example.org"
READ_ONLY = ("Describe", "List", "Get", "Head", "Filter")


@dataclass
class World:
    sandbox: Sandbox
    config: Path
    tmp: Path


@contextmanager
def deployed_world(tmp: Path, database: str) -> Iterator[World]:
    with running_sandbox(tmp) as sandbox:
        config = write_config(tmp / "mastofargate.toml", create_zone(), deployment={"database": database})
        data = run_cli("deploy", "--config", str(config), "--data-only", "--yes")
        assert data.exit_code == 0, data.output
        push_fake_images(TAG_A)
        install = deploy(config, TAG_A, "--yes")
        assert install.exit_code == 0, install.output
        ensure_backup_task_definition()
        yield World(sandbox, config, tmp)


def deploy(config: Path, tag: str, *extra: str) -> CliResult:
    return run_cli(
        "deploy", "--config", str(config), "--mastodon-tag", tag, "--streaming-tag", tag, "--skip-assets", *extra
    )


def ensure_backup_task_definition(name: str = "social") -> None:
    import boto3

    ecs = boto3.client("ecs")
    family = f"{name}-backup"
    if family in ecs.list_task_definition_families(status="ACTIVE")["families"]:
        return
    source = ecs.describe_task_definition(taskDefinition=f"{name}-migrate")["taskDefinition"]
    group = f"/mastofargate/{name}/backup"
    logs = boto3.client("logs")
    if not logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]:
        logs.create_log_group(logGroupName=group)
    container = {
        "name": "backup",
        "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/social/backup:v1",
        "essential": True,
        "memory": int(source.get("memory") or 512),
        "environment": [
            {"name": "PGHOST", "value": f"{name}-postgres.example"},
            {"name": "PGSSLMODE", "value": "require"},
        ],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {"awslogs-group": group, "awslogs-region": "us-east-1", "awslogs-stream-prefix": "backup"},
        },
    }
    keep = ("taskRoleArn", "executionRoleArn", "networkMode", "cpu", "memory", "requiresCompatibilities")
    ecs.register_task_definition(
        family=family, containerDefinitions=[container], **{k: source[k] for k in keep if k in source}
    )


def mutating(calls: Recorder) -> list[str]:
    """Every call that is not a read (CloudWatch Logs reads included)."""
    return [f"{c.service}:{c.operation}" for c in calls.calls if not c.operation.startswith(READ_ONLY)]


def run_tasks(calls: Recorder) -> list[tuple[str, list[str], dict[str, str]]]:
    """(family, command, environment overrides) of every RunTask, in order."""
    out = []
    for call in calls.find("RunTask"):
        family = call.params["taskDefinition"].rsplit("/", 1)[-1].split(":")[0]
        override: dict[str, Any] = call.params.get("overrides", {}).get("containerOverrides", [{}])[0]
        env = {e["name"]: e["value"] for e in override.get("environment", [])}
        out.append((family, list(override.get("command", [])), env))
    return out


def positions(calls: Recorder, operation: str, **match: str) -> list[int]:
    return [
        i
        for i, c in enumerate(calls.calls)
        if c.operation == operation and all(v in str(c.params.get(k, "")) for k, v in match.items())
    ]


def push(tag: str) -> None:
    push_fake_images(tag)
