"""The day-2 verbs (status, logs, run, tootctl, exec) end to end: `python -m mastofargate` against a real
moto server, so main() maps errors to exit codes. Stubber only for what moto cannot do (named per test)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import tomli_w
from typer.testing import CliRunner

from mastofargate.cli import app
from mastofargate.commands import exec as exec_cmd
from mastofargate.commands import status as status_cmd
from mastofargate.commands.run import run_task_command
from mastofargate.errors import MastofargateError
from mastofargate.target import Target
from tests.conftest import config_dict, interruptible, make_config
from tests.day2_fakes import at, fake_network, job_definition, stub_clients, task_arn
from tests.moto_server import (  # noqa: F401
    aws_endpoint,
    deploy_world,
    moto_server,
    put_log_lines,
    set_task_transition,
    subprocess_env,
)

VALID_NAMES = "web, streaming, sidekiq, redis, migrate-pre, migrate, tootctl"
# Explicit, so the services are known whatever the profile defaults become: a Redis task is a service too.
DEPLOYMENT = {"profile": "personal", "database": "rds", "cache": "task", "mastodon_version": "v4.5.4"}


def config():
    return make_config(**DEPLOYMENT)


@pytest.fixture
def moto(aws_endpoint: str) -> str:  # noqa: F811
    """The wiped moto server's URL (tests.moto_server.aws_endpoint)."""
    return aws_endpoint


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "mastofargate.toml"
    path.write_text(tomli_w.dumps(config_dict(**DEPLOYMENT)))
    return path


def cli(url: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mastofargate", *args],
        env={**subprocess_env(url), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr and "unexpected" not in proc.stderr, proc.stderr


# --- status --------------------------------------------------------------------------------------------


def test_status_not_deployed_says_so_and_exits_1(moto, config_file):
    proc = cli(moto, "status", "--config", str(config_file))
    no_traceback(proc)
    assert proc.returncode == 1
    assert "stack data: social-data not deployed" in proc.stdout
    assert "not deployed: run 'mastofargate deploy'" in proc.stdout


def test_status_of_a_healthy_server(moto, config_file):
    deploy_world(config(), tag="v4.5.4-0123abcd")
    proc = cli(moto, "status", "--config", str(config_file))
    no_traceback(proc)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "stack app: social-app CREATE_COMPLETE" in lines
    assert "url: https://social.example.org" in lines
    assert "mastodon: v4.5.4" in lines
    assert "service web: desired=1 running=1 pending=0 rollout=COMPLETED image=v4.5.4-0123abcd" in lines
    assert "service redis: desired=1 running=1 pending=0 rollout=COMPLETED image=v4.5.4-0123abcd" in lines
    assert lines[-1] == "healthy"


def test_status_json_is_only_json_and_flags_services_below_desired(moto, config_file):
    deploy_world(config(), services_running=False)
    proc = cli(moto, "status", "--json", "--config", str(config_file))
    no_traceback(proc)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)  # nothing but JSON on stdout
    assert data["healthy"] is False
    assert data["url"] == "https://social.example.org"
    assert data["stacks"]["data"] == {"name": "social-data", "status": "CREATE_COMPLETE"}
    web = next(s for s in data["services"] if s["name"] == "web")
    assert (web["desired"], web["running"], web["pending"], web["rollout_state"]) == (1, 0, 1, "IN_PROGRESS")
    assert "service web runs 0 of 1 tasks" in data["problems"]
    assert [s["name"] for s in data["services"]] == ["web", "streaming", "sidekiq", "redis"]


def test_status_flags_a_data_stack_without_termination_protection(moto, config_file):
    """An interrupted first deploy leaves the data stack unprotected (issue 10 item 7): a problem, exit 1."""
    deploy_world(config(), data_protected=False)
    proc = cli(moto, "status", "--json", "--config", str(config_file))
    no_traceback(proc)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["termination_protection"] is False
    (problem,) = data["problems"]
    assert problem.startswith("stack social-data has no termination protection")


def test_status_flags_services_held_at_zero(moto, config_file):
    """Held at zero by ServicesEnabled=false (first install stopped before migrations finished), or a service
    scaled to zero by hand: running == desired == 0 looks healthy to ECS, so status names it."""
    world = deploy_world(config())
    ecs = world.target.client("ecs")
    ecs.update_service(cluster="social", service="web", desiredCount=0)
    proc = cli(moto, "status", "--config", str(config_file))
    no_traceback(proc)
    assert proc.returncode == 1
    assert "service(s) web held at zero tasks: run 'mastofargate deploy'" in proc.stdout

    cfn = world.target.client("cloudformation")
    cfn.delete_stack(StackName="social-app")
    template = {
        "Parameters": {"ServicesEnabled": {"Type": "String", "AllowedValues": ["true", "false"]}},
        "Resources": {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {"Url": {"Value": "https://social.example.org"}},
    }
    cfn.create_stack(
        StackName="social-app",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "ServicesEnabled", "ParameterValue": "false"}],
    )
    proc = cli(moto, "status", "--json", "--config", str(config_file))
    no_traceback(proc)
    data = json.loads(proc.stdout)
    assert proc.returncode == 1 and data["services_enabled"] is False
    assert any(
        p.startswith("services are held at zero tasks (stack social-app has ServicesEnabled=false")
        for p in data["problems"]
    )


