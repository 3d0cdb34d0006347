"""deploy.rollout: the services watched while CloudFormation updates them, and the story of a failure.

Faked: ECS and CloudWatch Logs (botocore Stubber), for the exact sequence ECS reports during a circuit-breaker
rollback: the emulator's end-to-end path is in test_sandbox_e2e.py.
"""

from __future__ import annotations

from mastofargate.aws import StackFailed
from mastofargate.deploy import rollout, stacks
from mastofargate.ui import Output
from tests.conftest import make_config, plain_run
from tests.day2_fakes import at, stub_clients, task_arn, td_arn

OLD, NEW, BACK = "ecs-svc/1", "ecs-svc/2", "ecs-svc/3"
CIRCUIT = "ECS deployment circuit breaker: tasks failed to start."
OOM = "OutOfMemoryError: Container killed due to memory usage"


def deployment(dep_id: str, status: str, state: str, reason: str, running: int = 0, failed: int = 0) -> dict:
    return {
        "id": dep_id,
        "status": status,
        "taskDefinition": td_arn("social-web", 3),
        "desiredCount": 1,
        "pendingCount": 0,
        "runningCount": running,
        "failedTasks": failed,
        "rolloutState": state,
        "rolloutStateReason": reason,
    }


def web(*deps: dict, events: list | None = None) -> dict:
    return {"serviceName": "web", "status": "ACTIVE", "events": events or [], "deployments": list(deps)}


def plan_touching_web() -> stacks.Plan:
    template = {
        "Resources": {
            "WebService": {"Type": "AWS::ECS::Service", "Properties": {"ServiceName": "web"}},
            "Alarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {}},
        }
    }
    changes = [
        stacks.Change("Modify", "WebService", "AWS::ECS::Service", "False", ""),
        stacks.Change("Modify", "Alarm", "AWS::CloudWatch::Alarm", "False", ""),
    ]
    return stacks.Plan("social-app", "UPDATE", changes, {}, template, "cs-1")


def test_only_the_services_the_change_set_touches_are_watched():
    assert rollout.touched_services(plan_touching_web()) == ["web"]
    assert rollout.service_of(plan_touching_web(), "WebService") == "web"
    assert rollout.service_of(plan_touching_web(), "Alarm") is None


def test_the_monitor_follows_the_new_deployment_through_a_circuit_breaker_rollback(monkeypatch, capsys):
    """Sequence as ECS reports it: before, one COMPLETED deployment; then the update's deployment is PRIMARY
    and IN_PROGRESS; then ECS's rollback deployment is PRIMARY and the update's is ACTIVE with FAILED. The
    monitor must keep reporting the update's deployment (FAILED), not the rollback one."""
    stubs = stub_clients(monkeypatch, "ecs", "logs")
    e = stubs["ecs"]
    one = {"cluster": "social", "services": ["web"]}
    e.add_response("describe_services", {"services": [web(deployment(OLD, "PRIMARY", "COMPLETED", "", 1))]}, one)
    rolling = web(deployment(NEW, "PRIMARY", "IN_PROGRESS", ""), deployment(OLD, "ACTIVE", "COMPLETED", "", 1))
    e.add_response("describe_services", {"services": [rolling]}, one)
    events = [{"id": str(i), "createdAt": at(i * 10), "message": f"event {i}"} for i in range(7)]
    after = web(
        deployment(BACK, "PRIMARY", "IN_PROGRESS", f"rolling back to {OLD}"),
        deployment(NEW, "ACTIVE", "FAILED", CIRCUIT, failed=3),
        events=events,
    )
    e.add_response("describe_services", {"services": [after]}, one)
    run = plain_run(make_config())
    monitor = rollout.RolloutMonitor(run, ["web"])
    assert monitor.watches["web"].before == OLD
    monitor.tick()
    monitor.tick()
    out = capsys.readouterr().out
    assert "web: 0/1 running, 0 pending, 0 failed (IN_PROGRESS)" in out
    assert "web: 0/1 running, 0 pending, 3 failed (FAILED)" in out
    assert monitor.watches["web"].deployment["id"] == NEW

    # the story: the same service read again, its stopped tasks (the update's first), the log tail
    e.add_response("describe_services", {"services": [after]}, one)
    e.add_response(
        "list_tasks",
        {"taskArns": [task_arn(f"t{i}") for i in range(3)]},
        {"cluster": "social", "serviceName": "web", "desiredStatus": "STOPPED"},
    )
    tasks = [
        {
            "taskArn": task_arn(f"t{i}"),
            "startedBy": NEW,
            "stoppedAt": at(100 - i),
            "stoppedReason": "Essential container in task exited",
            "containers": [{"name": "web", "exitCode": 137, "reason": OOM}],
        }
        for i in range(2)
    ]
    tasks.append({"taskArn": task_arn("t2"), "startedBy": OLD, "stoppedAt": at(1), "stoppedReason": "Scaling"})
    e.add_response("describe_tasks", {"tasks": tasks})
    stubs["logs"].add_response(
        "filter_log_events",
        {"events": [{"timestamp": 1, "message": "Killed", "logStreamName": "web/web/t1", "eventId": "1"}]},
    )
    story = monitor.story("web")
    assert story[0] == f"ECS: {CIRCUIT}"
    assert "stopped task t1" in story[1] and "exit code 137" in story[1] and "OutOfMemoryError" in story[1]
    assert any("last log lines" in line and "Killed" in line for line in story)
    assert next(line for line in story if line.startswith("event")).endswith("event 0")
    e.assert_no_pending_responses()


def test_a_stack_rolled_back_at_a_service_names_the_service_and_says_the_old_version_serves():
    plan = plan_touching_web()
    monitor = rollout.RolloutMonitor.__new__(rollout.RolloutMonitor)
    monitor.run = plain_run(make_config())
    monitor.watches = {"web": rollout.ServiceWatch(before=OLD)}
    monitor.culprits = {}
    monitor.story = lambda service: ["stopped task abc: Essential container in task exited, exit code 1"]  # type: ignore[method-assign]
    failure = StackFailed(
        "social-app",
        "WebService",
        "UPDATE_ROLLBACK_COMPLETE",
        "Error occurred during operation 'ECS Deployment Circuit Breaker was triggered'.",
        what="Stack social-app failed at WebService and was rolled back",
    )
    explained = rollout.explain(failure, plan, monitor, "mastodon v1, streaming v1")
    assert isinstance(explained, StackFailed) and explained.exit_code == 1
    assert "rollout of web failed" in explained.what
    assert "previous version (mastodon v1, streaming v1) is still serving" in explained.what
    assert "Circuit Breaker" in explained.why and "exit code 1" in explained.why
    assert "mastofargate logs web" in explained.fix


def test_a_stuck_stack_is_not_dressed_up_as_a_rollback():
    failure = StackFailed("social-app", "WebService", "UPDATE_ROLLBACK_FAILED", "x", what="stuck")
    monitor = rollout.RolloutMonitor.__new__(rollout.RolloutMonitor)
    monitor.watches = {}
    monitor.culprits = {}
    assert rollout.explain(failure, plan_touching_web(), monitor, "") is failure


def test_service_lines_are_printed_only_when_they_change(capsys):
    out = Output(live=False)
    row = rollout.progress_of("web", {}, deployment(NEW, "PRIMARY", "IN_PROGRESS", ""))
    out.service(row)
    out.service(row)
    assert capsys.readouterr().out.count("web: 0/1") == 1
