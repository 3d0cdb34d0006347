"""The documented sizing table: valid Fargate sizes, sourced numbers, derived values, connection budgets."""

from __future__ import annotations

import ast
import inspect

import pytest

import mastofargate.sizing as sizing
from mastofargate.sizing import FARGATE_SIZES, PROFILES, connection_budget, fargate_size_error, rds_max_connections
from tests.conftest import make_config

ROWS = [(p.name, s) for p in PROFILES.values() for s in (*p.services, p.postgres_task, p.redis_task, p.job)]


@pytest.mark.parametrize(("profile", "row"), ROWS, ids=[f"{p}-{s.name}" for p, s in ROWS])
def test_every_row_is_a_fargate_size_whose_container_fits(profile: str, row: sizing.ServiceSize) -> None:
    assert fargate_size_error(row.cpu, row.memory) is None
    assert row.container_reservation <= row.container_memory <= row.memory
    assert row.min <= row.desired <= row.max or row.name == "job"
    if row.singleton:
        assert row.max == 1


def test_fargate_table_matches_the_documented_steps() -> None:
    assert FARGATE_SIZES[256] == (512, 1024, 2048)
    assert FARGATE_SIZES[1024][0] == 2048 and FARGATE_SIZES[1024][-1] == 8192
    assert FARGATE_SIZES[8192][1] - FARGATE_SIZES[8192][0] == 4096
    assert "not a Fargate CPU size" in (fargate_size_error(384, 1024) or "")


def test_every_number_in_the_profiles_carries_a_source_comment() -> None:
    """Each ServiceSize/_sidekiq row and profile constant is preceded (or followed on its line) by a
    comment citing a source tag such as [FN], [OCH], [DOC], [FR], [W] or [RDS]."""
    source = inspect.getsource(sizing)
    lines = source.splitlines()
    tree = ast.parse(source)
    tags = ("[FN]", "[OCH]", "[DOC]", "[FR]", "[W]", "[RDS]", "[FG]")
    table_starts = next(i for i, line in enumerate(lines, 1) if line.startswith("_JOB"))
    checked = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("ServiceSize", "_sidekiq"):
            if node.lineno < table_starts:
                continue
            window = "\n".join(lines[max(0, node.lineno - 4) : node.end_lineno])
            assert any(t in window for t in tags), f"sizing.py:{node.lineno} has no source comment"
            checked += 1
    assert checked >= 15


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("database", ["rds", "task"])
def test_connection_budget_fits_max_connections(profile: str, database: str) -> None:
    cfg = make_config(profile=profile, database=database)
    total = sum(connection_budget(cfg.tasks, cfg.job).values())
    assert total <= cfg.max_connections


def test_derived_environment_comes_from_the_row() -> None:
    web = PROFILES["personal"].service("web")
    assert web.web_concurrency == 0  # [FN] single mode for personal servers
    assert web.env() == {"WEB_CONCURRENCY": "0", "MAX_THREADS": "5", "DB_POOL": "5"}
    sidekiq = PROFILES["personal"].service("sidekiq")
    assert 5 <= sidekiq.sidekiq_concurrency <= 10 and sidekiq.db_pool == sidekiq.sidekiq_concurrency
    assert sidekiq.sidekiq_command()[:5] == ["bundle", "exec", "sidekiq", "-c", "5"]
    front = make_config(profile="community").task_of("web")
    assert front is not None and front.name == "front" and front.roles == ("web", "streaming")
    web = front.member("web")
    assert (
        web is not None and front.peak_db_connections(web) == front.max * 2 * 2 * 5
    )  # tasks x deploy x workers x pool


def test_rds_max_connections_follows_the_formula() -> None:
    assert rds_max_connections("db.t4g.micro") == int(1024**3 * 0.8 // 9531392)
    assert rds_max_connections("db.t4g.large") > rds_max_connections("db.t4g.small")


def test_large_profile_splits_sidekiq_with_one_scheduler() -> None:
    rows = [s for s in PROFILES["large"].services if s.role == "sidekiq"]
    assert len(rows) == 3
    assert [s.name for s in rows if "scheduler" in s.queue_names] == ["sidekiq-scheduler"]
    queues = {q for s in rows for q in s.queue_names}
    assert queues == {q.split(",")[0] for q in sizing.ALL_QUEUES}


def test_readme_profile_table_is_generated_from_the_sizing_table() -> None:
    """The README restates no number by hand: its table is `mastofargate sizing --markdown`."""
    from pathlib import Path

    from mastofargate.commands.sizing import profiles_markdown

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert profiles_markdown() in readme
