"""mastofargate.deploy.ecs and .logs against a real moto server; Stubber only where moto cannot fail."""

from __future__ import annotations

import threading
import time

import boto3
import pytest

from mastofargate.deploy import ecs, logs
from mastofargate.errors import EXIT_FAILED, EXIT_TIMEOUT, MastofargateError
from mastofargate.target import Target
from tests.conftest import make_config
from tests.day2_fakes import fake_network, job_definition, log_event, stub_clients, task_arn, td_arn
from tests.moto_server import aws_endpoint, deploy_world, keep_tasks_running, moto_server, put_log_lines  # noqa: F401

FAST = 0.02


@pytest.fixture
def moto(aws_endpoint: str) -> str:  # noqa: F811
    """The wiped moto server's URL (tests.moto_server.aws_endpoint)."""
    return aws_endpoint


def _task(target: Target, arn: str) -> dict:
    return target.client("ecs").describe_tasks(cluster=target.cluster, tasks=[arn])["tasks"][0]


# --- run_one_off: moto ---------------------------------------------------------------------------------


def test_run_one_off_streams_the_tasks_log_lines_and_keeps_the_last_30(moto):
    """A helper thread plays the container: once the task exists it writes 40 log lines to the task's
    awslogs stream (`tootctl/mastodon/TASKID`) and stops the task, as ECS would when the command exits."""
    world = deploy_world(make_config())
    keep_tasks_running(moto)
    client = boto3.client("ecs")
    cw = boto3.client("logs")

    def container() -> None:
        for _ in range(500):
            arns = client.list_tasks(cluster="social")["taskArns"]
            if arns:
                break
            time.sleep(0.01)
        tid = arns[0].rsplit("/", 1)[-1]
        stream = f"tootctl/mastodon/{tid}"
        cw.create_log_stream(logGroupName="/mastofargate/social/tootctl", logStreamName=stream)
        now = int(time.time() * 1000)
        for batch in range(2):
            events = [{"timestamp": now + batch * 20 + i, "message": f"line {batch * 20 + i}"} for i in range(20)]
            cw.put_log_events(logGroupName="/mastofargate/social/tootctl", logStreamName=stream, logEvents=events)
            time.sleep(0.1)
        client.stop_task(cluster="social", task=arns[0], reason="Essential container in task exited")

    thread = threading.Thread(target=container)
    thread.start()
    seen: list[str] = []
    result = ecs.run_one_off(world.target, "social-tootctl", ["tootctl", "version"], poll=FAST, on_line=seen.append)
    thread.join()
    assert seen == [f"line {i}" for i in range(40)]
    assert result.log_tail == [f"line {i}" for i in range(10, 40)]
    assert result.ok and result.exit_code == 0
    assert result.stopped_reason == "Essential container in task exited"
    assert result.task_definition == td_arn("social-tootctl", 1)


