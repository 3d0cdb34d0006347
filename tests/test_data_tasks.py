"""The Postgres and Redis tasks (`database = "task"`, `cache = "task"`) as generated: they run the shipped
entrypoints (tested against real servers in test_postgres_entrypoint.py / test_redis_entrypoint.py), with
settings taken from the sizing table, and no password on any command line or in plain environment.
"""

from __future__ import annotations

from typing import Any

import pytest

from mastofargate.stack import entrypoints, pgbackrest
from tests.conftest import make_config
from tests.test_templates import containers

SHAPES = [(p, "task", "task", "arm64", True, "alb", "split") for p in ("personal", "community", "large")]


def _by_name(combo: tuple, name: str) -> dict[str, Any]:
    (found,) = [c for _, _, c in containers(combo) if c["Name"] == name]
    return found


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container.get("Environment", [])}


@pytest.mark.parametrize("combo", SHAPES, ids=[c[0] for c in SHAPES])
def test_postgres_runs_the_locking_entrypoint_with_tls_and_its_memory_budget(combo: tuple) -> None:
    pg = _by_name(combo, "postgres")
    assert pg["EntryPoint"] == ["bash", "-c", entrypoints.script(entrypoints.POSTGRES), "mastofargate-postgres"]
    # the entrypoint's arguments are extra `postgres -c` settings: continuous WAL archiving (stack/pgbackrest.py)
    command = pg["Command"]
    assert command[::2] == ["-c"] * (len(command) // 2)
    assert dict(arg.split("=", 1) for arg in command[1::2]) == pgbackrest.postgres_settings()
    env = _env(pg)
    assert env["POSTGRES_TLS"] == "on"
    assert int(env["POSTGRES_MEMORY_MB"]) == pg["Memory"], "the budget is the container's hard limit"
    assert env["PGDATA"].startswith(pg["MountPoints"][0]["ContainerPath"] + "/"), "lock file and data on EFS"
    assert pg["StopTimeout"] > 90, "the entrypoint's fast shutdown (90 s) fits inside the stop timeout"
    assert [s["Name"] for s in pg["Secrets"]] == ["POSTGRES_PASSWORD"]


@pytest.mark.parametrize("combo", SHAPES, ids=[c[0] for c in SHAPES])
def test_redis_runs_the_aof_entrypoint_and_no_password_is_in_argv(combo: tuple) -> None:
    redis = _by_name(combo, "redis")
    assert redis["EntryPoint"] == ["bash", "-c", entrypoints.script(entrypoints.REDIS), "mastofargate-redis"]
    assert "appendfsync everysec" in redis["EntryPoint"][2]
    env = _env(redis)
    assert env["REDIS_DIR"] == redis["MountPoints"][0]["ContainerPath"]
    assert int(env["REDIS_MAXMEMORY_MB"]) < redis["Memory"]
    for _, _, c in containers(combo):
        args = [*c.get("EntryPoint", []), *c.get("Command", []), *c.get("HealthCheck", {}).get("Command", [])]
        for arg in args:
            assert " -a " not in arg and "--requirepass" not in arg, (c["Name"], "password on a command line")


def test_mastodon_reaches_the_postgres_task_over_tls() -> None:
    from mastofargate.stack import build

    app = build(make_config(database="task", cache="task"))["app"].to_dict()
    for res in app["Resources"].values():
        if res["Type"] != "AWS::ECS::TaskDefinition":
            continue
        for c in res["Properties"]["ContainerDefinitions"]:
            env = _env(c)
            if "DB_SSLMODE" in env:
                assert env["DB_SSLMODE"] == ("no-verify" if c["Name"] == "streaming" else "require"), c["Name"]
