"""The deploy's other paths, end to end on the AWS-like emulator (its own instance, beside the main e2e run):
--dry-run, --data-only with ElastiCache (the rediss:// URL), termination protection restored after an
interrupted first deploy, --build, --no-wait, a rollout that outlasts --timeout (exit 3), the data-loss
refusal inside deploy, a change set that waits on exports the data stack has not yet published, and the
certificate branch of preflight.

Faked, with the reason: `--build`'s image pipeline (the emulator's ECR repository hosts are not a registry
anything can push to; the real pipeline is tested against a real local registry in test_images.py). The
stand-in pushes an image manifest per repository into the emulator's ECR and returns the pipeline's own
result type, so everything around it (tags, ordering, the ECR check) is the product's real path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from mastofargate.images.pipeline import ImageResult
from mastofargate.stack.secrets import split
from tests.deploy_sandbox import (
    FAILING_SETUP_IMAGE,
    CliResult,
    Sandbox,
    aws_env,
    create_zone,
    push_fake_images,
    recording,
    register_setup_image,
    run_cli,
    running_sandbox,
    service_images,
    write_config,
)

pytestmark = pytest.mark.xdist_group("deploy-paths")

BUILT = "v4.5.4-built1"
TAG_B = "v4.5.4-b2"


@dataclass
class World:
    sandbox: Sandbox
    tmp: Path
    zone: str
    config: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("deploy-paths")
    with running_sandbox(tmp) as sandbox:
        zone = create_zone()
        config = write_config(tmp / "mastofargate.toml", zone, deployment={"cache": "elasticache"})
        yield World(sandbox, tmp, zone, config)


def deploy(world: World, *args: str, config: Path | None = None) -> CliResult:
    return run_cli("deploy", "--config", str(config or world.config), "--skip-assets", *args)


def tags(tag: str) -> list[str]:
    return ["--mastodon-tag", tag, "--streaming-tag", tag]


def settle(stack: str = "social-app", timeout: float = 60) -> str:
    """Wait until CloudFormation has finished with the stack (after --no-wait or a timed-out deploy)."""
    cfn = boto3.client("cloudformation")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = str(cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"])
        if not status.endswith("_IN_PROGRESS"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"{stack} still in progress after {timeout} s")


def test_a_dry_run_on_an_empty_account_writes_nothing(world: World) -> None:
    with aws_env(world.sandbox.url), recording() as calls:
        result = deploy(world, "--dry-run", *tags(BUILT))
        secrets = boto3.client("secretsmanager").list_secrets()["SecretList"]
    assert result.exit_code == 0, result.output
    assert "social-data: new stack" in result.output and "Dry run: nothing was changed." in result.output
    assert calls.mutating() == []
    assert secrets == []


def test_a_first_install_is_one_command_and_resumes_after_an_interrupt(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`deploy --build` on an empty account: data stack, images, app. Interrupted while the images are
    being built (after the data stack was created), the same command carries on from there; so it does after
    a database setup task that failed (the services stayed at zero, nothing was prepared)."""
    pushed: list[Any] = []

    def interrupted(request: Any, display: Any) -> list[ImageResult]:
        raise KeyboardInterrupt

    def push_images(request: Any, display: Any) -> list[ImageResult]:
        pushed.append(request)
        push_fake_images(BUILT)
        return [
            ImageResult("mastodon", f"repo/mastodon:{BUILT}", BUILT, "pushed", built=True),
            ImageResult("streaming", f"repo/streaming:{BUILT}", BUILT, "pushed", built=True),
            ImageResult("backup", f"repo/backup:{BUILT}", BUILT, "pushed", built=True),
        ]

    with aws_env(world.sandbox.url):
        monkeypatch.setattr("mastofargate.images.push_images", interrupted)
        first = deploy(world, "--build", "--yes")
        data = boto3.client("cloudformation").describe_stacks(StackName="social-data")["Stacks"][0]
        monkeypatch.setattr("mastofargate.images.push_images", push_images)
        good = register_setup_image(FAILING_SETUP_IMAGE)
        with recording() as failed_calls:
            failed = deploy(world, "--build", "--yes")
        ecs = boto3.client("ecs")
        at_zero = {
            s["serviceName"]: s["desiredCount"]
            for s in ecs.describe_services(cluster="social", services=["web", "streaming", "sidekiq"])["services"]
        }
        register_setup_image(good)
        with recording() as calls:
            result = deploy(world, "--build", "--yes")
        running = set(service_images().values())
        app = boto3.client("cloudformation").describe_stacks(StackName="social-app")["Stacks"][0]
        app_params = {p["ParameterKey"]: p["ParameterValue"] for p in app["Parameters"]}
    assert first.exit_code == 130, first.output
    assert app_params["BackupImageTag"] == BUILT  # the third image of the pipeline reaches the app stack
    assert "Interrupted." in first.output and "mastofargate deploy" in first.output
    assert data["StackStatus"] == "CREATE_COMPLETE" and data["EnableTerminationProtection"] is True
    assert failed.exit_code == 1, failed.output
    assert "The database setup failed" in failed.output and "the services stay at zero" in failed.output
    assert "exit code 3" in failed.output and "mastofargate logs dbsetup" in failed.output
    assert at_zero == {"web": 0, "streaming": 0, "sidekiq": 0}
    assert not [c for c in failed_calls.find("RunTask") if "social-dbsetup" not in c.params["taskDefinition"]]
    assert result.exit_code == 0, result.output
    assert "social-data: no changes" in result.output  # resumed: the data stack was not made again
    assert pushed and pushed[0].config.aws.name == "social"
    assert "Building and pushing images" in result.output
    assert running == {BUILT}
    assert calls.find("DescribeImages")  # the pipeline's tags were checked in ECR before anything rolled
    assert "Deployed social.example.org" in result.output


