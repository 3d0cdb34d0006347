"""`mastofargate deploy` end to end against the local AWS emulator, with the REAL templates.

The emulator is the top-level `sandbox` package: a moto server plus stand-ins for the resource types moto's
CloudFormation cannot create (listed in that module). One first install (module fixture) is shared by the
tests below, which run in file order on one xdist worker and build on each other's state:
install -> no-change deploy -> refused LOCAL_DOMAIN change -> no-TTY refusal -> upgrade -> plan ->
rollback -> failed migration -> circuit-breaker rollback of the stack -> destroy. Every AWS call the CLI makes is
recorded (botocore), so "nothing changed" and "in this order" are asserted on the API calls themselves.

The two failure tests use the emulator's failures on purpose (an image tag containing
`-sandbox-exit-1` makes a one-off task exit 1; `-sandbox-unhealthy` makes ECS's circuit breaker roll the
service back, and CloudFormation, which waits for the service as on AWS, fail it and roll the stack back):
moto alone never fails a task or a rollout.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from mastofargate.deploy.jobs import CREATE_OWNER
from mastofargate.stack.secrets import split
from tests.deploy_sandbox import (
    FAILING_SETUP_IMAGE,
    CliResult,
    Recorder,
    Sandbox,
    aws_env,
    create_zone,
    push_fake_images,
    recording,
    register_setup_image,
    run_cli,
    running_sandbox,
    secret_versions,
    service_images,
    write_config,
)

pytestmark = pytest.mark.xdist_group("deploy-sandbox")

TAG_A = "v4.5.4-a1"
TAG_B = "v4.5.4-b2"
MASTODON_SERVICES = ("web", "streaming", "sidekiq")
OWNER_EMAIL = "admin@example.org"


@dataclass
class World:
    sandbox: Sandbox
    config: Path
    tmp: Path
    install: CliResult
    calls: Recorder


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("deploy-e2e")
    with running_sandbox(tmp) as sandbox:
        config = write_config(tmp / "mastofargate.toml", create_zone())
        data = run_cli("deploy", "--config", str(config), "--data-only", "--yes")
        assert data.exit_code == 0, data.output
        push_fake_images(TAG_A)
        with recording() as calls:
            install = deploy(config, TAG_A, "--yes")
        yield World(sandbox, config, tmp, install, calls)


def deploy(config: Path, tag: str | None = None, *extra: str) -> CliResult:
    tags = ["--mastodon-tag", tag, "--streaming-tag", tag] if tag else []
    return run_cli("deploy", "--config", str(config), *tags, "--skip-assets", *extra)


def mastodon_tags() -> set[str]:
    images = service_images()
    return {images[name] for name in MASTODON_SERVICES}


def run_tasks(calls: Recorder) -> list[tuple[str, list[str]]]:
    """(family, command) of every RunTask, in order."""
    out = []
    for call in calls.find("RunTask"):
        family = call.params["taskDefinition"].rsplit("/", 1)[-1].split(":")[0]
        overrides = call.params.get("overrides", {}).get("containerOverrides", [{}])
        out.append((family, list(overrides[0].get("command", []))))
    return out


def index(calls: Recorder, operation: str, **match: str) -> list[int]:
    """Positions of the calls of `operation` whose params contain `match` (substring of the value)."""
    return [
        i
        for i, c in enumerate(calls.calls)
        if c.operation == operation and all(v in str(c.params.get(k, "")) for k, v in match.items())
    ]


def test_first_install_brings_everything_up_in_order(world: World) -> None:
    assert world.install.exit_code == 0, world.install.output
    assert "Deployed social.example.org" in world.install.output
    assert "https://social.example.org" in world.install.output
    # The database owner setup and db:prepare with the services at zero, then the Owner account, then the
    # services switched on.
    assert run_tasks(world.calls) == [
        ("social-dbsetup", []),  # its command is the task definition's own; only OWNER_SQL is passed
        ("social-migrate", ["bundle", "exec", "rails", "db:prepare"]),
        ("social-tootctl", ["bash", "-o", "pipefail", "-c", CREATE_OWNER, "create-owner", "admin", OWNER_EMAIL]),
        ("social-tootctl", ["tootctl", "accounts", "modify", "admin", "--approve"]),
    ]
    plans = [
        json.dumps(c.params["Parameters"])
        for c in world.calls.find("CreateChangeSet")
        if c.params["StackName"] == "social-app"
    ]
    assert '"ServicesEnabled", "ParameterValue": "false"' in plans[0]
    assert '"ServicesEnabled", "ParameterValue": "true"' in plans[-1]
    executes = index(world.calls, "ExecuteChangeSet")
    prepare = index(world.calls, "RunTask", taskDefinition="social-migrate")[0]
    setup = index(world.calls, "RunTask", taskDefinition="social-dbsetup")
    assert executes[0] < setup[0] < prepare < executes[-1] and len(setup) == 1
    with aws_env(world.sandbox.url):
        ecs = boto3.client("ecs")
        services = ecs.describe_services(cluster="social", services=list(MASTODON_SERVICES))["services"]
        assert {s["serviceName"]: (s["desiredCount"], s["runningCount"]) for s in services} == {
            name: (1, 1) for name in MASTODON_SERVICES
        }
        data = boto3.client("cloudformation").describe_stacks(StackName="social-data")["Stacks"][0]
        assert data["EnableTerminationProtection"] is True


def test_the_owner_password_reaches_no_output_and_no_log(world: World) -> None:
    """tootctl's "New password:" line is dropped inside the container (CREATE_OWNER), so neither the CI
    output nor the tootctl job's log group holds it; the Owner sets a password through the reset mail."""
    assert "New password" not in world.install.output
    assert "https://social.example.org/auth/password/new" in world.install.output
    with aws_env(world.sandbox.url):
        cw = boto3.client("logs")
        group = "/mastofargate/social/tootctl"
        streams = cw.describe_log_streams(logGroupName=group)["logStreams"]
        assert streams
        lines = [
            e["message"]
            for st in streams
            for e in cw.get_log_events(logGroupName=group, logStreamName=st["logStreamName"])["events"]
        ]
    assert "OK" in lines  # tootctl's own output reached the log...
    assert not any(re.search(r"New password: \S", line) for line in lines)  # ...but not the password


