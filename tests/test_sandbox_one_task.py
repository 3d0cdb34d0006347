"""The cheapest personal server (`layout = "one-task"`, Postgres and Redis in the task, `edge = "direct"`: Caddy
in the task, no load balancer) deployed on the emulator:
the first install (the data stores alone while migrations run, then the whole task), the OFFLINE warning of
`plan` and `deploy` with the last rollout's duration, and a failed rollout that names the container.

The emulator is the top-level `sandbox` package (moto plus stand-ins, changed where moto differs from AWS:
a task holds one container per definition, see sandbox/moto_fixes.py). One install (module fixture) is
shared by the tests, which run in order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from tests.deploy_sandbox import (
    CliResult,
    Sandbox,
    aws_env,
    create_zone,
    push_fake_images,
    run_cli,
    running_sandbox,
    write_config,
)

pytestmark = pytest.mark.xdist_group("deploy-sandbox-one-task")

TAG_A = "v4.5.4-a1"
TAG_B = "v4.5.4-b2"
UNHEALTHY = "v4.5.4-d4-sandbox-unhealthy"


@dataclass
class World:
    sandbox: Sandbox
    config: Path
    install: CliResult


def deploy(config: Path, tag: str, *extra: str) -> CliResult:
    return run_cli(
        "deploy", "--config", str(config), "--mastodon-tag", tag, "--streaming-tag", tag, "--skip-assets", *extra
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("one-task")
    with running_sandbox(tmp) as sandbox:
        config = write_config(
            tmp / "mastofargate.toml",
            create_zone(),
            deployment={"database": "task", "cache": "task", "layout": "one-task", "edge": "direct"},
        )
        data = run_cli("deploy", "--config", str(config), "--data-only", "--yes")
        assert data.exit_code == 0, data.output
        push_fake_images(TAG_A)
        install = deploy(config, TAG_A, "--yes")
        yield World(sandbox, config, install)


def test_first_install_runs_one_service_whose_task_holds_every_container(world: World) -> None:
    assert world.install.exit_code == 0, world.install.output
    assert "OFFLINE" not in world.install.output  # nothing was online to take offline
    with aws_env(world.sandbox.url):
        ecs = boto3.client("ecs")
        names = [a.rsplit("/", 1)[-1] for a in ecs.list_services(cluster="social")["serviceArns"]]
        assert names == ["server"]
        (svc,) = ecs.describe_services(cluster="social", services=["server"])["services"]
        assert (svc["desiredCount"], svc["runningCount"]) == (1, 1)
        td = ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])["taskDefinition"]
        assert td["family"] == "social-server"  # switched on: the whole task, not the data stores alone
        containers = {c["name"]: c for c in td["containerDefinitions"]}
        assert set(containers) == {"web", "streaming", "sidekiq", "postgres", "redis", "queue-metrics", "caddy"}
        assert not boto3.client("elbv2").describe_load_balancers()["LoadBalancers"]  # the direct edge: no ALB
        assert containers["sidekiq"]["restartPolicy"]["enabled"] is True
        assert {d["containerName"] for d in containers["web"]["dependsOn"]} == {"postgres", "redis"}
        # the data stores ran alone while db:prepare ran (the migrations need them)
        families = {
            ecs.describe_task_definition(taskDefinition=d["taskDefinition"])["taskDefinition"]["family"]
            for d in svc["deployments"]
        }
        assert families == {"social-server"}
        data_only = ecs.describe_task_definition(taskDefinition="social-server-data")["taskDefinition"]
        assert {c["name"] for c in data_only["containerDefinitions"]} == {"postgres", "redis"}


def test_status_shows_the_one_service_and_its_containers(world: World) -> None:
    with aws_env(world.sandbox.url):
        result = run_cli("status", "--config", str(world.config), "--json")
        data = json.loads(result.output)
        (row,) = data["services"]
        assert row["name"] == "server" and (row["desired"], row["running"]) == (1, 1)
        assert row["containers"] == ["web", "streaming", "sidekiq", "postgres", "redis"]
        assert data["mastodon_version"]
        # The emulator counts a service's tasks but starts none (no task, no network interface to read), so the
        # direct edge's check finds nothing to point DNS at: the one problem, and it names the one service. The
        # check itself runs against moto's ECS/EC2/Route 53 in tests/test_direct_edge.py.
        assert data["problems"] == ["edge: no running task in service server; DNS left as it is"], result.output
        assert result.exit_code == 1
        plain = run_cli("status", "--config", str(world.config))
        assert "service server: desired=1 running=1" in plain.output
        assert "containers=web,streaming,sidekiq,postgres,redis" in plain.output


def test_plan_says_the_rollout_takes_the_server_offline_and_how_long_the_last_took(world: World) -> None:
    with aws_env(world.sandbox.url):
        push_fake_images(TAG_B)
        history = boto3.client("ssm").get_parameter(Name="/mastofargate/social/deploy-history")["Parameter"]
        last = float(json.loads(history["Value"])[0]["seconds"])
        plan = run_cli("plan", "--config", str(world.config), "--mastodon-tag", TAG_B, "--streaming-tag", TAG_B)
        assert plan.exit_code in (0, 1), plan.output
        minutes, seconds = divmod(round(last), 60)
        took = f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
        assert f"This rollout takes the server OFFLINE for a few minutes (the last rollout took {took})" in (
            plan.output
        ), plan.output
        assert "server runs as one task" in plan.output
        # no change, no warning
        same = run_cli("plan", "--config", str(world.config), "--mastodon-tag", TAG_A, "--streaming-tag", TAG_A)
        assert "OFFLINE" not in same.output, same.output


def test_an_upgrade_warns_before_it_asks_and_records_its_duration(world: World) -> None:
    with aws_env(world.sandbox.url):
        result = deploy(world.config, TAG_B, "--yes")
        assert result.exit_code == 0, result.output
        out = result.output
        assert "OFFLINE" in out and out.index("OFFLINE") < out.index("Deployed social.example.org")
        history = boto3.client("ssm").get_parameter(Name="/mastofargate/social/deploy-history")["Parameter"]
        newest = json.loads(history["Value"])[0]
        assert newest["mastodon"] == TAG_B and float(newest["seconds"]) > 0


def test_a_failed_rollout_names_the_container_that_stopped_the_task(world: World) -> None:
    with aws_env(world.sandbox.url):
        push_fake_images(UNHEALTHY)
        result = deploy(world.config, UNHEALTHY, "--yes")
        out = result.output
        assert result.exit_code == 1, out
        assert "The rollout of server failed and CloudFormation rolled social-app back" in out
        # the task had six containers: the one that stopped it is named, with its exit code
        assert re.search(r"Essential container in task exited \(container web: [^)]*\), exit code 1", out), out
        assert "mastofargate logs web" in out  # the container's own log group, not the service's
        ecs = boto3.client("ecs")
        (svc,) = ecs.describe_services(cluster="social", services=["server"])["services"]
        primary = next(d for d in svc["deployments"] if d["status"] == "PRIMARY")
        td = ecs.describe_task_definition(taskDefinition=primary["taskDefinition"])["taskDefinition"]
        assert td["containerDefinitions"][0]["image"].endswith(":" + TAG_B)  # the old version serves again
