"""`layout = "one-task"` and packed tasks (issue 12 items 2-3, 6): config validation, the sizing groups, and
the generated task definitions and services (container dependencies, limits, restart policy, stop order,
the singleton rule, target groups of a task serving two ports, loopback hosts, security groups).

Pure: configs in, templates out (cfn-lint and checkov over these shapes run in tests/test_lint.py, the
all-shapes invariants in tests/test_templates.py).
"""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from mastofargate.config import parse_config
from mastofargate.errors import UsageError
from mastofargate.sizing import FARGATE_SIZES, ONE_TASK, PROFILES
from mastofargate.stack import build
from mastofargate.stack.services import PACKED_APP_STOP_SECONDS, PACKED_DATA_STOP_SECONDS, SPOT_WARNING_SECONDS
from tests.conftest import config_dict, make_config

APP = ("web", "streaming", "sidekiq")


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(UsageError) as e:
        parse_config(data)
    return e.value.what


@cache
def app(database: str = "task", cache_: str = "task", spot: bool = True, profile: str = "personal") -> dict[str, Any]:
    layout = "one-task" if profile == "personal" else "split"
    cfg = make_config(profile=profile, database=database, cache=cache_, spot=spot, layout=layout)
    return build(cfg)["app"].to_dict()["Resources"]


def _containers(resources: dict[str, Any], title: str) -> dict[str, dict[str, Any]]:
    return {c["Name"]: c for c in resources[title]["Properties"]["ContainerDefinitions"]}


# --- config -------------------------------------------------------------------------------------------


def test_one_task_groups_every_process_and_data_store_into_one_service() -> None:
    cfg = make_config(layout="one-task", database="task", cache="task")
    (task,) = cfg.tasks
    assert task.name == ONE_TASK and task.packed and task.singleton
    assert task.roles == ("web", "streaming", "sidekiq", "postgres", "redis")
    assert (task.desired, task.min, task.max) == (1, 1, 1)
    assert (task.minimum_healthy_percent, task.maximum_percent) == (0, 100)
    # with RDS and ElastiCache only Mastodon's processes remain; the size is the profile's all the same
    (lean,) = make_config(layout="one-task").tasks
    assert lean.roles == APP and (lean.cpu, lean.memory) == (task.cpu, task.memory)


def test_personal_one_task_is_half_a_vcpu_and_3_gib_and_its_containers_fit() -> None:
    (packing,) = PROFILES["personal"].packings["one-task"]
    assert (packing.cpu, packing.memory) == (512, 3072)
    assert packing.memory in FARGATE_SIZES[packing.cpu] and packing.memory not in FARGATE_SIZES[256]
    limits = sum(limit for limit, _ in packing.limits.values())
    assert limits <= packing.memory - 256  # room left for the direct edge's Caddy
    for role, (limit, reservation) in packing.limits.items():
        assert 0 < reservation <= limit, role
    # Postgres is shrunk first: the smallest budget of the Mastodon-side processes' neighbours
    assert packing.limits["postgres"][0] < packing.limits["web"][0]


def test_connection_budget_counts_a_singleton_task_once() -> None:
    from mastofargate.sizing import connection_budget

    cfg = make_config(layout="one-task", database="task", cache="task")
    budget = connection_budget(cfg.tasks, cfg.job)
    # one task, never two at once (0 %/100 %): each pool counted once; split doubles web for its rollout
    assert budget["web"] == 5 and budget["streaming"] == 3 and budget["sidekiq"] == 5
    split = connection_budget(make_config(database="task").tasks, cfg.job)
    assert split["web"] == 10
    assert sum(budget.values()) <= cfg.max_connections