def server_secret() -> dict[str, str]:
    value = boto3.client("secretsmanager").get_secret_value(SecretId="mastofargate/social/server")["SecretString"]
    return dict(json.loads(value))


def database_secret() -> dict[str, str]:
    """The database keys of the server's one secret, unprefixed."""
    return split(server_secret())["database"]


def setup_overrides(calls: Recorder) -> list[dict[str, str]]:
    """The environment overrides of every database setup task started."""
    out = []
    for call in calls.find("RunTask"):
        if "social-dbsetup" in call.params["taskDefinition"]:
            (override,) = call.params["overrides"]["containerOverrides"]
            assert set(override) == {"name", "environment"}  # no command: the task definition's own runs
            out.append({e["name"]: e["value"] for e in override["environment"]})
    return out


def log_lines(group: str) -> list[str]:
    cw = boto3.client("logs")
    streams = cw.describe_log_streams(logGroupName=group)["logStreams"]
    return [
        e["message"]
        for st in streams
        for e in cw.get_log_events(logGroupName=group, logStreamName=st["logStreamName"])["events"]
    ]


def assert_no_password_in_setup(calls: Recorder, output: str) -> None:
    """The setup task got the owner's SCRAM verifier; no password reached its override, the output or its log."""
    secret = database_secret()
    (env,) = setup_overrides(calls)
    assert list(env) == ["OWNER_SQL"]
    assert "SCRAM-SHA-256$4096:" in env["OWNER_SQL"] and "CREATE ROLE mastodon_owner LOGIN" in env["OWNER_SQL"]
    passwords = [secret["password"], secret["owner_password"]]
    lines = log_lines("/mastofargate/social/dbsetup")
    assert lines  # the task logged (its command, in the emulator)
    for password in passwords:
        assert password not in json.dumps([c.params for c in calls.calls if c.operation == "RunTask"])
        assert password not in output
        assert not any(password in line for line in lines)