def test_run_one_off_sends_command_and_environment_on_fargate_on_demand(moto):
    """moto moves the task to STOPPED by itself after a few describe_tasks calls."""
    world = deploy_world(make_config())
    result = ecs.run_one_off(
        world.target,
        "social-migrate",
        ["bundle", "exec", "rails", "db:migrate"],
        environment={"B": "2", "A": "1"},
        poll=FAST,
    )
    task = _task(world.target, result.task_arn)
    assert task["launchType"] == "FARGATE"  # never Spot for migrations
    assert task["startedBy"] == "mastofargate"
    assert task["overrides"]["containerOverrides"] == [
        {
            "name": "mastodon",
            "command": ["bundle", "exec", "rails", "db:migrate"],
            "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        }
    ]
    net = task["attachments"][0]["details"]
    assert {"name": "subnetId", "value": world.subnets[0]} in net


def test_run_one_off_on_a_new_image_runs_a_tagged_copy_of_the_latest_revision(moto):
    world = deploy_world(make_config())
    target, new = world.target, world.images["migrate-pre"].replace(":v4.5.4", ":v4.6.0")
    client = target.client("ecs")
    before = client.describe_task_definition(taskDefinition="social-migrate-pre")["taskDefinition"]
    result = ecs.run_one_off(target, "social-migrate-pre", poll=FAST, image=new)
    assert result.task_definition == td_arn("social-migrate-pre", 2)
    assert _task(target, result.task_arn)["taskDefinitionArn"] == result.task_definition
    got = client.describe_task_definition(taskDefinition=result.task_definition, include=["TAGS"])
    copy = got["taskDefinition"]
    assert copy["containerDefinitions"][0]["image"] == new
    strip = ("taskDefinitionArn", "revision", "containerDefinitions", "registeredAt", "registeredBy")
    assert {k: v for k, v in copy.items() if k not in strip} == {k: v for k, v in before.items() if k not in strip}
    same = {**before["containerDefinitions"][0], "image": new}
    assert copy["containerDefinitions"][0] == same
    tags = {t["key"]: t["value"] for t in got["tags"]}
    assert "social-migrate-pre:1" in tags[ecs.PURPOSE_TAG] and new in tags[ecs.PURPOSE_TAG]
    assert tags["mastofargate:stack"] == "social-app"  # the original's tags are kept
    # The same image again: the copy is reused, no third revision.
    again = ecs.run_one_off(target, "social-migrate-pre", poll=FAST, image=new)
    assert again.task_definition == td_arn("social-migrate-pre", 2)


def test_run_one_off_timeout_stops_the_task_and_names_it(moto):
    world = deploy_world(make_config())
    keep_tasks_running(moto)
    with pytest.raises(MastofargateError) as caught:
        ecs.run_one_off(world.target, "social-tootctl", ["sleep", "infinity"], timeout=0.3, poll=FAST)
    assert caught.value.exit_code == EXIT_TIMEOUT
    arn = world.target.client("ecs").list_tasks(cluster="social")["taskArns"][0]
    assert arn in caught.value.what and "0 s" in caught.value.what
    task = _task(world.target, arn)
    assert task["lastStatus"] == "STOPPED" and "gave up" in task["stoppedReason"]


def test_run_one_off_before_any_deploy_says_what_is_missing(moto):
    world = deploy_world(make_config(), app_stack=False)
    with pytest.raises(MastofargateError) as caught:
        ecs.run_one_off(world.target, "social-tootctl", poll=FAST)
    assert caught.value.exit_code == EXIT_FAILED
    assert "no task definition social-tootctl" in caught.value.what
    assert "mastofargate deploy" in caught.value.fix


def test_run_one_off_without_data_stack_names_the_stack(moto):
    world = deploy_world(make_config(), data_stack=False)
    with pytest.raises(MastofargateError) as caught:
        ecs.run_one_off(world.target, "social-tootctl", poll=FAST)
    assert "social-data" in caught.value.what


# --- run_one_off: failure paths moto cannot produce (Stubber) ------------------------------------------


def test_run_one_off_returns_nonzero_exit_and_oom_reason(monkeypatch):
    """Faked: ECS and CloudWatch Logs (Stubber), because moto's tasks always exit 0 with no container
    reason. The task runs, logs two lines, is killed for memory (exit 137, OutOfMemoryError)."""
    stubs = stub_clients(monkeypatch, "ecs", "logs")
    fake_network(monkeypatch)
    arn = task_arn("0123456789abcdef")
    definition = job_definition()
    e, cw = stubs["ecs"], stubs["logs"]
    e.add_response("describe_task_definition", {"taskDefinition": definition, "tags": []})
    e.add_response(
        "run_task",
        {"tasks": [{"taskArn": arn, "lastStatus": "PROVISIONING"}], "failures": []},
        {
            "cluster": "social",
            "taskDefinition": definition["taskDefinitionArn"],
            "count": 1,
            "launchType": "FARGATE",
            "platformVersion": "LATEST",
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": ["subnet-1", "subnet-2"],
                    "securityGroups": ["sg-1"],
                    "assignPublicIp": "ENABLED",
                }
            },
            "overrides": {"containerOverrides": [{"name": "mastodon", "command": ["tootctl", "search", "deploy"]}]},
            "startedBy": "mastofargate",
            "propagateTags": "TASK_DEFINITION",
        },
    )
    e.add_response("describe_tasks", {"tasks": [{"taskArn": arn, "lastStatus": "RUNNING"}]})
    stopped = {
        "taskArn": arn,
        "taskDefinitionArn": definition["taskDefinitionArn"],
        "lastStatus": "STOPPED",
        "stoppedReason": "Essential container in task exited",
        "containers": [
            {"name": "mastodon", "exitCode": 137, "reason": "OutOfMemoryError: Container killed due to memory usage"}
        ],
    }
    e.add_response("describe_tasks", {"tasks": [stopped]})
    stream = {"logGroupName": "/mastofargate/social/tootctl", "logStreamName": "tootctl/mastodon/0123456789abcdef"}
    cw.add_response("get_log_events", {"events": [], "nextForwardToken": "f/0"}, {**stream, "startFromHead": True})
    cw.add_response(
        "get_log_events",
        {"events": [log_event("Indexing accounts"), log_event("Killed\n")], "nextForwardToken": "f/2"},
        {**stream, "nextToken": "f/0"},
    )
    cw.add_response("get_log_events", {"events": [], "nextForwardToken": "f/2"}, {**stream, "nextToken": "f/2"})
    cw.add_response("get_log_events", {"events": [], "nextForwardToken": "f/2"}, {**stream, "nextToken": "f/2"})
    result = ecs.run_one_off(Target(make_config()), "social-tootctl", ["tootctl", "search", "deploy"], poll=0)
    assert not result.ok and result.exit_code == 137
    assert "Essential container in task exited" in result.stopped_reason
    assert "OutOfMemoryError" in result.stopped_reason
    assert result.log_tail == ["Indexing accounts", "Killed"]
    e.assert_no_pending_responses()
    cw.assert_no_pending_responses()