@pytest.mark.parametrize(
    ("deployment", "extra", "needles"),
    [
        (
            {"profile": "community", "layout": "one-task"},
            {},
            ["deployment.layout: 'one-task' is not offered by profile 'community'", "profile = 'personal'"],
        ),
        (
            {"layout": "one-task"},
            {
                "sidekiq": [
                    {"name": "sidekiq", "queues": ["default", "push", "ingress", "mailers", "pull", "scheduler"]}
                ]
            },
            ["sidekiq: a split of Sidekiq (sidekiq)", "allowed: no [[sidekiq]] tables with layout 'one-task'"],
        ),
        (
            {"layout": "one-task"},
            {"services": {"web": {"cpu": 1024, "memory": 4096}}},
            ["services.web.cpu: web is a container of the task 'server'", "allowed: services.server.cpu"],
        ),
        (
            {"layout": "one-task"},
            {"services": {"web": {"max": 3}}},
            ["services.web.max: web is a container of the task 'server'"],
        ),
        (
            {"layout": "one-task"},
            {"services": {"server": {"max": 2}}},
            ["services.server: max 2; allowed: 1, because this task must never run twice (it runs the scheduler"],
        ),
        (
            {"layout": "one-task"},
            {"services": {"server": {"web_concurrency": 2}}},
            ["services.server.web_concurrency: 'server' is a task of several containers", "allowed: cpu, memory"],
        ),
        (
            {"layout": "one-task", "database": "task", "cache": "task"},
            {"services": {"server": {"cpu": 512, "memory": 2048}}},
            ["services.server: the containers' hard limits add up to 2816 MiB", "but the task has 2048 MiB"],
        ),
        (
            {"layout": "one-task"},
            {"services": {"server": {"cpu": 512, "memory": 9216}}},
            ["services.server: memory 9216 MiB is not allowed with cpu 512"],
        ),
        (
            {"layout": "one task"},
            {},
            ["deployment.layout", "'one task'"],
        ),
    ],
)
def test_bad_one_task_settings_name_the_field_and_what_is_allowed(
    deployment: dict[str, Any], extra: dict[str, Any], needles: list[str]
) -> None:
    data = config_dict(**deployment) | extra
    message = _error(data)
    for needle in needles:
        assert needle in message, message


def test_the_one_task_size_and_container_limits_can_be_overridden() -> None:
    data = config_dict(layout="one-task", database="task", cache="task")
    data["services"] = {"server": {"cpu": 1024, "memory": 4096}, "postgres": {"container_memory": 1024}}
    cfg = parse_config(data)
    (task,) = cfg.tasks
    assert (task.cpu, task.memory) == (1024, 4096)
    pg = task.member("postgres")
    assert pg is not None and pg.container_memory == 1024 and (pg.cpu, pg.memory) == (1024, 4096)


def test_community_front_task_counts_are_set_on_the_task() -> None:
    data = config_dict(profile="community")
    data["services"] = {"front": {"max": 4}}
    front = parse_config(data).task_of("streaming")
    assert front is not None and front.name == "front" and front.max == 4
    data["services"] = {"streaming": {"max": 2}}
    assert "services.streaming.max: streaming is a container of the task 'front'" in _error(data)


BASE = ("--hosted-zone-id", "Z0123456789EXAMPLE", "--yes")


def test_init_writes_the_layout_and_refuses_it_where_the_profile_has_none(tmp_path: Path) -> None:
    def init(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mastofargate", "init", "--domain", "social.example.org", *BASE, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )

    ok = init("--layout", "one-task", "--database", "task", "--cache", "task")
    assert ok.returncode == 0, ok.stderr
    text = (tmp_path / "mastofargate.toml").read_text()
    assert 'layout = "one-task"' in text and "offline for a few minutes" in text
    from mastofargate.config import load_config

    assert load_config(tmp_path / "mastofargate.toml").one_task
    bad = init("--profile", "community", "--layout", "one-task", "--force", "--config", "other.toml")
    assert bad.returncode == 2
    assert "deployment.layout: 'one-task' is not offered by profile 'community'" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "other.toml").exists()


# --- the task definition ------------------------------------------------------------------------------


