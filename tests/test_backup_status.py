"""What `status` makes of the backups: the newest one, overdue or not, and the last drill.

The AWS reads (restore points, the DrillSucceeded metric) are replaced by fixed answers here, because the
point of these tests is the judgement on ages that AWS cannot be made to have (a data stack created days
ago, a backup 3 days old); the reads themselves run against the emulator in test_backup_verbs_*.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mastofargate.config import Config
from mastofargate.deploy import backups, upkeep
from mastofargate.deploy.backups import RestorePoint
from mastofargate.deploy.upkeep import StackFacts
from mastofargate.target import Target

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def facts(age: timedelta) -> StackFacts:
    return StackFacts("social-data", "UPDATE_COMPLETE", True, {}, NOW - age)


def judge(
    monkeypatch: pytest.MonkeyPatch,
    config: Config,
    points: list[RestorePoint],
    drill: dict[str, Any] | None,
    stack_age: timedelta,
) -> tuple[dict[str, Any], list[str]]:
    monkeypatch.setattr(backups, "restore_points", lambda target, manifests=0, aws_backup=True: points)
    monkeypatch.setattr(upkeep, "last_drill", lambda target, since, now: drill)
    return upkeep.backup_status(Target(config), facts(stack_age), NOW)


def dump(age: timedelta, status: str = "available") -> RestorePoint:
    return RestorePoint(time=NOW - age, kind="dump", id=f"s3://b/dumps/{age}.dump", status=status)


PASSED = {"time": "2026-11-20T03:00:00+00:00", "succeeded": True}


def test_a_fresh_backup_and_a_passed_drill_are_no_problem(
    monkeypatch: pytest.MonkeyPatch, config_factory: Callable[..., Config]
) -> None:
    info, problems = judge(monkeypatch, config_factory(), [dump(timedelta(hours=5))], PASSED, timedelta(days=90))
    assert problems == []
    assert info["newest"]["kind"] == "dump" and info["newest"]["age_seconds"] == 5 * 3600
    assert info["overdue"] is False and info["last_drill"] == PASSED


def test_a_backup_older_than_two_days_is_overdue(
    monkeypatch: pytest.MonkeyPatch, config_factory: Callable[..., Config]
) -> None:
    points = [dump(timedelta(days=3)), dump(timedelta(hours=1), status="incomplete (no manifest)")]
    info, problems = judge(monkeypatch, config_factory(), points, PASSED, timedelta(days=90))
    assert info["overdue"] is True
    assert len(problems) == 1 and "no backup newer than 2 days (the newest is 3d0h old)" in problems[0]


def test_a_new_server_without_backups_yet_is_not_flagged(
    monkeypatch: pytest.MonkeyPatch, config_factory: Callable[..., Config]
) -> None:
    info, problems = judge(monkeypatch, config_factory(), [], None, timedelta(hours=20))
    assert problems == [] and info["newest"] is None


def test_no_backup_at_all_on_an_old_server_is_a_problem(
    monkeypatch: pytest.MonkeyPatch, config_factory: Callable[..., Config]
) -> None:
    _, problems = judge(monkeypatch, config_factory(), [], PASSED, timedelta(days=10))
    assert any("there is none" in p for p in problems)


def test_a_failed_drill_and_a_missing_drill_are_problems(
    monkeypatch: pytest.MonkeyPatch, config_factory: Callable[..., Config]
) -> None:
    failed = {"time": "2026-11-01T04:00:00+00:00", "succeeded": False}
    _, problems = judge(monkeypatch, config_factory(), [dump(timedelta(hours=2))], failed, timedelta(days=90))
    assert problems == [
        "the last restore drill FAILED (2026-11-01T04:00:00+00:00): run 'mastofargate backup verify' and see "
        "'mastofargate logs backup'"
    ]
    _, problems = judge(monkeypatch, config_factory(), [dump(timedelta(hours=2))], None, timedelta(days=60))
    assert problems == ["no restore drill in the last 38 days: run 'mastofargate backup verify'"]
    _, problems = judge(monkeypatch, config_factory(), [dump(timedelta(hours=2))], None, timedelta(days=20))
    assert problems == []  # a server younger than a month has had no monthly drill yet