def test_run_one_off_reports_a_task_ecs_refused_to_start(monkeypatch):
    """Faked: ECS (Stubber); moto's run_task never returns failures."""
    stubs = stub_clients(monkeypatch, "ecs", "logs")
    fake_network(monkeypatch)
    stubs["ecs"].add_response("describe_task_definition", {"taskDefinition": job_definition(), "tags": []})
    stubs["ecs"].add_response(
        "run_task", {"tasks": [], "failures": [{"reason": "RESOURCE:ENI", "detail": "ENI limit reached"}]}
    )
    with pytest.raises(MastofargateError) as caught:
        ecs.run_one_off(Target(make_config()), "social-tootctl", poll=0)
    assert "did not start" in caught.value.what and "ENI limit reached" in caught.value.why


# --- services ----------------------------------------------------------------------------------------


def test_describe_services_asks_at_most_ten_at_a_time(monkeypatch):
    """Faked: ECS (Stubber), to see the batches; moto accepts any number of names."""
    stubs = stub_clients(monkeypatch, "ecs")
    names = [f"s{i}" for i in range(12)]
    for batch in (names[:10], names[10:]):
        stubs["ecs"].add_response(
            "describe_services",
            {"services": [{"serviceName": n, "status": "ACTIVE"} for n in batch]},
            {"cluster": "social", "services": batch},
        )
    assert list(ecs.describe_services(Target(make_config()), names)) == names
    stubs["ecs"].assert_no_pending_responses()


def test_service_images_reads_the_primary_deployments_task_definition(moto):
    world = deploy_world(make_config(), tag="v4.5.4-abc123")
    images = ecs.service_images(world.target, ["web", "streaming", "sidekiq-federation"])
    assert images == {"web": world.images["web"], "streaming": world.images["streaming"]}
    assert images["streaming"].endswith("/social/streaming:v4.5.4-abc123")


# --- logs ----------------------------------------------------------------------------------------------


def _put(target: Target, stream: str, events: list[tuple[float, str]]) -> None:
    cw = target.client("logs")
    cw.create_log_stream(logGroupName="/mastofargate/social/web", logStreamName=stream)
    now = time.time()
    cw.put_log_events(
        logGroupName="/mastofargate/social/web",
        logStreamName=stream,
        logEvents=[{"timestamp": int((now - ago) * 1000), "message": m} for ago, m in events],
    )


def test_tail_interleaves_streams_by_time_and_keeps_the_last_lines(moto):
    world = deploy_world(make_config())
    target = world.target
    _put(target, "web/web/aaaaaaaa1111", [(7200, "too old"), (30, "a1"), (10, "a2\nsecond line")])
    _put(target, "web/web/bbbbbbbb2222", [(20, "b1"), (5, "b2")])
    lines = logs.tail(target, "web", since_seconds=600)
    assert [line.split(" ", 1)[1] for line in lines] == [
        "[aaaaaaaa] a1",
        "[bbbbbbbb] b1",
        "[aaaaaaaa] a2",
        "[aaaaaaaa] second line",
        "[bbbbbbbb] b2",
    ]
    assert lines[0][:4].isdigit() and lines[0].split(" ", 1)[0].endswith("Z")
    assert [line.split(" ", 1)[1] for line in logs.tail(target, "web", limit=2)] == [
        "[aaaaaaaa] second line",
        "[bbbbbbbb] b2",
    ]
    assert [line.split(" ", 1)[1] for line in logs.tail(target, "web", task_id="bbbbbbbb2222")] == ["b1", "b2"]
    assert logs.tail(target, "web", since_seconds=8000)[0].endswith("too old")


def test_tail_of_a_missing_group_is_empty(moto):
    world = deploy_world(make_config(), app_stack=False)
    assert logs.tail(world.target, "web") == []
    assert not logs.group_exists(world.target, "web")


def test_follow_prints_each_line_once_including_late_arrivals(moto):
    world = deploy_world(make_config())
    target = world.target
    put_log_lines(target, "/mastofargate/social/web", "web/web/cccccccc3333", ["old 1", "old 2"])
    seen: list[str] = []
    polls = []

    def stop() -> bool:
        polls.append(1)
        if len(polls) == 1:  # a line arrives between two polls, timestamped before the last one read
            put_log_lines(target, "/mastofargate/social/web", "web/web/dddddddd4444", ["late"], age_seconds=10)
        return len(polls) >= 3

    logs.follow(target, "web", since_seconds=60, on_line=seen.append, stop=stop, poll=FAST)
    assert [line.split(" ", 1)[1] for line in seen] == ["[cccccccc] old 1", "[cccccccc] old 2", "[dddddddd] late"]


def test_log_group_and_container_names_follow_the_stack():
    target = Target(make_config(profile="large", database="task"))
    assert logs.log_group(target, "sidekiq-scheduler") == "/mastofargate/social/sidekiq-scheduler"
    assert logs.container_of(target, "sidekiq-scheduler") == "sidekiq"
    assert logs.container_of(target, "postgres") == "postgres"
    assert logs.container_of(target, "migrate") == "mastodon"