@pytest.mark.parametrize(("database", "cache_"), [("task", "task"), ("rds", "task"), ("rds", "elasticache")])
def test_one_task_definition_holds_every_container_with_limits_that_fit(database: str, cache_: str) -> None:
    res = app(database, cache_)
    td = res["ServerTaskDefinition"]["Properties"]
    containers = _containers(res, "ServerTaskDefinition")
    stores = {"postgres": database == "task", "redis": cache_ == "task"}
    assert set(containers) == {*APP, "queue-metrics", *(r for r, on in stores.items() if on)}
    assert (td["Cpu"], td["Memory"]) == ("512", "3072")
    assert td["ContainerDefinitions"][0]["Name"] == "web"  # the image `status`/rollback read is Mastodon's
    assert sum(c.get("Memory", 0) for c in containers.values()) <= int(td["Memory"])
    assert sum(c["MemoryReservation"] for c in containers.values()) <= int(td["Memory"])
    (packing,) = PROFILES["personal"].packings["one-task"]
    for name, c in containers.items():
        if name in packing.limits:
            assert (c["Memory"], c["MemoryReservation"]) == packing.limits[name], name
    # no other Mastodon service exists: ONE task
    services = [r for r in res.values() if r["Type"] == "AWS::ECS::Service"]
    assert [s["Properties"]["ServiceName"] for s in services] == [ONE_TASK]


def test_data_stores_start_healthy_first_and_stop_last_within_the_spot_warning() -> None:
    containers = _containers(app(), "ServerTaskDefinition")
    for name in APP:
        c = containers[name]
        assert c["DependsOn"] == [
            {"ContainerName": "postgres", "Condition": "HEALTHY"},
            {"ContainerName": "redis", "Condition": "HEALTHY"},
        ], name
        assert c["StopTimeout"] == PACKED_APP_STOP_SECONDS
    assert containers["queue-metrics"]["DependsOn"] == [{"ContainerName": "redis", "Condition": "HEALTHY"}]
    assert containers["web"]["HealthCheck"]["StartPeriod"] == 180  # Puma shares half a vCPU with Sidekiq's boot
    # Postgres may wait for the EFS lock of a task that died (150 s) before it answers its health check
    assert containers["postgres"]["HealthCheck"]["StartPeriod"] >= 150
    for name in ("postgres", "redis"):
        c = containers[name]
        assert "DependsOn" not in c and "HealthCheck" in c and c["Essential"] is True
        assert c["StopTimeout"] == PACKED_DATA_STOP_SECONDS
    # ECS stops dependents first: the whole chain fits the 2-minute Spot warning and Fargate's 120 s cap
    assert PACKED_APP_STOP_SECONDS + PACKED_DATA_STOP_SECONDS <= SPOT_WARNING_SECONDS
    assert all(c.get("StopTimeout", 30) <= 120 for c in containers.values())
    # Postgres' own fast -> immediate shutdown switch happens before ECS would SIGKILL it
    env = {e["Name"]: e["Value"] for e in containers["postgres"]["Environment"]}
    assert int(env["POSTGRES_STOP_WAIT"]) < PACKED_DATA_STOP_SECONDS
    assert env["POSTGRES_MEMORY_MB"] == str(containers["postgres"]["Memory"])


def test_mastodon_containers_restart_in_place_and_the_data_stores_do_not() -> None:
    containers = _containers(app(), "ServerTaskDefinition")
    for name in APP:
        policy = containers[name]["RestartPolicy"]
        assert policy["Enabled"] is True and 60 <= policy["RestartAttemptPeriod"] <= 1800, name
    for name in ("postgres", "redis", "queue-metrics"):
        assert "RestartPolicy" not in containers[name], name


