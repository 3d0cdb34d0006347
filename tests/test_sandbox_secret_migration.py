"""A server deployed by the release BEFORE the one secret, moved onto it by this release's deploy (emulator).

The older server is made by the older release's own code (`git archive` of LEGACY_RELEASE, run as
`python -m mastofargate` with that tree first on PYTHONPATH), so its three secrets, its templates and its
stacks are exactly what users have deployed. Then, with this release, in file order on one emulator:
  1. a deploy whose migration fails (the read-back differs): exit 1, the message says the server still uses
     the legacy secrets; no one secret exists, no stack changed, the legacy secrets untouched;
  2. `plan` and `deploy --dry-run`: say what the migration would do, change nothing;
  3. a deploy whose rollout fails (the emulator's `-sandbox-unhealthy` image): the one secret made verbatim
     from the legacy ones BEFORE any change set (the emulator fails a change set whose dynamic reference names
     a missing secret, as AWS does), the data stack switched, the app stack rolled back by CloudFormation onto
     the legacy secrets, the old version serving, nothing lost; prune-legacy refuses;
  4. the next deploy: the one secret used as it is, both stacks switched to it, the legacy secrets untouched
     and reported unused; `status` says how to remove them;
  5. `secrets prune-legacy`: removes them (30-day window); the next deploy has nothing to do.
Needs git and the release's commit (a full clone); skipped, saying so, without them.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from mastofargate.config import load_config
from mastofargate.deploy import bootstrap, migrate_secrets
from mastofargate.stack.secrets import join
from mastofargate.target import Target
from tests.deploy_sandbox import (
    REPO,
    Sandbox,
    create_zone,
    push_fake_images,
    recording,
    run_cli,
    running_sandbox,
    service_images,
    write_config,
)

pytestmark = pytest.mark.xdist_group("deploy-sandbox-secrets")

# The last commit of main with three secrets per server (mastofargate/NAME/app, /database, /redis).
LEGACY_RELEASE = "5bffaecef3b5f791cfd81f597fb00ec7437f25a4"
TAG = "v4.5.4-a1"
UNHEALTHY = "v4.5.4-b2-sandbox-unhealthy"  # the emulator's tasks of this tag never get healthy
SERVER = "mastofargate/social/server"
LEGACY = {kind: f"mastofargate/social/{kind}" for kind in ("app", "database", "redis")}
# Runs the older release's CLI with the emulator's short poll interval (its waits take fractions of a second);
# the same stand-in tests/deploy_sandbox.aws_env gives this release's CLI.
DRIVER = (
    "import sys\n"
    "from mastofargate.deploy import context\n"
    "from mastofargate.deploy.polling import Poller, SystemClock\n"
    "context.system_poller = lambda interval=0.1: Poller(SystemClock(), 0.1)\n"
    "from mastofargate.cli import main\n"
    "sys.argv = ['mastofargate', *sys.argv[1:]]\n"
    "main()\n"
)


@dataclass
class World:
    sandbox: Sandbox
    config: Path
    legacy: dict[str, dict[str, Any]]
    versions: dict[str, dict[str, list[str]]]


def legacy_tree(dest: Path) -> Path:
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", LEGACY_RELEASE, "mastofargate"], capture_output=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"the release before the one secret ({LEGACY_RELEASE[:7]}) is not in this clone's history")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def legacy_cli(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "CI": "1", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-c", DRIVER, *args], env=env, capture_output=True, text=True, timeout=900, cwd=tree
    )


def sm() -> Any:
    return boto3.client("secretsmanager")


def names() -> list[str]:
    return sorted(s["Name"] for s in sm().list_secrets()["SecretList"])


def values(name: str) -> dict[str, Any]:
    return dict(json.loads(sm().get_secret_value(SecretId=name)["SecretString"]))


def versions() -> dict[str, dict[str, list[str]]]:
    return {name: dict(sm().describe_secret(SecretId=name)["VersionIdsToStages"]) for name in LEGACY.values()}


def stack(name: str) -> tuple[dict[str, str], str]:
    cfn = boto3.client("cloudformation")
    described = cfn.describe_stacks(StackName=name)["Stacks"][0]
    body = cfn.get_template(StackName=name)["TemplateBody"]
    params = {p["ParameterKey"]: p["ParameterValue"] for p in described.get("Parameters", [])}
    return params, body if isinstance(body, str) else json.dumps(body)


def running_secret_arns() -> set[str]:
    """The secret ARNs the services' current task definitions read (ECS resolves them at task start)."""
    ecs = boto3.client("ecs")
    arns = ecs.list_services(cluster="social")["serviceArns"]
    out = set()
    for svc in ecs.describe_services(cluster="social", services=arns)["services"]:
        td = ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])["taskDefinition"]
        for c in td["containerDefinitions"]:
            out |= {s["valueFrom"].rsplit(":", 3)[0] for s in c.get("secrets", [])}
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("secret-migration")
    tree = legacy_tree(tmp_path_factory.mktemp("legacy-release"))
    with running_sandbox(tmp) as sandbox:
        config = write_config(tmp / "mastofargate.toml", create_zone())
        data = legacy_cli(tree, "deploy", "--config", str(config), "--data-only", "--yes")
        assert data.returncode == 0, data.stdout + data.stderr
        push_fake_images(TAG)
        tags = ["--mastodon-tag", TAG, "--streaming-tag", TAG, "--skip-assets"]
        install = legacy_cli(tree, "deploy", "--config", str(config), *tags, "--yes")
        assert install.returncode == 0, install.stdout + install.stderr
        assert names() == sorted(LEGACY.values())  # what the older release made: three secrets
        legacy = {kind: values(name) for kind, name in LEGACY.items()}
        yield World(sandbox, config, legacy, versions())


