"""A deployed server in the emulator for the backup verbs' tests (RDS or the Postgres task), and helpers.

The verbs' one-off tasks run the app stack's own `{name}-backup` task definition (stack/backup_tasks.py).
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
        yield World(sandbox, config, tmp)


def deploy(config: Path, tag: str, *extra: str) -> CliResult:
    return run_cli(
        "deploy", "--config", str(config), "--mastodon-tag", tag, "--streaming-tag", tag, "--skip-assets", *extra
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