def test_the_one_task_is_a_singleton_on_spot_with_its_efs_volumes_and_dns_name() -> None:
    res = app()
    props = res["ServerService"]["Properties"]
    assert props["DeploymentConfiguration"]["MinimumHealthyPercent"] == 0
    assert props["DeploymentConfiguration"]["MaximumPercent"] == 100
    assert props["DesiredCount"] == 1 and "ServerScalableTarget" not in res
    assert [s["CapacityProvider"] for s in props["CapacityProviderStrategy"]] == ["FARGATE_SPOT"]
    on_demand = app(spot=False)["ServerService"]["Properties"]
    assert [s["CapacityProvider"] for s in on_demand["CapacityProviderStrategy"]] == ["FARGATE"]
    volumes = {v["Name"]: v for v in res["ServerTaskDefinition"]["Properties"]["Volumes"]}
    assert set(volumes) == {"postgres-data", "redis-data"}
    for role, v in (("postgres", volumes["postgres-data"]), ("redis", volumes["redis-data"])):
        auth = v["EFSVolumeConfiguration"]["AuthorizationConfig"]
        assert auth == {
            "AccessPointId": {"Fn::ImportValue": f"social-data:{role.capitalize()}AccessPointId"},
            "IAM": "ENABLED",
        }
    containers = _containers(res, "ServerTaskDefinition")
    assert containers["postgres"]["MountPoints"][0]["SourceVolume"] == "postgres-data"
    assert containers["redis"]["MountPoints"][0]["SourceVolume"] == "redis-data"
    assert res["ServerDiscovery"]["Properties"]["Name"] == ONE_TASK
    groups = props["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    assert groups == [
        {"Fn::ImportValue": f"social-data:{k}"}
        for k in ("TaskSecurityGroupId", "DatabaseSecurityGroupId", "CacheSecurityGroupId")
    ]
    assert res["ServerTaskDefinition"]["Properties"]["TaskRoleArn"] == {"Fn::GetAtt": ["ServerTaskRole", "Arn"]}


def test_a_first_install_runs_the_data_stores_alone_until_the_services_are_switched_on() -> None:
    res = app()
    props = res["ServerService"]["Properties"]
    assert props["TaskDefinition"] == {
        "Fn::If": ["ServicesOn", {"Ref": "ServerTaskDefinition"}, {"Ref": "ServerDataOnlyTaskDefinition"}]
    }
    data_only = _containers(res, "ServerDataOnlyTaskDefinition")
    assert set(data_only) == {"postgres", "redis"}
    td = res["ServerDataOnlyTaskDefinition"]["Properties"]
    assert td["Family"] == "social-server-data" and {v["Name"] for v in td["Volumes"]} == {
        "postgres-data",
        "redis-data",
    }
    # without a data store in the task it simply waits at zero, like split services
    lean = app("rds", "elasticache")["ServerService"]["Properties"]
    assert lean["TaskDefinition"] == {"Ref": "ServerTaskDefinition"}
    assert lean["DesiredCount"] == {"Fn::If": ["ServicesOn", 1, 0]}


def _redis_url_key(container: dict[str, Any]) -> str:
    (value_from,) = [s["ValueFrom"] for s in container["Secrets"] if s["Name"] == "REDIS_URL"]
    return str(value_from["Fn::Join"][1][-1]).strip(":")


def test_processes_in_the_task_use_loopback_and_one_off_tasks_the_tasks_dns_name() -> None:
    """Postgres by host; Redis by its rediss:// URL (a secret): the one secret's `redis_loopback_url`
    (127.0.0.1) inside the task, its `redis_url` (the task's Cloud Map name) in one-off tasks, both over TLS
    (tests/test_redis_tls.py has the whole wiring)."""
    res = app()
    for name in APP:
        container = _containers(res, "ServerTaskDefinition")[name]
        env = {e["Name"]: e["Value"] for e in container["Environment"]}
        assert env["DB_HOST"] == "127.0.0.1" and "REDIS_HOST" not in env, name
        assert _redis_url_key(container) == "redis_loopback_url", name
    assert _redis_url_key(_containers(res, "ServerTaskDefinition")["queue-metrics"]) == "redis_loopback_url"
    jobs = [t for t, r in res.items() if r["Type"] == "AWS::ECS::TaskDefinition" and "Server" not in t]
    assert jobs
    for title in jobs:
        for c in res[title]["Properties"]["ContainerDefinitions"]:
            env = {e["Name"]: e["Value"] for e in c.get("Environment", [])}
            if "DB_HOST" in env:
                assert env["DB_HOST"] == "server.social.internal", title
                assert _redis_url_key(c) == "redis_url" and "REDIS_HOST" not in env, title


