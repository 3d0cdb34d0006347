"""The deploy steps' decisions, one by one: tags, confirmation, history, the cost line, nothing-to-do.

The end-to-end runs are in test_sandbox_e2e.py; the rollout's failure story in test_rollout.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mastofargate.config import Config
from mastofargate.deploy import history, jobs, plan, preflight, stacks
from mastofargate.deploy.options import Tags
from mastofargate.errors import MastofargateError
from mastofargate.target import StackState, Target
from tests.conftest import plain_run
from tests.moto_server import aws_endpoint, moto_server  # noqa: F401


def test_image_tags_come_from_images_push_json(tmp_path: Path) -> None:
    path = tmp_path / "images.json"
    refs = {
        "mastodon": "123456789012.dkr.ecr.us-east-1.amazonaws.com/social/mastodon:v4.5.4-abc123",
        "streaming": "123456789012.dkr.ecr.us-east-1.amazonaws.com/social/streaming:v4.5.4-def456",
    }
    path.write_text(json.dumps(refs))
    assert preflight.tags_from_images_json(path) == Tags("v4.5.4-abc123", "v4.5.4-def456")
    path.write_text(json.dumps({"images": [{"name": "mastodon", "tag": "t1"}, {"name": "streaming", "tag": "t2"}]}))
    assert preflight.tags_from_images_json(path) == Tags("t1", "t2")
    path.write_text(json.dumps({"mastodon": "localhost:5000/social/mastodon:t3", "streaming": "t4"}))
    assert preflight.tags_from_images_json(path) == Tags("t3", "t4")


def test_images_json_without_both_images_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "images.json"
    path.write_text(json.dumps({"mastodon": "repo:tag"}))
    with pytest.raises(MastofargateError) as err:
        preflight.tags_from_images_json(path)
    assert err.value.exit_code == 2 and "both images" in err.value.what


@pytest.mark.parametrize(
    ("email", "username"),
    [("admin@example.org", "admin"), ("Jane.Doe+social@example.org", "jane_doe_social"), ("--@x.org", "admin")],
)
def test_admin_username_defaults_to_the_sanitised_local_part(
    config_factory: Callable[..., Config], email: str, username: str
) -> None:
    config = config_factory(extra={"server": {"admin_email": email}})
    assert jobs.admin_username(config.server.admin_email, None) == username


def test_a_bad_admin_username_is_refused() -> None:
    with pytest.raises(MastofargateError) as err:
        jobs.admin_username("admin@example.org", "no spaces")
    assert err.value.exit_code == 2 and "'no spaces'" in err.value.what


def test_no_terminal_and_no_yes_is_a_usage_error() -> None:
    with pytest.raises(MastofargateError) as err:
        preflight.require_confirmation_possible(yes=False, dry_run=False, interactive=False)
    assert err.value.exit_code == 2 and "Nothing was changed" in err.value.what
    preflight.require_confirmation_possible(yes=True, dry_run=False, interactive=False)
    preflight.require_confirmation_possible(yes=False, dry_run=True, interactive=False)
    preflight.require_confirmation_possible(yes=False, dry_run=False, interactive=True)


def test_deploy_without_a_terminal_exits_2_without_a_traceback(tmp_path: Path) -> None:
    """Through `python -m mastofargate` (main() maps the error to its exit code); stdin is not a TTY."""
    config = tmp_path / "mastofargate.toml"
    config.write_text(
        '[server]\ndomain = "social.example.org"\nadmin_email = "admin@example.org"\n'
        '[aws]\nname = "social"\nhosted_zone_id = "Z0123456789EXAMPLE"\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mastofargate", "deploy", "--config", str(config)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "CI": "1"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "Refusing to deploy without confirmation" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_cost_line_is_printed_and_a_failed_estimate_never_stops_a_deploy(
    config_factory: Callable[..., Config], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan's cost line calls cost.estimate/summary_line with their real signatures (a fake of the
    wrong signature once hid a TypeError here); an estimate that cannot be made is a warning."""
    from mastofargate.stack import build

    config = config_factory()
    run = plain_run(config)
    state = preflight.State(None, None, None, None)
    empty = stacks.Plan("d", "UPDATE", [], {}, {})
    plan.show_plan(run, state, plan.Plans(empty, empty, None, templates=build(config)))
    assert "Estimated cost: $" in capsys.readouterr().out

    def unpriced(*args: object, **kwargs: object) -> None:
        raise MastofargateError("no price for AWS::Made::Up")

    monkeypatch.setattr("mastofargate.cost.estimate", unpriced)
    plan.show_plan(run, state, plan.Plans(empty, empty, None, templates=build(config)))
    captured = capsys.readouterr()
    assert "Estimated cost" not in captured.out and "no cost estimate: no price for AWS::Made::Up" in captured.err


def test_the_deploy_history_gives_rollback_its_previous_tags(
    aws_endpoint: str,  # noqa: F811
    config_factory: Callable[..., Config],
) -> None:
    target = Target(config_factory())
    with pytest.raises(MastofargateError, match="no earlier deploy"):
        history.previous_tags(target, None)
    history.record_history(target, Tags("v1", "v1"))
    history.record_history(target, Tags("v2", "v2s"))
    history.record_history(target, Tags("v2", "v2s"))  # the same deploy again is not a new entry
    assert [e["mastodon"] for e in history.read_history(target)] == ["v2", "v1"]
    assert history.previous_tags(target, Tags("v2", "v2s")) == Tags("v1", "v1")


def test_nothing_to_do_needs_every_part_unchanged() -> None:
    data = StackState("d", "UPDATE_COMPLETE", {}, {}, True)
    state = preflight.State(data=data, app=None, tags=None, deployed_tags=None)
    empty = stacks.Plan("d", "UPDATE", [], {}, {})
    app = stacks.Plan("a", "UPDATE", [], {}, {})
    plans = plan.Plans(empty, app, None)
    assert not plan.nothing_to_do(state, plans)  # no app stack yet: installing
    state.app = StackState("a", "UPDATE_COMPLETE", {"ServicesEnabled": "false"}, {}, False)
    assert not plan.nothing_to_do(state, plans)  # services still at zero: installing
    state.app = StackState("a", "UPDATE_COMPLETE", {"ServicesEnabled": "true"}, {}, False)
    assert plan.nothing_to_do(state, plans)
    plans.app = stacks.deferred_plan("a", {}, {}, "planned after the data stack update")
    assert not plan.nothing_to_do(state, plans)