def test_status_shows_when_each_scheduled_job_last_succeeded(moto, config_file):
    """The success lines scheduled runs print (stack/jobs.py) are read back from the tootctl log group."""
    from mastofargate.stack.jobs import SUCCESS_MARKER

    world = deploy_world(config())
    group = "/mastofargate/social/tootctl"
    put_log_lines(
        world.target,
        group,
        "tootctl/mastodon/a1",
        ["Removed 12 media", f"{SUCCESS_MARKER} MediaCleanup"],
        age_seconds=7200,
    )
    put_log_lines(world.target, group, "tootctl/mastodon/b2", [f"{SUCCESS_MARKER} MediaCleanup"], age_seconds=60)
    put_log_lines(world.target, group, "tootctl/mastodon/c3", ["boom: exited 1"], age_seconds=30)
    proc = cli(moto, "status", "--json", "--config", str(config_file))
    no_traceback(proc)
    assert proc.returncode == 0, proc.stdout
    jobs = {j["name"]: j for j in json.loads(proc.stdout)["schedules"]}
    assert set(jobs) == {"MediaCleanup", "PreviewCardCleanup"}
    last = datetime.fromisoformat(jobs["MediaCleanup"]["last_success"])
    assert abs((datetime.now(UTC) - last).total_seconds() - 60) < 30  # the newest success, not the older one
    assert jobs["PreviewCardCleanup"]["last_success"] is None and not jobs["PreviewCardCleanup"]["overdue"]
    plain = cli(moto, "status", "--config", str(config_file))
    assert "schedule PreviewCardCleanup: cron(30 4 ? * SUN *) last success=none recorded" in plain.stdout


def test_overdue_scheduled_job_and_dead_letters_are_problems(moto):
    """Days after its last success, the daily media cleanup is overdue; a run Scheduler could not start sits
    in the dead-letter queue. Both are status problems."""
    from mastofargate.deploy import upkeep
    from mastofargate.stack.jobs import SUCCESS_MARKER, dead_letter_queue_name

    world = deploy_world(config())
    put_log_lines(
        world.target, "/mastofargate/social/tootctl", "tootctl/mastodon/a1", [f"{SUCCESS_MARKER} MediaCleanup"]
    )
    app = upkeep.stack_facts(world.target, "social-app")
    assert app is not None
    rows, problems = upkeep.scheduled_jobs(world.target, app)
    assert problems == [] and not any(r["overdue"] for r in rows)
    sqs = world.target.client("sqs")
    url = sqs.create_queue(QueueName=dead_letter_queue_name("social"))["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody='{"error": "AccessDeniedException: ecs:TagResource"}')
    # Five days on: the daily cleanup is overdue (more than two intervals and a day), the weekly one is not.
    later = datetime.now(UTC) + timedelta(days=5)
    rows, problems = upkeep.scheduled_jobs(world.target, app, now=later)
    overdue = {r["name"] for r in rows if r["overdue"]}
    assert overdue == {"MediaCleanup"}
    assert {r["name"]: bool(r["last_success"]) for r in rows} == {"MediaCleanup": True, "PreviewCardCleanup": False}
    assert any(
        p.startswith("scheduled job MediaCleanup (tootctl media remove --days 7) has not succeeded since")
        for p in problems
    )
    assert any(
        p.startswith("1 scheduled run(s) could not be started (dead-letter queue social-schedule-dead-letters)")
        for p in problems
    )


def test_status_flags_a_stack_in_a_failed_state(monkeypatch, config_file):
    """Faked: CloudFormation (Stubber), because moto cannot leave a stack in UPDATE_ROLLBACK_FAILED; Secrets
    Manager with it (status looks for the three secrets of servers from before the one secret: none here)."""
    stubs = stub_clients(monkeypatch, "cloudformation", "secretsmanager")
    sm = stubs["secretsmanager"]
    sm.add_response(
        "describe_secret",
        {"ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:mastofargate/social/server-AbCdEf"},
        {"SecretId": "mastofargate/social/server"},
    )
    for kind in ("app", "database", "redis"):
        sm.add_client_error(
            "describe_secret", "ResourceNotFoundException", expected_params={"SecretId": f"mastofargate/social/{kind}"}
        )
    cfn = stubs["cloudformation"]
    cfn.add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": "social-data",
                    "CreationTime": "2026-01-01T00:00:00Z",
                    "StackStatus": "UPDATE_ROLLBACK_FAILED",
                }
            ]
        },
        {"StackName": "social-data"},
    )
    cfn.add_client_error("describe_stacks", "ValidationError", "Stack with id social-app does not exist")
    result = CliRunner().invoke(app, ["status", "--config", str(config_file)])
    assert result.exit_code == 1, result.output
    assert "stack data: social-data UPDATE_ROLLBACK_FAILED" in result.output
    assert "unhealthy: stack social-data is UPDATE_ROLLBACK_FAILED" in result.output
    cfn.assert_no_pending_responses()
    sm.assert_no_pending_responses()


