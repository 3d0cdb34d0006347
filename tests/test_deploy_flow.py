"""flow.py's decisions, step by step: tags, confirmation, rollout verdicts, history, the cost line.

The end-to-end runs are in test_sandbox_e2e.py. Here the rollout verdicts use fake `RolloutResult`s
(the dataclass ecs.py returns): a real FAILED rollout needs ECS's circuit breaker, which moto lacks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from mastofargate.config import Config
from mastofargate.deploy import flow, stacks
from mastofargate.deploy.ecs import RolloutResult, StoppedTask
from mastofargate.deploy.target import Target
from mastofargate.errors import MastofargateError
from tests.moto_server import aws_endpoint, moto_server  # noqa: F401


def test_image_tags_come_from_images_push_json(tmp_path: Path) -> None:
    path = tmp_path / "images.json"
    refs = {
        "mastodon": "123456789012.dkr.ecr.us-east-1.amazonaws.com/social/mastodon:v4.5.4-abc123",
        "streaming": "123456789012.dkr.ecr.us-east-1.amazonaws.com/social/streaming:v4.5.4-def456",
    }
    path.write_text(json.dumps(refs))
    assert flow.tags_from_images_json(path) == flow.Tags("v4.5.4-abc123", "v4.5.4-def456")
    path.write_text(json.dumps({"images": [{"name": "mastodon", "tag": "t1"}, {"name": "streaming", "tag": "t2"}]}))
    assert flow.tags_from_images_json(path) == flow.Tags("t1", "t2")
    path.write_text(json.dumps({"mastodon": "localhost:5000/social/mastodon:t3", "streaming": "t4"}))
    assert flow.tags_from_images_json(path) == flow.Tags("t3", "t4")


def test_images_json_without_both_images_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "images.json"
    path.write_text(json.dumps({"mastodon": "repo:tag"}))
    with pytest.raises(MastofargateError) as err:
        flow.tags_from_images_json(path)
    assert err.value.exit_code == 2 and "both images" in err.value.what


@pytest.mark.parametrize(
    ("email", "username"),
    [("admin@example.org", "admin"), ("Jane.Doe+social@example.org", "jane_doe_social"), ("--@x.org", "admin")],
)
def test_admin_username_defaults_to_the_sanitised_local_part(
    config_factory: Callable[..., Config], email: str, username: str
) -> None:
    config = config_factory(extra={"server": {"admin_email": email}})
    assert flow.admin_username(Target(config), flow.Options()) == username


def test_a_bad_admin_username_is_refused(config_factory: Callable[..., Config]) -> None:
    with pytest.raises(MastofargateError) as err:
        flow.admin_username(Target(config_factory()), flow.Options(admin_username="no spaces"))
    assert err.value.exit_code == 2


def test_no_terminal_and_no_yes_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mastofargate.ui.stdin_is_tty", lambda: False)
    with pytest.raises(MastofargateError) as err:
        flow.require_confirmation_possible(flow.Options())
    assert err.value.exit_code == 2 and "Nothing was changed" in err.value.what
    flow.require_confirmation_possible(flow.Options(yes=True))
    flow.require_confirmation_possible(flow.Options(dry_run=True))


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


def failed_web() -> RolloutResult:
    return RolloutResult(
        service="web",
        state="FAILED",
        reason="ECS deployment circuit breaker: tasks failed to start.",
        events=["12:00:01 (service web) (deployment ecs-svc/1) deployment failed: tasks failed to start."],
        stopped=[
            StoppedTask(
                "arn:aws:ecs:us-east-1:123456789012:task/social/0123456789abcdef",
                "Essential container in task exited",
                137,
                "OutOfMemoryError: Container killed due to memory usage",
            )
        ],
    )


def test_a_circuit_breaker_rollback_exits_1_with_cause_and_next_command(config_factory: Callable[..., Config]) -> None:
    ok = RolloutResult("streaming", "COMPLETED", "done", [], [])
    with pytest.raises(MastofargateError) as err:
        flow.check_rollout(Target(config_factory()), [ok, failed_web()])
    e = err.value
    assert e.exit_code == 1
    assert "rollout of web failed" in e.what and "rolled it back" in e.what
    assert "circuit breaker: tasks failed to start" in e.why
    assert "OutOfMemoryError" in e.why and "exit code 137" in e.why
    assert "deployment failed" in e.why  # the service's last event
    assert "mastofargate logs web" in e.fix and "mastofargate rollback" in e.fix


def test_a_rollout_still_running_at_the_timeout_exits_3(config_factory: Callable[..., Config]) -> None:
    slow = RolloutResult("web", "IN_PROGRESS", "ECS deployment ecs-svc/2 in progress.", [], [])
    with pytest.raises(MastofargateError) as err:
        flow.check_rollout(Target(config_factory()), [slow])
    assert err.value.exit_code == 3 and "still in progress" in err.value.what


def test_a_service_that_fails_the_stack_gets_its_own_story(
    config_factory: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    """CloudFormation's reason alone ("Circuit Breaker was triggered") is not enough: the service's stopped
    tasks say why. watch_services is faked here (moto has no circuit breaker)."""
    monkeypatch.setattr("mastofargate.deploy.ecs.watch_services", lambda *a, **k: [failed_web()])
    plan = stacks.Plan(
        "social-app",
        "UPDATE",
        [],
        {},
        {"Resources": {"WebService": {"Type": "AWS::ECS::Service", "Properties": {"ServiceName": "web"}}}},
    )
    error = MastofargateError(
        "Stack social-app failed at WebService (Mastodon web) and was rolled back (UPDATE_ROLLBACK_COMPLETE).",
        why="ECS Deployment Circuit Breaker was triggered",
        fix="fix the cause",
    )
    enriched = flow.explain_service_failure(Target(config_factory()), plan, error)
    assert enriched.exit_code == 1
    assert enriched.why.startswith("ECS Deployment Circuit Breaker was triggered")
    assert "OutOfMemoryError" in enriched.why


def test_the_cost_line_is_optional(config_factory: Callable[..., Config], monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_factory()
    fake = types.ModuleType("mastofargate.cost")
    fake.summary_line = lambda cfg: f"about $42/month for {cfg.server.domain}"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mastofargate.cost", fake)
    monkeypatch.setattr("mastofargate.cost", fake, raising=False)
    assert flow.cost_line(config) == "about $42/month for social.example.org"
    broken = types.ModuleType("mastofargate.cost")
    broken.summary_line = lambda cfg: 1 / 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mastofargate.cost", broken)
    monkeypatch.setattr("mastofargate.cost", broken, raising=False)
    assert flow.cost_line(config) is None
    monkeypatch.setitem(sys.modules, "mastofargate.cost", types.ModuleType("mastofargate.cost"))
    monkeypatch.setattr("mastofargate.cost", types.ModuleType("mastofargate.cost"), raising=False)
    assert flow.cost_line(config) is None


def test_the_deploy_history_gives_rollback_its_previous_tags(
    aws_endpoint: str,  # noqa: F811
    config_factory: Callable[..., Config],
) -> None:
    target = Target(config_factory())
    with pytest.raises(MastofargateError, match="no earlier deploy"):
        flow.previous_tags(target, None)
    flow.record_history(target, flow.Tags("v1", "v1"))
    flow.record_history(target, flow.Tags("v2", "v2s"))
    flow.record_history(target, flow.Tags("v2", "v2s"))  # the same deploy again is not a new entry
    assert [e["mastodon"] for e in flow.read_history(target)] == ["v2", "v1"]
    assert flow.previous_tags(target, flow.Tags("v2", "v2s")) == flow.Tags("v1", "v1")


def test_nothing_to_do_needs_every_part_unchanged() -> None:
    state = flow.State(data={"StackStatus": "UPDATE_COMPLETE"}, app=None, tags=None, deployed_tags=None)
    empty = stacks.Plan("d", "UPDATE", [], {}, {})
    app = stacks.Plan("a", "UPDATE", [], {}, {})
    plans = flow.Plans(empty, app, None)
    assert not flow.nothing_to_do(state, plans)  # no app stack yet: installing
    state.app = {
        "StackStatus": "UPDATE_COMPLETE",
        "Parameters": [{"ParameterKey": "ServicesEnabled", "ParameterValue": "true"}],
    }
    assert flow.nothing_to_do(state, plans)
    plans.app = stacks.deferred_plan("a", {}, {}, "planned after the data stack update")
    assert not flow.nothing_to_do(state, plans)