def test_the_owner_role_is_set_up_without_a_password_anywhere_and_recorded(world: World) -> None:
    with aws_env(world.sandbox.url):
        assert_no_password_in_setup(world.calls, world.install.output)
        secret = database_secret()
    assert secret["owner_password"] != secret["password"] and len(secret["owner_password"]) == 32
    assert secret["owner_setup"].startswith("2:")  # SETUP_VERSION and the fingerprint of the password it set
    assert "mastodon_owner owns the database" in world.install.output


def test_a_second_deploy_changes_nothing(world: World) -> None:
    with aws_env(world.sandbox.url):
        before = secret_versions()
        with recording() as calls:
            result = deploy(world.config, None, "--yes")
        after = secret_versions()
    assert result.exit_code == 0, result.output
    assert "No changes" in result.output
    assert before == after
    assert not calls.find("ExecuteChangeSet")
    assert not calls.find("RunTask")  # the owner setup is recorded as done: no task
    assert "database owner: mastodon_owner is set up" in result.output
    assert not calls.find("PutObject")
    # The only writes: change sets CloudFormation computed as empty, and deleted again.
    assert set(calls.mutating()) <= {"cloudformation:CreateChangeSet", "cloudformation:DeleteChangeSet"}


def test_a_local_domain_change_is_refused_and_changes_nothing(world: World) -> None:
    with aws_env(world.sandbox.url):
        zone = boto3.client("route53").list_hosted_zones()["HostedZones"][0]["Id"].rsplit("/", 1)[-1]
        other = write_config(world.tmp / "other" / "mastofargate.toml", zone, server={"domain": "other.example.org"})
        with recording() as calls:
            result = deploy(other, TAG_A, "--yes")
    assert result.exit_code == 2, result.output
    assert "LOCAL_DOMAIN would change from social.example.org to other.example.org" in result.output
    assert "Nothing was changed" in result.output
    assert calls.mutating() == []


def test_without_a_terminal_and_without_yes_nothing_happens(world: World) -> None:
    with aws_env(world.sandbox.url), recording() as calls:
        result = run_cli("deploy", "--config", str(world.config), "--mastodon-tag", TAG_B, "--streaming-tag", TAG_B)
    assert result.exit_code == 2, result.output
    assert "--yes" in result.output
    assert calls.calls == []


def test_an_upgrade_migrates_before_and_after_the_rollout(world: World) -> None:
    with aws_env(world.sandbox.url):
        push_fake_images(TAG_B)
        before = secret_versions()
        with recording() as calls:
            result = deploy(world.config, TAG_B, "--yes")
        assert result.exit_code == 0, result.output
        assert secret_versions() == before
        assert mastodon_tags() == {TAG_B}
    pre = index(calls, "RunTask", taskDefinition="social-migrate-pre")
    rollout = [i for i in index(calls, "ExecuteChangeSet")]
    post = index(calls, "RunTask", taskDefinition="social-migrate:")
    watch = index(calls, "DescribeServices")
    assert len(pre) == 1 and len(rollout) == 1 and len(post) == 1, calls.ops()
    assert pre[0] < rollout[0] < post[0]
    assert not index(calls, "RunTask", taskDefinition="social-dbsetup")  # set up already: no extra task
    assert any(rollout[0] < w < post[0] for w in watch)  # the rollout was watched before post-migrations
    # The pre-deployment migrations ran on the NEW image, before the services had it.
    registered = [c for c in calls.find("RegisterTaskDefinition") if c.params["family"] == "social-migrate-pre"]
    assert registered and registered[0].params["containerDefinitions"][0]["image"].endswith(f":{TAG_B}")
    assert index(calls, "RegisterTaskDefinition", family="social-migrate-pre")[0] < pre[0]