def test_status_renders_a_table_on_a_terminal(monkeypatch):
    from rich.console import Console

    console = Console(record=True, width=120, force_terminal=True)
    monkeypatch.setattr("mastofargate.ui.console", lambda: console)
    data = {
        "name": "social",
        "region": "us-east-1",
        "domain": "social.example.org",
        "url": "https://social.example.org",
        "deployed": True,
        "stacks": {
            "data": {"name": "social-data", "status": "UPDATE_COMPLETE"},
            "app": {"name": "social-app", "status": "UPDATE_COMPLETE"},
        },
        "services": [
            {
                "name": "web",
                "exists": True,
                "desired": 2,
                "running": 1,
                "pending": 1,
                "rollout_state": "IN_PROGRESS",
                "image_tag": "v4.5.4",
            }
        ],
        "mastodon_version": "v4.5.4",
        "configured_mastodon_version": "v4.5.5",
        "healthy": False,
        "problems": ["service web runs 1 of 2 tasks"],
    }
    status_cmd.render_rich(data)
    text = console.export_text()
    assert "┃ service" in text and "│ web " in text and "IN_PROGRESS" in text
    assert "v4.5.4 (config says v4.5.5: deploy to change)" in text
    assert "unhealthy: service web runs 1 of 2 tasks" in text


@pytest.mark.parametrize(
    ("tags", "version"),
    [(["v4.5.4"], "v4.5.4"), (["v4.5.4-3f2a9c1"], "v4.5.4"), (["v4.6.0-rc.1"], "v4.6.0-rc.1"), (["3f2a9c1d"], None)],
)
def test_mastodon_version_from_image_tags(tags, version):
    assert status_cmd.mastodon_version(tags) == version


# --- logs ----------------------------------------------------------------------------------------------


def test_logs_prints_a_services_lines(moto, config_file):
    world = deploy_world(config())
    put_log_lines(world.target, "/mastofargate/social/sidekiq", "sidekiq/sidekiq/abcdef0123", ["started", "done"])
    proc = cli(moto, "logs", "sidekiq", "--since", "1h", "--config", str(config_file))
    no_traceback(proc)
    assert proc.returncode == 0
    assert [line.split(" ", 1)[1] for line in proc.stdout.splitlines()] == ["[abcdef01] started", "[abcdef01] done"]


def test_logs_of_an_unknown_service_lists_the_valid_names(moto, config_file):
    proc = cli(moto, "logs", "mastodon-web", "--config", str(config_file))
    no_traceback(proc)
    assert proc.returncode == 2
    assert "'mastodon-web' is not a service or job of social" in proc.stderr
    assert VALID_NAMES in proc.stderr


def test_logs_rejects_a_bad_duration(moto, config_file):
    proc = cli(moto, "logs", "web", "--since", "ten minutes", "--config", str(config_file))
    assert proc.returncode == 2 and "30s, 10m, 2h or 1d" in proc.stderr


def test_logs_before_deploy_names_the_missing_group(moto, config_file):
    proc = cli(moto, "logs", "migrate", "--config", str(config_file))
    no_traceback(proc)
    assert proc.returncode == 1
    assert "log group /mastofargate/social/migrate does not exist" in proc.stderr


