"""The commands the backup verbs give their one-off tasks, and how their answers are read (pure).

The commands are run for real by tests/test_backup_tasks.py; here: that the verbs build them right, that a
task's result line is found in its log, and that a failed or silent task raises.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from mastofargate.deploy import backup_jobs
from mastofargate.deploy.backups import RestorePoint
from mastofargate.errors import MastofargateError
from tests.pg_support import PGTASK

NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def test_the_commands_name_the_script_and_its_options_exist() -> None:
    dump = backup_jobs.dump_command("bkt", "pre-v4.5.4-to-v4.5.5")
    assert dump[1] == "/usr/local/bin/pgtask.py" and dump[2:] == [
        "dump",
        "--to",
        "s3://bkt/dumps/",
        "--label",
        "pre-v4.5.4-to-v4.5.5",
    ]
    drill = backup_jobs.verify_command("s3://bkt/dumps/x.dump", expect_schema="20251117000000")
    assert drill[2:] == ["verify", "--from", "s3://bkt/dumps/x.dump", "--expect-schema", "20251117000000", "--scratch"]
    nightly = backup_jobs.dump_command("bkt", "nightly", server="social")
    assert nightly[-4:] == ["--publish", "Mastofargate/Backups", "--server", "social"]
    monthly = backup_jobs.drill_command("bkt", "social")
    assert monthly[2:6] == ["verify", "--from", "s3://bkt/dumps/", "--scratch"] and "--publish" in monthly
    restore = backup_jobs.verify_command("s3://bkt/dumps/x.dump", scratch=False, into="restored_1")
    assert restore[-2:] == ["--into", "restored_1"] and "--scratch" not in restore
    with pytest.raises(ValueError):
        backup_jobs.verify_command("s3://b/k", into="x")
    # the options the verbs pass are the script's own (its argument parser accepts them)
    check = backup_jobs.check_command("20251117000000")
    assert check[2:] == ["check", "--expect-schema", "20251117000000"]
    for command in (dump, drill, restore, nightly, monthly, check):
        sub = command[2]
        helptext = subprocess.run([sys.executable, str(PGTASK), sub, "--help"], capture_output=True, text=True).stdout
        for arg in command[3:]:
            if arg.startswith("--"):
                assert arg in helptext, (sub, arg)


def test_labels_and_snapshot_ids_are_valid_names() -> None:
    assert backup_jobs.upgrade_label("v4.5.4", "v4.5.5") == "pre-v4.5.4-to-v4.5.5"
    assert backup_jobs.upgrade_label(None, "v4.5.5/x") == "pre-none-to-v4.5.5-x"
    snap = backup_jobs.snapshot_id("social", "pre-v4.5.4-to-v4.5.5", NOW)
    assert snap == "social-pre-v4-5-4-to-v4-5-5-20261130-060000"
    assert backup_jobs.snapshot_id("1x", "a..b", NOW).startswith("b-1x-a-b-")


def test_the_result_line_is_read_from_the_log() -> None:
    lines = ["06:00:01 dumping ...", json.dumps({"ok": True, "location": "s3://b/dumps/x.dump"}), ""]
    assert backup_jobs.task_result(lines, what="backup")["location"] == "s3://b/dumps/x.dump"
    with pytest.raises(MastofargateError, match="truncated"):
        backup_jobs.task_result(["x", json.dumps({"ok": False, "error": "The dump is truncated"})], what="drill")
    with pytest.raises(MastofargateError, match="without a result"):
        backup_jobs.task_result(["Killed"], what="drill")


def point(hours: float, status: str = "available") -> RestorePoint:
    return RestorePoint(time=NOW - timedelta(hours=hours), kind="dump", id=f"d{hours}", status=status)


def test_overdue_counts_only_usable_points() -> None:
    day = timedelta(hours=26)
    assert backup_jobs.overdue([], day, NOW)
    assert not backup_jobs.overdue([point(3)], day, NOW)
    assert backup_jobs.overdue([point(30), point(1, "incomplete (no manifest)")], day, NOW)