def test_plan_exit_code_reports_changes_and_leaves_no_change_sets(world: World) -> None:
    with aws_env(world.sandbox.url), recording() as calls:
        result = run_cli(
            "plan", "--config", str(world.config), "--mastodon-tag", TAG_A, "--streaming-tag", TAG_A, "--exit-code"
        )
        leftover = boto3.client("cloudformation").list_change_sets(StackName="social-app")["Summaries"]
    assert result.exit_code == 1, result.output
    assert "~ WebService" in result.output
    assert leftover == []
    assert not calls.find("ExecuteChangeSet")


def test_rollback_returns_to_the_previous_tags_without_migrations(world: World) -> None:
    with aws_env(world.sandbox.url):
        # Stand on TAG_B with TAG_A before it in the history, whichever tests ran first ("No changes" if so).
        push_fake_images(TAG_B)
        assert deploy(world.config, TAG_B, "--yes").exit_code == 0
        with recording() as calls:
            result = run_cli("rollback", "--config", str(world.config), "--yes")
        assert result.exit_code == 0, result.output
        assert mastodon_tags() == {TAG_A}
    assert "migrations are not reverted" in result.output
    assert not calls.find("RunTask")


def test_a_failed_migration_leaves_the_old_version_serving(world: World) -> None:
    broken = "v4.5.4-c3-sandbox-exit-1"
    with aws_env(world.sandbox.url):
        push_fake_images(broken)
        with recording() as calls:
            result = deploy(world.config, broken, "--yes")
        assert mastodon_tags() == {TAG_A}
        leftover = boto3.client("cloudformation").list_change_sets(StackName="social-app")["Summaries"]
    assert result.exit_code == 1, result.output
    assert "Pre-deployment migrations failed" in result.output
    assert "still serving" in result.output
    assert "exit code 1" in result.output
    assert "failing on purpose" in result.output  # the task's last log lines
    assert not calls.find("ExecuteChangeSet")
    assert leftover == []


@dataclass
class BreakerRun:
    result: CliResult
    calls: Recorder
    before: dict[str, str]  # service -> task definition ARN before the failed upgrade
    after: dict[str, str]  # service -> task definition ARN of its PRIMARY deployment after it
    stack_status: str
    events: list[dict[str, str]]  # the app stack's events of this operation, oldest first


_breaker: list[BreakerRun] = []


def breaker_run(world: World) -> BreakerRun:
    """One upgrade to an image whose tasks never get healthy (the emulator's `-sandbox-unhealthy` tag), shared by
    the tests below; on AWS, CloudFormation fails the service and rolls the stack back."""
    if _breaker:
        return _breaker[0]
    unhealthy = "v4.5.4-d4-sandbox-unhealthy"
    with aws_env(world.sandbox.url):
        push_fake_images(unhealthy)
        ecs = boto3.client("ecs")
        cfn = boto3.client("cloudformation")
        seen = {e["EventId"] for e in cfn.describe_stack_events(StackName="social-app")["StackEvents"]}
        before = {
            s["serviceName"]: s["taskDefinition"]
            for s in ecs.describe_services(cluster="social", services=list(MASTODON_SERVICES))["services"]
        }
        with recording() as calls:
            result = deploy(world.config, unhealthy, "--yes")
        services = ecs.describe_services(cluster="social", services=list(MASTODON_SERVICES))["services"]
        after = {
            s["serviceName"]: next(d["taskDefinition"] for d in s["deployments"] if d["status"] == "PRIMARY")
            for s in services
        }
        status = cfn.describe_stacks(StackName="social-app")["Stacks"][0]["StackStatus"]
        events = [
            {k: str(e.get(k, "")) for k in ("LogicalResourceId", "ResourceStatus", "ResourceStatusReason")}
            for page in cfn.get_paginator("describe_stack_events").paginate(StackName="social-app")
            for e in page["StackEvents"]
            if e["EventId"] not in seen
        ][::-1]
    _breaker.append(BreakerRun(result, calls, before, after, status, events))
    return _breaker[0]