def test_logs_follow_ends_cleanly_on_ctrl_c(moto, config_file):
    world = deploy_world(config())
    put_log_lines(world.target, "/mastofargate/social/web", "web/web/0badc0de99", ["GET /health 200"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "mastofargate", "logs", "web", "--follow", "--config", str(config_file)],
        env=subprocess_env(moto),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    try:
        first = proc.stdout.readline()
        assert first.endswith("[0badc0de] GET /health 200\n")
        time.sleep(0.3)  # inside the follow loop
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "interrupted" not in err


# --- run / tootctl -------------------------------------------------------------------------------------


def _only_task(target: Target) -> dict:
    client = target.client("ecs")
    arns = client.list_tasks(cluster="social")["taskArns"]
    assert len(arns) == 1
    return client.describe_tasks(cluster="social", tasks=arns)["tasks"][0]


def test_tootctl_passes_every_argument_through(moto, config_file):
    world = deploy_world(config())
    set_task_transition(moto, "immediate")  # moto's task stops at the first describe
    proc = cli(
        moto,
        "tootctl",
        "--config",
        str(config_file),
        "accounts",
        "create",
        "alice",
        "--email",
        "a@b.c",
        "--confirmed",
        "-c",
        "5",
    )
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    task = _only_task(world.target)
    assert task["taskDefinitionArn"].endswith("task-definition/social-tootctl:1")
    assert task["overrides"]["containerOverrides"][0]["command"] == [
        "tootctl",
        "accounts",
        "create",
        "alice",
        "--email",
        "a@b.c",
        "--confirmed",
        "-c",
        "5",
    ]


def test_run_passes_the_command_after_the_separator(moto, config_file):
    world = deploy_world(config())
    set_task_transition(moto, "immediate")
    proc = cli(moto, "run", "--config", str(config_file), "--timeout", "60", "--", "bin/rails", "runner", "puts 1")
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    assert _only_task(world.target)["overrides"]["containerOverrides"][0]["command"] == [
        "bin/rails",
        "runner",
        "puts 1",
    ]


def test_run_without_a_command_is_a_usage_error(moto, config_file):
    proc = cli(moto, "run", "--config", str(config_file))
    assert proc.returncode == 2 and "No command given" in proc.stderr


def test_run_before_deploy_explains(moto, config_file):
    proc = cli(moto, "run", "--config", str(config_file), "--", "true")
    no_traceback(proc)
    assert proc.returncode == 1 and "no task definition social-tootctl" in proc.stderr


def _stub_failed_task(monkeypatch, exit_code: int | None, container_reason: str, stopped_reason: str) -> dict:
    stubs = stub_clients(monkeypatch, "ecs", "logs")
    fake_network(monkeypatch)
    arn = task_arn("feedface")
    stubs["ecs"].add_response("describe_task_definition", {"taskDefinition": job_definition(), "tags": []})
    stubs["ecs"].add_response("run_task", {"tasks": [{"taskArn": arn}], "failures": []})
    container = {"name": "mastodon", "reason": container_reason}
    if exit_code is not None:
        container["exitCode"] = exit_code
    stopped = {"taskArn": arn, "lastStatus": "STOPPED", "stoppedReason": stopped_reason, "containers": [container]}
    stubs["ecs"].add_response("describe_tasks", {"tasks": [stopped]})
    for _ in range(2):
        stubs["logs"].add_client_error("get_log_events", "ResourceNotFoundException", "no stream")
    return stubs


def test_run_exits_with_the_tasks_nonzero_code(monkeypatch, config_file):
    """Faked: ECS and Logs (Stubber), because moto's tasks always exit 0. The command function must exit with
    the task's code and name the cause (OutOfMemoryError) on stderr."""
    stubs = _stub_failed_task(
        monkeypatch, 137, "OutOfMemoryError: Container killed", "Essential container in task exited"
    )
    result = CliRunner().invoke(app, ["tootctl", "--config", str(config_file), "media", "remove"])
    assert result.exit_code == 137, result.output
    assert "Task exited with code 137" in result.output and "OutOfMemoryError" in result.output
    stubs["ecs"].assert_no_pending_responses()


def test_run_of_a_task_that_never_started_is_an_error(monkeypatch):
    """Faked: ECS and Logs (Stubber): moto always starts tasks; here the image could not be pulled."""
    _stub_failed_task(monkeypatch, None, "", "CannotPullContainerError: pull access denied")
    with pytest.raises(MastofargateError) as caught:
        run_task_command(Target(config()), ["tootctl", "--help"], timeout=60, poll=0)
    assert caught.value.exit_code == 1 and "CannotPullContainerError" in caught.value.why


# --- exec ----------------------------------------------------------------------------------------------


def _fake_plugin(directory: Path, exit_code: int = 0) -> Path:
    """A stand-in for session-manager-plugin that records its arguments, one per line."""
    directory.mkdir(parents=True, exist_ok=True)
    plugin = directory / "session-manager-plugin"
    plugin.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{directory}/argv"\nexit {exit_code}\n')
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    return plugin


def test_exec_without_the_plugin_explains_how_to_install_it(moto, config_file, tmp_path):
    proc = cli(moto, "exec", "web", "--config", str(config_file), env={"PATH": str(tmp_path / "empty")})
    no_traceback(proc)
    assert proc.returncode == 1
    assert "session-manager-plugin, which is not on PATH" in proc.stderr
    assert "Install the Session Manager plugin for the AWS CLI" in proc.stderr


def test_exec_without_a_running_task_says_so(moto, config_file, tmp_path):
    deploy_world(config())
    plugin = _fake_plugin(tmp_path / "bin")
    proc = cli(moto, "exec", "web", "--config", str(config_file), env={"PATH": f"{plugin.parent}:{os.environ['PATH']}"})
    no_traceback(proc)
    assert proc.returncode == 1 and "Service web has no RUNNING task" in proc.stderr
    assert not (plugin.parent / "argv").exists()


def test_exec_of_an_unknown_service_lists_services(moto, config_file):
    proc = cli(moto, "exec", "migrate", "--config", str(config_file))
    assert proc.returncode == 2 and "web, streaming, sidekiq, redis" in proc.stderr


@pytest.mark.parametrize("service", ["redis", "streaming"])
def test_exec_into_a_service_without_ecs_exec_is_refused_before_aws(moto, config_file, service):
    """Redis/Postgres tasks and streaming do not run the exec agent (issue 10): a usage error, no AWS call."""
    proc = cli(moto, "exec", service, "--config", str(config_file))
    no_traceback(proc)
    assert proc.returncode == 2 and f"{service!r} does not allow ECS Exec" in proc.stderr
    assert "choose one of: web, sidekiq" in proc.stderr


def test_exec_hands_the_session_to_the_plugin_like_the_aws_cli(monkeypatch, tmp_path):
    """Faked: ECS (Stubber), because moto implements neither ExecuteCommand nor service tasks; the plugin is
    a script that records its argv (the real one needs a live SSM session)."""
    plugin = _fake_plugin(tmp_path / "bin", exit_code=5)
    monkeypatch.setenv("PATH", f"{plugin.parent}:{os.environ['PATH']}")
    stubs = stub_clients(monkeypatch, "ecs")
    monkeypatch.setenv("AWS_PROFILE", "ops")  # after the clients exist: there is no profile "ops" to load
    e = stubs["ecs"]
    old, new = task_arn("1111aaaa"), task_arn("2222bbbb")
    e.add_response(
        "list_tasks", {"taskArns": [old, new]}, {"cluster": "social", "serviceName": "web", "desiredStatus": "RUNNING"}
    )
    running = [
        {
            "taskArn": old,
            "lastStatus": "RUNNING",
            "startedAt": at(7200),
            "containers": [{"name": "web", "runtimeId": "r-old"}],
        },
        {
            "taskArn": new,
            "lastStatus": "RUNNING",
            "startedAt": at(60),
            "containers": [{"name": "web", "runtimeId": "2222bbbb-web"}],
        },
    ]
    e.add_response("describe_tasks", {"tasks": running})
    session = {
        "sessionId": "ecs-execute-command-0abc",
        "streamUrl": "wss://ssmmessages.example/v1/data-channel/x",
        "tokenValue": "tok",
    }
    e.add_response(
        "execute_command",
        {
            "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/social",
            "containerName": "web",
            "taskArn": new,
            "interactive": True,
            "session": session,
        },
        {"cluster": "social", "task": new, "container": "web", "interactive": True, "command": "bin/rails console"},
    )
    code = exec_cmd.start_session(Target(config()), "web", "bin/rails console")
    assert code == 5
    argv = (plugin.parent / "argv").read_text().splitlines()
    assert argv == [
        json.dumps(session),
        "us-east-1",
        "StartSession",
        "ops",
        json.dumps({"Target": "ecs:social_2222bbbb_2222bbbb-web"}),
        "http://127.0.0.1:9",
    ]
    e.assert_no_pending_responses()