def test_data_only_with_elasticache_stores_the_tls_redis_url(world: World) -> None:
    with aws_env(world.sandbox.url):
        result = deploy(world, "--data-only", "--yes")
        assert result.exit_code == 0, result.output
        sm = boto3.client("secretsmanager")
        redis = split(json.loads(sm.get_secret_value(SecretId="mastofargate/social/server")["SecretString"]))["redis"]
        data = boto3.client("cloudformation").describe_stacks(StackName="social-data")["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in data["Outputs"]}
    assert outputs["CacheHost"]
    assert redis["url"] == f"rediss://:{redis['password']}@{outputs['CacheHost']}:6379"
    assert redis["password"] not in result.output


def test_termination_protection_is_restored_after_an_interrupted_first_deploy(world: World) -> None:
    """An interrupt between the data stack's creation and its protection left it unprotected: the next
    deploy protects it, whatever else it has to do."""
    with aws_env(world.sandbox.url):
        cfn = boto3.client("cloudformation")
        cfn.update_termination_protection(StackName="social-data", EnableTerminationProtection=False)
        result = deploy(world, "--data-only", "--yes")
        protected = cfn.describe_stacks(StackName="social-data")["Stacks"][0]["EnableTerminationProtection"]
    assert result.exit_code == 0, result.output
    assert protected is True
    assert "termination protection enabled on social-data" in result.output


def test_a_change_set_that_would_lose_data_is_refused_inside_deploy(world: World) -> None:
    moved = write_config(world.tmp / "moved" / "mastofargate.toml", world.zone, deployment={"cache": "task"})
    with aws_env(world.sandbox.url), recording() as calls:
        result = deploy(world, "--yes", config=moved)
        cfn = boto3.client("cloudformation")
        left = [cfn.list_change_sets(StackName=s)["Summaries"] for s in ("social-data", "social-app")]
    assert result.exit_code == 2, result.output
    assert "REFUSED: this deploy would replace or remove resources that hold data" in result.output
    assert "Cache" in result.output and "--allow-data-replacement" in result.output
    assert not calls.find("ExecuteChangeSet")
    assert left == [[], []]


def test_no_wait_starts_the_rollout_and_returns(world: World) -> None:
    with aws_env(world.sandbox.url):
        push_fake_images(TAG_B)
        with recording() as calls:
            result = deploy(world, "--no-wait", "--yes", *tags(TAG_B))
        status = boto3.client("cloudformation").describe_stacks(StackName="social-app")["Stacks"][0]["StackStatus"]
        final = settle()
    assert result.exit_code == 0, result.output
    assert "rollout started (--no-wait)" in result.output
    assert "post-deployment migrations NOT run" in result.output
    assert status == "UPDATE_IN_PROGRESS"  # we returned while CloudFormation was still at work
    assert final == "UPDATE_COMPLETE"
    assert not [c for c in calls.find("RunTask") if "social-migrate:" in c.params["taskDefinition"]]


def test_the_asset_export_runs_beside_the_pre_deployment_migrations(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither needs the other, so neither waits for the other; the rollout waits for both. The pre-upgrade
    backup runs beside the export too, and the pre-deployment migrations wait for it. Faked: the export
    itself (its real path is test_images.py's hand-off test), timed, as are the backup and the migration's
    task."""
    from mastofargate.deploy import flow, handoff, jobs

    spans: dict[str, tuple[float, float]] = {}
    run_job = jobs.run_job

    def export(run: Any, tags: Any, *, skip: bool) -> None:
        start = time.monotonic()
        time.sleep(1.5)
        spans["export"] = (start, time.monotonic())

    def timed_job(run: Any, job: str, *args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        try:
            return run_job(run, job, *args, **kwargs)
        finally:
            spans.setdefault(job, (start, time.monotonic()))

    pre_upgrade_backup = flow.pre_upgrade_backup

    def timed_backup(*args: Any, **kwargs: Any) -> str:
        start = time.monotonic()
        try:
            return pre_upgrade_backup(*args, **kwargs)
        finally:
            spans["backup"] = (start, time.monotonic())

    monkeypatch.setattr(handoff, "export_assets", export)
    monkeypatch.setattr(jobs, "run_job", timed_job)
    monkeypatch.setattr(flow, "pre_upgrade_backup", timed_backup)
    with aws_env(world.sandbox.url):
        push_fake_images("v4.5.4-c2")
        with recording() as calls:
            result = run_cli("deploy", "--config", str(world.config), "--yes", *tags("v4.5.4-c2"))
    assert result.exit_code == 0, result.output
    (export_start, export_end), (pre_start, pre_end) = spans["export"], spans["migrate-pre"]
    backup_start, backup_end = spans["backup"]
    assert backup_start < export_end and export_start < pre_end  # the export overlapped backup + migrations
    assert backup_end <= pre_start  # the migrations waited for the backup
    assert calls.find("ExecuteChangeSet")  # and the rollout came after both


def test_a_rollout_that_outlasts_the_timeout_exits_3_and_says_what_goes_on(world: World) -> None:
    slow = "v4.5.4-c3-sandbox-slow-6"
    with aws_env(world.sandbox.url):
        push_fake_images(slow)
        result = deploy(world, "--yes", "--timeout", "2", *tags(slow))
        final = settle()
    assert result.exit_code == 3, result.output
    assert "Gave up waiting for stack social-app after 2 s; it is still UPDATE_IN_PROGRESS" in result.output
    assert "CloudFormation goes on with it" in result.output and "mastofargate status" in result.output
    assert final == "UPDATE_COMPLETE"


def test_an_app_stack_needing_new_data_exports_is_planned_after_the_data_stack(world: World) -> None:
    """Moving Redis from ElastiCache into a task (allowed explicitly): the app stack imports exports the data
    stack publishes only with this update, so CloudFormation cannot plan it first; deploy plans it after."""
    moved = write_config(world.tmp / "moved" / "mastofargate.toml", world.zone, deployment={"cache": "task"})
    with aws_env(world.sandbox.url), recording() as calls:
        result = deploy(world, "--yes", "--allow-data-replacement", config=moved)
    assert result.exit_code == 0, result.output
    assert "social-app: planned after the data stack update" in result.output
    executed = [c.params["ChangeSetName"] for c in calls.find("ExecuteChangeSet")]
    assert len(executed) == 2
    stacks_in_order = [c.params["StackName"] for c in calls.find("CreateChangeSet")]
    assert stacks_in_order.index("social-data") < len(stacks_in_order) - 1
    assert stacks_in_order[-1] == "social-app"


def test_preflight_checks_an_existing_certificate(world: World) -> None:
    with aws_env(world.sandbox.url):
        missing = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
        bad = write_config(world.tmp / "cert" / "mastofargate.toml", world.zone)
        text = bad.read_text().replace(f'hosted_zone_id = "{world.zone}"', f'certificate_arn = "{missing}"')
        bad.write_text(text)
        refused = run_cli("plan", "--config", str(bad))
        arn = boto3.client("acm").request_certificate(DomainName="social.example.org")["CertificateArn"]
        bad.write_text(text.replace(missing, arn))
        planned = run_cli("plan", "--config", str(bad))
    assert refused.exit_code == 2, refused.output
    assert f"Certificate {missing} does not exist" in refused.output
    assert planned.exit_code == 0, planned.output
    assert f"certificate {arn.rsplit('/', 1)[-1]}:" in planned.output


def test_ci_roles_are_applied_and_plan_writes_the_pull_request_summary(world: World) -> None:
    """`deploy --ci-roles` creates the CI stack and prints the roles; afterwards change sets name its
    CloudFormation role, and `plan --summary-json` writes what the pull-request comment shows."""
    ci = write_config(world.tmp / "ci" / "mastofargate.toml", world.zone, deployment={"cache": "task"})
    ci.write_text(ci.read_text() + '\n[ci]\nrepository = "you/social-infra"\n')
    summary = world.tmp / "ci" / "plan.json"
    with aws_env(world.sandbox.url):
        applied = run_cli("deploy", "--config", str(ci), "--ci-roles", "--yes")
        stack = boto3.client("cloudformation").describe_stacks(StackName="social-ci")["Stacks"][0]
        with recording() as calls:
            planned = run_cli("plan", "--config", str(ci), "--summary-json", str(summary))
        nowhere = run_cli("plan", "--config", str(ci), "--summary-json", str(world.tmp / "missing" / "plan.json"))
    assert applied.exit_code == 0, applied.output
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert "deploy role: arn:aws:iam::" in applied.output and "plan role: arn:aws:iam::" in applied.output
    assert planned.exit_code == 0, planned.output
    role = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}["CloudFormationRoleArn"]
    assert {c.params.get("RoleARN") for c in calls.find("CreateChangeSet")} == {role}
    assert nowhere.exit_code == 2 and "Cannot write the plan summary" in nowhere.output, nowhere.output
    data = json.loads(summary.read_text())
    assert [s["stack"] for s in data["stacks"]] == ["social-data", "social-app"]