def test_a_circuit_breaker_failure_rolls_the_stack_back_and_fails_the_deploy(world: World) -> None:
    """The path users meet on AWS: the stack waits for the services, the circuit breaker fails them, and
    CloudFormation rolls the whole stack back; the old version keeps serving."""
    run = breaker_run(world)
    assert run.result.exit_code == 1, run.result.output
    assert run.stack_status == "UPDATE_ROLLBACK_COMPLETE"
    assert run.after == run.before  # every service's PRIMARY deployment is on its old task definition again
    failed = [e for e in run.events if e["ResourceStatus"] == "UPDATE_FAILED"]
    assert failed and all("ECS Deployment Circuit Breaker was triggered" in e["ResourceStatusReason"] for e in failed)
    assert "WebService" in {e["LogicalResourceId"] for e in failed}
    assert run.events[-1] == {
        "LogicalResourceId": "social-app",
        "ResourceStatus": "UPDATE_ROLLBACK_COMPLETE",
        "ResourceStatusReason": "",
    }
    # What the user sees today: which resource failed, CloudFormation's reason, and that the stack rolled back.
    assert "ECS Deployment Circuit Breaker was triggered" in run.result.output
    assert "rolled social-app back" in run.result.output
    assert not index(run.calls, "RunTask", taskDefinition="social-migrate:")  # no post-migrations after a failure


def test_a_circuit_breaker_failure_names_the_stopped_task_and_what_to_do(world: World) -> None:
    """Asserted on the output a user sees: the service, the stopped reason and exit code, that the old version
    still serves, the next command; and the rollout was shown live while the stack was still changing."""
    run = breaker_run(world)
    out = run.result.output
    assert run.result.exit_code == 1, out
    assert re.search(r"The rollout of [a-z, ]*\bweb\b[a-z, ]* failed and CloudFormation rolled social-app back", out)
    assert "The previous version (mastodon v4.5.4-a1, streaming v4.5.4-a1) is still serving" in out
    assert "Essential container in task exited" in out  # a stopped task of the failed deployment
    assert "exit code 1" in out
    assert re.search(r"mastofargate logs (web|streaming|sidekiq)", out) and "mastofargate rollback" in out
    assert re.search(r"web: \d+/\d+ running, \d+ pending, [1-9]\d* failed \(", out)  # its failed tasks, live
    progress = [i for i, c in enumerate(run.calls.calls) if c.operation == "DescribeServices"]
    execute = index(run.calls, "ExecuteChangeSet")[0]
    settled = max(i for i, c in enumerate(run.calls.calls) if c.operation == "DescribeStacks")
    assert any(execute < i < settled for i in progress)  # services read while the stack was still changing


TAG_C = "v4.5.4-c5"
GOOD_SETUP_IMAGE: list[str] = []


def as_an_older_server() -> None:
    """The database keys of a server deployed before Mastodon had its own role: the master password only."""
    sm = boto3.client("secretsmanager")
    old = {k: v for k, v in server_secret().items() if k not in ("database_owner_password", "database_owner_setup")}
    sm.put_secret_value(SecretId="mastofargate/social/server", SecretString=json.dumps(old))