def test_the_alb_reaches_web_and_streaming_in_one_task() -> None:
    for res, service in ((app(), "ServerService"), (app("rds", "elasticache", profile="community"), "FrontService")):
        props = res[service]["Properties"]
        assert props["LoadBalancers"] == [
            {"ContainerName": "web", "ContainerPort": 3000, "TargetGroupArn": {"Ref": "WebTargetGroup"}},
            {"ContainerName": "streaming", "ContainerPort": 4000, "TargetGroupArn": {"Ref": "StreamingTargetGroup"}},
        ]
        assert props["HealthCheckGracePeriodSeconds"] >= 120  # Puma's boot, the slower of the two
        assert "StreamingService" not in res and "WebService" not in res


def test_community_front_task_scales_and_keeps_sidekiq_apart() -> None:
    res = app("rds", "elasticache", profile="community")
    front = _containers(res, "FrontTaskDefinition")
    assert set(front) == {"web", "streaming"}
    # no data store to wait for; a crashed Puma restarts in place instead of taking streaming down with it
    assert all("DependsOn" not in c and c["RestartPolicy"]["Enabled"] for c in front.values())
    td = res["FrontTaskDefinition"]["Properties"]
    assert sum(c["Memory"] for c in front.values()) <= int(td["Memory"])
    deploy = res["FrontService"]["Properties"]["DeploymentConfiguration"]
    assert (deploy["MinimumHealthyPercent"], deploy["MaximumPercent"]) == (100, 200)
    assert res["FrontScalableTarget"]["Properties"]["MaxCapacity"] == {"Fn::If": ["ServicesOn", 3, 0]}
    assert "SidekiqService" in res
    assert res["FrontTaskDefinition"]["Properties"]["TaskRoleArn"] == {"Fn::GetAtt": ["MastodonTaskRole", "Arn"]}


# --- failures in a task of several containers ---------------------------------------------------------


def test_the_container_that_stopped_a_task_of_several_is_named() -> None:
    """ECS stops the other containers after an essential one exits (143/137, no reason): they are not the
    cause. A reason (OutOfMemoryError) or an unhealthy mark wins over an exit code; one container: no name."""
    from mastofargate.deploy.ecs import stopped_task

    def task(*containers: dict[str, Any]) -> Any:
        return {
            "taskArn": "arn:aws:ecs:us-east-1:1:task/c/abc",
            "stoppedReason": "Essential container in task exited",
            "containers": list(containers),
        }

    sigterm = {"name": "web", "exitCode": 143}
    crashed = {"name": "sidekiq", "exitCode": 1}
    oom = {"name": "postgres", "exitCode": 137, "reason": "OutOfMemoryError: Container killed due to memory usage"}
    unhealthy = {"name": "streaming", "exitCode": 143, "healthStatus": "UNHEALTHY"}
    assert stopped_task(task(sigterm, crashed)).container == "sidekiq"
    assert stopped_task(task(sigterm, crashed, oom)).container == "postgres"
    assert stopped_task(task(crashed, unhealthy)).container == "streaming"
    one = stopped_task(task(sigterm, crashed, oom))
    assert (
        one.summary
        == (
            "Essential container in task exited (container postgres: OutOfMemoryError: Container killed due to memory "
            "usage)"
        )
        and one.exit_code == 137
    )
    alone = stopped_task(task({"name": "web", "exitCode": 1}))
    assert alone.summary == "Essential container in task exited" and alone.exit_code == 1


def test_a_failed_rollout_points_at_the_log_group_of_the_container() -> None:
    from mastofargate.deploy.rollout import log_name
    from tests.conftest import plain_run

    run = plain_run(make_config(layout="one-task", database="task", cache="task"))
    assert log_name(run, "server", "sidekiq") == "sidekiq" and log_name(run, "server", "postgres") == "postgres"
    split = plain_run(make_config(profile="large"))
    assert log_name(split, "sidekiq-default", "sidekiq") == "sidekiq-default"  # a task of one: the service's