def deploy(world: World, *extra: str, tag: str = TAG) -> Any:
    images = ["--mastodon-tag", tag, "--streaming-tag", tag, "--skip-assets"]
    return run_cli("deploy", "--config", str(world.config), *images, *extra)


def legacy_arns() -> set[str]:
    return {sm().describe_secret(SecretId=n)["ARN"] for n in LEGACY.values()}


def test_a_failed_migration_leaves_the_server_on_its_three_secrets(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_read = bootstrap.read_secret

    def read(target: Any, name: str) -> dict[str, Any]:
        got = real_read(target, name)
        return {**got, "SECRET_KEY_BASE": "0" * 128} if name == SERVER else got

    data_before, app_before = stack("social-data"), stack("social-app")
    with monkeypatch.context() as patched:
        patched.setattr(bootstrap, "read_secret", read)
        with recording() as calls:
            result = deploy(world, "--yes")
    assert result.exit_code == 1, result.output
    assert "still uses the three legacy secrets, which were not changed" in result.output
    assert "was removed" in result.output and "run 'mastofargate deploy' again" in result.output
    assert not calls.find("CreateChangeSet") and not calls.find("ExecuteChangeSet")
    assert names() == sorted(LEGACY.values())
    assert {kind: values(name) for kind, name in LEGACY.items()} == world.legacy and versions() == world.versions
    assert (stack("social-data"), stack("social-app")) == (data_before, app_before)
    assert running_secret_arns() <= {sm().describe_secret(SecretId=n)["ARN"] for n in LEGACY.values()}


def test_plan_and_dry_run_say_what_the_migration_would_do_and_change_nothing(world: World) -> None:
    with recording() as calls:
        plan = run_cli("plan", "--config", str(world.config), "--mastodon-tag", TAG, "--streaming-tag", TAG)
        dry = deploy(world, "--yes", "--dry-run")
    for result in (plan, dry):
        assert result.exit_code in (0, 1), result.output  # plan exits 1 when there are changes
        assert f"{SERVER}: would be created from mastofargate/social/app" in result.output
        assert "planned once mastofargate/social/server exists" in result.output
    assert not [c for c in calls.calls if c.operation in ("CreateSecret", "PutSecretValue", "ExecuteChangeSet")]
    assert names() == sorted(LEGACY.values()) and versions() == world.versions


def test_a_rollout_failure_after_the_move_leaves_the_app_on_the_legacy_secrets_and_loses_nothing(
    world: World,
) -> None:
    push_fake_images(UNHEALTHY)
    with recording() as calls:
        result = deploy(world, "--yes", tag=UNHEALTHY)
    assert result.exit_code == 1, result.output
    assert "rolled social-app back" in result.output
    # the move itself happened first, verbatim, before any change set could reference the one secret
    assert f"{SERVER}: created from mastofargate/social/app, mastofargate/social/database, " in result.output
    assert "copied verbatim and verified" in result.output
    assert "kept, never deleted by a deploy" in result.output and "prune-legacy" in result.output
    created = [i for i, c in enumerate(calls.calls) if c.operation == "CreateSecret"]
    change_sets = [i for i, c in enumerate(calls.calls) if c.operation == "CreateChangeSet"]
    assert len(created) == 1 and change_sets and created[0] < change_sets[0]
    assert [c.params["Name"] for c in calls.find("CreateSecret")] == [SERVER]
    one = values(SERVER)
    assert {k: v for k, v in one.items() if k in join(world.legacy)} == join(world.legacy)
    # nothing lost: the legacy secrets untouched, the app stack back on them, the old version serving
    assert versions() == world.versions
    assert {kind: values(name) for kind, name in LEGACY.items()} == world.legacy
    app_params, _ = stack("social-app")
    assert boto3.client("cloudformation").describe_stacks(StackName="social-app")["Stacks"][0]["StackStatus"] == (
        "UPDATE_ROLLBACK_COMPLETE"
    )
    assert (
        "SecretArn" not in app_params and {app_params[k] for k in ("AppSecretArn", "RedisSecretArn")} <= legacy_arns()
    )
    assert running_secret_arns() <= legacy_arns()
    images = service_images()
    assert {images[name] for name in ("web", "streaming", "sidekiq")} == {TAG}
    data_params, _ = stack("social-data")  # the data stack went first: same values, from the one secret
    assert data_params["SecretArn"] == sm().describe_secret(SecretId=SERVER)["ARN"]
    target = Target(load_config(world.config))
    assert migrate_secrets.referencing_stacks(target) == ["social-app"]
    refused = run_cli("secrets", "prune-legacy", "--config", str(world.config), "--yes")
    assert refused.exit_code == 2 and "social-app still reference them" in refused.output
    assert not any(sm().describe_secret(SecretId=n).get("DeletedDate") for n in LEGACY.values())


def test_the_next_deploy_switches_every_stack_to_the_one_secret_and_keeps_the_legacy_ones(world: World) -> None:
    before = values(SERVER)
    with recording() as calls:
        result = deploy(world, "--yes")
    assert result.exit_code == 0, result.output
    assert f"{SERVER}: unchanged" in result.output  # made by the failed deploy, checked against the legacy ones
    assert "kept, never deleted by a deploy" in result.output
    assert not calls.find("CreateSecret") and values(SERVER) == before
    assert versions() == world.versions  # the legacy secrets: not one write
    assert {kind: values(name) for kind, name in LEGACY.items()} == world.legacy
    arn = sm().describe_secret(SecretId=SERVER)["ARN"]
    for name in ("social-data", "social-app"):
        params, body = stack(name)
        assert params["SecretArn"] == arn, name
        assert not {"AppSecretArn", "DatabaseSecretArn", "RedisSecretArn"} & set(params), name
        assert not any(f"resolve:secretsmanager:{legacy}:" in body for legacy in LEGACY.values()), name
        assert not any(legacy in str(params) for legacy in LEGACY.values()), name
    assert running_secret_arns() == {arn}
    assert migrate_secrets.referencing_stacks(Target(load_config(world.config))) == []
    images = service_images()
    assert {images[name] for name in ("web", "streaming", "sidekiq")} == {TAG}  # still serving the same release


def test_status_reports_the_legacy_secrets_unused_and_prune_removes_them(world: World) -> None:
    status = run_cli("status", "--config", str(world.config), "--json")
    legacy = json.loads(status.output)["legacy_secrets"]
    assert legacy["in_use"] is False and "prune-legacy" in legacy["note"]
    result = run_cli("secrets", "prune-legacy", "--config", str(world.config), "--yes")
    assert result.exit_code == 0, result.output
    for name in LEGACY.values():
        assert sm().describe_secret(SecretId=name).get("DeletedDate")
    again = deploy(world, "--yes")
    assert again.exit_code == 0, again.output
    assert "No changes" in again.output
    assert json.loads(run_cli("status", "--config", str(world.config), "--json").output)["legacy_secrets"] is None