def test_a_failed_owner_setup_on_an_older_server_leaves_the_old_version_serving(world: World) -> None:
    """The setup task runs after the pre-deployment migrations; when it fails, the app change set (which would
    switch Mastodon to the owner role) is dropped, the old version keeps serving, and the error says what to run."""
    with aws_env(world.sandbox.url):
        serving = mastodon_tags()
        as_an_older_server()
        push_fake_images(TAG_C)
        GOOD_SETUP_IMAGE.append(register_setup_image(FAILING_SETUP_IMAGE))
        with recording() as calls:
            result = deploy(world.config, TAG_C, "--yes")
        assert mastodon_tags() == serving
        assert "owner_setup" not in database_secret()
        leftover = boto3.client("cloudformation").list_change_sets(StackName="social-app")["Summaries"]
    assert result.exit_code == 1, result.output
    assert "The database setup failed" in result.output
    assert "is still serving" in result.output
    assert "exit code 3" in result.output
    assert "mastofargate logs dbsetup" in result.output
    assert "added database_owner_password" in result.output  # the secrets step completed the older secret first
    pre = index(calls, "RunTask", taskDefinition="social-migrate-pre")
    setup = index(calls, "RunTask", taskDefinition="social-dbsetup")
    assert len(pre) == 1 and len(setup) == 1 and pre[0] < setup[0]
    assert not calls.find("ExecuteChangeSet")
    assert leftover == []


def test_an_older_server_gets_its_owner_role_before_mastodon_switches_to_it(world: World) -> None:
    with aws_env(world.sandbox.url):
        if not GOOD_SETUP_IMAGE:  # run alone: make the server older here
            as_an_older_server()
            push_fake_images(TAG_C)
        else:
            register_setup_image(GOOD_SETUP_IMAGE[0])
        plan = run_cli("plan", "--config", str(world.config), "--mastodon-tag", TAG_C, "--streaming-tag", TAG_C)
        dry = deploy(world.config, TAG_C, "--yes", "--dry-run")
        with recording() as calls:
            result = deploy(world.config, TAG_C, "--yes")
        assert result.exit_code == 0, result.output
        assert mastodon_tags() == {TAG_C}
        assert_no_password_in_setup(calls, result.output)
        assert database_secret()["owner_setup"].startswith("2:")
        with recording() as again:
            second = deploy(world.config, TAG_C, "--yes")
    assert plan.exit_code == 0, plan.output
    assert "database owner: social-dbsetup would run" in plan.output
    assert "Mastodon still logs in as the master user" in plan.output
    assert dry.exit_code == 0 and "database owner: social-dbsetup would run" in dry.output
    pre = index(calls, "RunTask", taskDefinition="social-migrate-pre")
    setup = index(calls, "RunTask", taskDefinition="social-dbsetup")
    app_execute = index(calls, "ExecuteChangeSet")[-1]  # the app stack's (the data stack, if changed, goes first)
    post = index(calls, "RunTask", taskDefinition="social-migrate:")
    assert len(setup) == 1 and pre[0] < setup[0] < app_execute < post[0]
    assert second.exit_code == 0 and not again.find("RunTask")


def test_destroy_without_delete_data_keeps_the_data(world: World) -> None:
    with aws_env(world.sandbox.url):
        refused = run_cli("destroy", "--config", str(world.config), "--yes", "--delete-data")
        assert refused.exit_code == 2, refused.output
        result = run_cli("destroy", "--config", str(world.config), "--yes")
        assert result.exit_code == 0, result.output
        cfn = boto3.client("cloudformation")
        stacks = {s["StackName"]: s["StackStatus"] for s in cfn.describe_stacks()["Stacks"]}
        assert "social-app" not in stacks
        assert stacks["social-data"].endswith("_COMPLETE")
        sm = boto3.client("secretsmanager")
        assert "DeletedDate" not in sm.describe_secret(SecretId="mastofargate/social/server")
        assert boto3.client("rds").describe_db_instances()["DBInstances"]
        outputs = {
            o["OutputKey"]: o["OutputValue"]
            for o in cfn.describe_stacks(StackName="social-data")["Stacks"][0]["Outputs"]
        }
        boto3.client("s3").head_bucket(Bucket=outputs["MediaBucketName"])
    assert "Kept social-data" in result.output
