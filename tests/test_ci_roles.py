"""The CI stack's roles are sufficient and no broader than needed.

Recorded, not guessed: a full deploy against the local AWS emulator (mastofargate.deploy.sandbox: data
stack, first install, upgrade) and a plan run, every boto3 call captured (tests/deploy_sandbox.recording).
Each call becomes the IAM requests AWS authorizes (tests/iam_policy.requests_for) and is evaluated against
the generated role policies with the evaluator in tests/iam_policy.py:
  - the deploy role allows every call of the deploy, and none of them on another server's resources;
  - the plan role allows the plan's calls except reading a secret's value, and never executes a change set;
  - the images role pushes to the two repositories and nothing else;
  - each role is trusted only for the configured repository and its kind of workflow run.
Asset export (a Docker pull from ECR and uploads to the media bucket) needs a real registry the emulator
does not have; its requests are written out by hand below, from AWS's documented permissions.
policy_sentry (installed with checkov) checks that every action exists and every condition key applies.
cfn-lint and checkov validate the CI template like every other (tests/test_lint.py's pattern).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from mastofargate.config import Config, parse_config
from mastofargate.deploy.ci_roles import ci_roles_stack
from mastofargate.render import template_text
from mastofargate.stack import build_all
from tests.iam_policy import ACCOUNT, REGION, Request, decide, pattern, requests_for, role_policies
from tests.moto_server import aws_endpoint, moto_server  # noqa: F401

pytestmark = pytest.mark.xdist_group("ci-roles")

REPO = "example/my-server"
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
CFN_ROLE = f"arn:aws:iam::{ACCOUNT}:role/social-ci-cloudformation"
CALLS_FILE = Path(__file__).parent / "data" / "ci_deploy_calls.txt"
TAG_A, TAG_B = "v4.5.4-a1", "v4.5.4-b2"


def ci_config(zone: str = "Z0123456789EXAMPLE", **ci: Any) -> Config:
    return parse_config(
        {
            "server": {"domain": "social.example.org", "admin_email": "admin@example.org"},
            "aws": {"name": "social", "region": REGION, "hosted_zone_id": zone},
            "deployment": {"profile": "personal", "database": "rds", "cache": "task"},
            "ci": {"repository": REPO, **ci},
        }
    )


@dataclass
class Recorded:
    zone: str
    deploy: list[Request]
    plan: list[Request]


def _requests(calls: list[Any]) -> list[Request]:
    change_sets: dict[str, str] = {}
    out: list[Request] = []
    for c in calls:
        params = dict(c.params)
        if c.service == "cloudformation" and c.operation == "CreateChangeSet" and "RoleARN" not in params:
            # What the wired deploy passes once the CI stack exists (deploy/ci_roles.change_set_role_arn).
            params["RoleARN"] = CFN_ROLE
        out += requests_for(c.service, c.operation, params, change_sets)
    return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    from tests.deploy_sandbox import (
        create_zone,
        push_fake_images,
        recording,
        run_cli,
        running_sandbox,
        write_config,
    )

    tmp = tmp_path_factory.mktemp("ci-roles")
    with running_sandbox(tmp):
        zone = create_zone()
        config = str(write_config(tmp / "mastofargate.toml", zone))
        with recording() as deploy_calls:
            assert run_cli("deploy", "--config", config, "--data-only", "--yes").exit_code == 0
            for tag in (TAG_A, TAG_B):
                push_fake_images(tag)
                tags = ["--mastodon-tag", tag, "--streaming-tag", tag]
                result = run_cli("deploy", "--config", config, *tags, "--skip-assets", "--yes")
                assert result.exit_code == 0, result.output
        with recording() as plan_calls:
            result = run_cli("plan", "--config", config, "--mastodon-tag", TAG_B, "--streaming-tag", TAG_B)
            assert result.exit_code == 0, result.output
        calls = [
            c for c in deploy_calls.calls if not (c.service == "ecr" and c.operation == "PutImage")
        ]  # stand-in push
        yield Recorded(zone, _requests(calls), _requests(plan_calls.calls))


def _stack(config: Config) -> dict[str, Any]:
    return ci_roles_stack(config).template


def _role(config: Config, logical_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    return role_policies(_stack(config), logical_id, {"GitHubOidcProvider": PROVIDER})


def _asset_export(zone: str) -> list[Request]:
    """Asset export's requests (not recorded: the emulator has no registry to pull from)."""
    repo = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/social/mastodon"
    media = f"arn:aws:s3:::social-media-{ACCOUNT}-{REGION}"
    return [
        Request("ecr:GetAuthorizationToken", "*"),
        Request("ecr:BatchGetImage", repo),
        Request("ecr:GetDownloadUrlForLayer", repo),
        Request("s3:ListBucket", media, {"s3:prefix": "assets/"}),
        Request("s3:PutObject", f"{media}/assets/packs/app.js"),
    ]


def test_deploy_role_allows_every_call_of_a_full_deploy(recorded: Recorded) -> None:
    policies, _ = _role(ci_config(recorded.zone), "DeployRole")
    requests = recorded.deploy + _asset_export(recorded.zone)
    assert len(recorded.deploy) > 100
    denied = [f"{r.call}: {r.action} {r.resource}" for r in requests if decide(policies, r) != "Allow"]
    assert denied == []


def test_deploy_role_denies_the_same_calls_on_another_server(recorded: Recorded) -> None:
    policies, _ = _role(ci_config(recorded.zone), "DeployRole")
    checked = 0
    for req in recorded.deploy + _asset_export(recorded.zone):
        other = req.replace("social", "other")
        if other.resource == "*" or other == req:
            continue  # no resource-level permission in IAM, or nothing server-specific (the hosted zone)
        checked += 1
        assert decide(policies, other) != "Allow", f"{other.action} {other.resource} ({req.call})"
    assert checked > 100


def test_change_sets_must_be_applied_with_the_cloudformation_role(recorded: Recorded) -> None:
    stack = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/social-app/x"
    for logical_id in ("DeployRole", "PlanRole"):
        policies, _ = _role(ci_config(recorded.zone), logical_id)
        create = "cloudformation:CreateChangeSet"
        assert decide(policies, Request(create, stack, {"cloudformation:RoleArn": CFN_ROLE})) == "Allow"
        assert decide(policies, Request(create, stack)) == "ImplicitDeny"  # with the caller's own permissions
        admin = f"arn:aws:iam::{ACCOUNT}:role/Admin"
        assert decide(policies, Request(create, stack, {"cloudformation:RoleArn": admin})) == "ImplicitDeny"
        ci_stack = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/social-ci/x"
        assert decide(policies, Request(create, ci_stack, {"cloudformation:RoleArn": CFN_ROLE})) != "Allow"


def test_plan_role_plans_and_never_applies_or_reads_secrets(recorded: Recorded) -> None:
    policies, _ = _role(ci_config(recorded.zone), "PlanRole")
    assert any(r.action == "cloudformation:CreateChangeSet" for r in recorded.plan)
    verdicts = {(r.action, r.resource): decide(policies, r) for r in recorded.plan}
    # A pull request's code runs with this role: it must not read a secret's value. The plan reads them
    # today (the lead is told to stop that): those requests, and only those, are refused.
    refused = {k for k, v in verdicts.items() if v != "Allow"}
    assert {a for a, _ in refused} <= {"secretsmanager:GetSecretValue"}
    assert all(verdicts[k] == "ExplicitDeny" for k in refused)
    stack = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/social-app/x"
    for action in ("cloudformation:ExecuteChangeSet", "cloudformation:UpdateStack", "cloudformation:DeleteStack"):
        assert decide(policies, Request(action, stack)) == "ExplicitDeny"
    for req in recorded.deploy:
        if req.action == "s3:PutObject" and "/templates/" in req.resource:
            continue  # a change set of the app stack reads its template from the deploy bucket
        if req.action.split(":")[1].startswith(("Execute", "Run", "Put", "Register", "Update", "Stop", "Create")):
            if req.action == "cloudformation:CreateChangeSet":
                continue
            assert decide(policies, req) != "Allow", f"{req.action} {req.resource}"


def test_images_role_pushes_to_its_two_repositories_only() -> None:
    policies, _ = _role(ci_config(), "ImagesRole")
    push = ["BatchCheckLayerAvailability", "InitiateLayerUpload", "UploadLayerPart", "CompleteLayerUpload", "PutImage"]
    for image in ("mastodon", "streaming"):
        repo = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/social/{image}"
        for op in [*push, "BatchGetImage", "DescribeImages"]:
            assert decide(policies, Request(f"ecr:{op}", repo)) == "Allow", op
            assert decide(policies, Request(f"ecr:{op}", repo.replace("social", "other"))) == "ImplicitDeny"
        for op in ("DeleteRepository", "BatchDeleteImage", "SetRepositoryPolicy", "PutLifecyclePolicy"):
            assert decide(policies, Request(f"ecr:{op}", repo)) == "ImplicitDeny", op
    assert decide(policies, Request("ecr:GetAuthorizationToken", "*")) == "Allow"
    stack = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/social-app/x"
    assert decide(policies, Request("cloudformation:DescribeStacks", stack)) == "ImplicitDeny"


def _web_identity(sub: str, aud: str = "sts.amazonaws.com", provider: str = PROVIDER) -> Request:
    ctx = {"token.actions.githubusercontent.com:sub": sub, "token.actions.githubusercontent.com:aud": aud}
    return Request("sts:AssumeRoleWithWebIdentity", "*", ctx, ("Federated", provider))


@pytest.mark.parametrize(
    ("logical_id", "sub"),
    [
        ("PlanRole", f"repo:{REPO}:pull_request"),
        ("ImagesRole", f"repo:{REPO}:ref:refs/heads/main"),
        ("DeployRole", f"repo:{REPO}:environment:production"),
    ],
)
def test_each_role_trusts_one_repository_and_one_kind_of_run(logical_id: str, sub: str) -> None:
    _, trust = _role(ci_config(), logical_id)
    assert decide([trust], _web_identity(sub)) == "Allow"
    others = [
        sub.replace(REPO, "example/other"),
        sub.replace(REPO, "evil/my-server"),
        f"repo:{REPO}:ref:refs/heads/feature",
        f"repo:{REPO}:environment:staging",
        f"repo:{REPO}:pull_request" if logical_id != "PlanRole" else f"repo:{REPO}:ref:refs/heads/main",
    ]
    for other in others:
        assert decide([trust], _web_identity(other)) == "ImplicitDeny", other
    assert decide([trust], _web_identity(sub, aud="https://example.org")) == "ImplicitDeny"
    assert decide([trust], _web_identity(sub, provider=PROVIDER.replace(ACCOUNT, "999999999999"))) == "ImplicitDeny"


def test_cloudformation_role_is_for_cloudformation_and_cannot_touch_the_ci_stack() -> None:
    policies, trust = _role(ci_config(), "CloudFormationRole")
    service = Request("sts:AssumeRole", "*", {}, ("Service", "cloudformation.amazonaws.com"))
    assert decide([trust], service) == "Allow"
    assert decide([trust], Request("sts:AssumeRole", "*", {}, ("Service", "ecs-tasks.amazonaws.com"))) != "Allow"
    ci_role = f"arn:aws:iam::{ACCOUNT}:role/social-ci-deploy"
    assert decide(policies, Request("iam:PutRolePolicy", ci_role)) == "ExplicitDeny"
    app_role = f"arn:aws:iam::{ACCOUNT}:role/social-app-ExecutionRole-ABC"
    assert decide(policies, Request("iam:CreateRole", app_role)) == "Allow"
    assert decide(policies, Request("iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/Admin")) == "ImplicitDeny"


def test_existing_oidc_provider_is_used_instead_of_a_new_one() -> None:
    arn = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
    template = _stack(ci_config(oidc_provider_arn=arn))
    assert "GitHubOidcProvider" not in template["Resources"]
    _, trust = role_policies(template, "PlanRole")
    assert decide([trust], _web_identity(f"repo:{REPO}:pull_request", provider=arn)) == "Allow"
    assert "GitHubOidcProvider" in _stack(ci_config())["Resources"]


def test_every_action_and_condition_key_exists() -> None:
    """Against policy_sentry's IAM catalogue: a misspelt action or condition key would never match, so a
    Deny would silently not apply and an Allow would silently fail."""
    from policy_sentry.querying.actions import get_action_data
    from policy_sentry.querying.conditions import get_condition_keys_for_service

    template = _stack(ci_config())
    for logical_id, res in template["Resources"].items():
        if res["Type"] != "AWS::IAM::Role":
            continue
        policies, _ = role_policies(template, logical_id, {"GitHubOidcProvider": PROVIDER})
        for st in (s for doc in policies for s in doc["Statement"]):
            for action in st.get("Action", st.get("NotAction", [])):
                service, name = action.split(":")
                data = get_action_data(service, name)
                assert data and data.get(service), f"{logical_id}: {action} is not an IAM action"
            for block in st.get("Condition", {}).values():
                for key in block:
                    service = key.split(":")[0]
                    known = {k.lower() for k in get_condition_keys_for_service(service)}
                    assert service == "aws" or key.lower() in known, f"{logical_id}: no condition key {key}"


def test_recorded_calls_are_committed_for_review(recorded: Recorded) -> None:
    """tests/data/ci_deploy_calls.txt lists what a deploy calls, so a change in the deploy's calls (and so
    in what the deploy role must allow) shows in review. MASTOFARGATE_RECORD_CI_CALLS=1 rewrites it."""
    lines = sorted({pattern(r) for r in recorded.deploy} | {"# plan: " + pattern(r) for r in recorded.plan})
    if os.environ.get("MASTOFARGATE_RECORD_CI_CALLS") == "1":
        CALLS_FILE.parent.mkdir(exist_ok=True)
        CALLS_FILE.write_text("\n".join(lines) + "\n")
    committed = set(CALLS_FILE.read_text().splitlines())
    missing = [line for line in lines if line not in committed]
    assert missing == [], "new calls: review the CI roles, then rerun with MASTOFARGATE_RECORD_CI_CALLS=1"


# ------------------------------------------------------------------------------------------ validators
@cache
def ci_templates() -> dict[str, str]:
    arn = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
    out = {}
    for label, cfg in {
        "new-provider": ci_config(),
        "existing-provider": ci_config(oidc_provider_arn=arn, branch="release/live"),
        "certificate": parse_config(
            {
                "server": {"domain": "social.example.org", "admin_email": "admin@example.org"},
                "aws": {
                    "name": "social",
                    "certificate_arn": f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/"
                    "12345678-1234-1234-1234-123456789012",
                },
                "deployment": {"profile": "large", "database": "task", "cache": "task"},
                "ci": {"repository": REPO},
            }
        ),
    }.items():
        out[label] = template_text(build_all(cfg)["ci"], "yaml")
    return out


@pytest.mark.lint
@pytest.mark.parametrize("label", ["new-provider", "existing-provider", "certificate"])
def test_cfn_lint_reports_nothing(label: str) -> None:
    from cfnlint.api import ManualArgs, lint

    matches = lint(ci_templates()[label], config=ManualArgs(regions=["us-east-1"]))
    assert [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches if m.rule.id[0] in "EW"] == []


@pytest.mark.lint
def test_checkov_reports_no_failed_check(tmp_path: Path) -> None:
    for label, text in ci_templates().items():
        (tmp_path / f"{label}.yaml").write_text(text)
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "checkov"),
            "-d",
            str(tmp_path),
            "--framework",
            "cloudformation",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(result.stdout)
    report = report if isinstance(report, dict) else report[0]
    failed = [f"{r['check_id']} {r['resource']}" for r in report["results"].get("failed_checks", [])]
    assert failed == []
    assert report["summary"]["passed"] > 50 and report["summary"]["parsing_errors"] == 0
    for skipped in report["results"].get("skipped_checks", []):
        assert skipped["resource"].endswith("CloudFormationRole"), skipped["check_id"]  # the others skip nothing
        assert skipped.get("check_result", {}).get("suppress_comment"), skipped["check_id"]


def test_synth_writes_the_ci_stack_and_cost_prices_it(tmp_path: Path) -> None:
    from mastofargate.cost import estimate
    from mastofargate.render import render_all

    cfg = ci_config()
    files = {f.path for f in render_all(build_all(cfg), "social")}
    assert "cfn/social-ci.yaml" in files
    assert estimate(cfg, build_all(cfg)).total_usd_month > 0  # the OIDC provider and roles are free
    assert "ci" not in build_all(ci_config().model_copy(update={"ci": cfg.ci.model_copy(update={"repository": None})}))


# ------------------------------------------------------------------------------------------ deploy/ci_roles
@pytest.fixture
def moto(aws_endpoint: str) -> str:  # noqa: F811
    return aws_endpoint


def test_ci_roles_stack_applies_and_names_the_role_for_change_sets(moto: str) -> None:
    """The CI stack created from ci_roles_stack() in the moto server (moto's CloudFormation has no OIDC
    provider type, so the config names an existing provider); then the deploy reads the role from it."""
    import boto3

    from mastofargate.deploy.ci_roles import change_set_role_arn, role_arns
    from mastofargate.errors import UsageError
    from mastofargate.target import Target

    cfg = ci_config(oidc_provider_arn=PROVIDER)
    target = Target(cfg)
    assert change_set_role_arn(target) is None and role_arns(target) == {}
    stack = ci_roles_stack(cfg)
    assert stack.stack_name == "social-ci" and stack.parameters == {} and len(stack.body) < 51_200
    boto3.client("cloudformation").create_stack(
        StackName=stack.stack_name, TemplateBody=stack.body, Capabilities=list(stack.capabilities)
    )
    target = Target(cfg)
    arns = role_arns(target)
    assert set(arns) == {"plan", "images", "deploy", "cloudformation"}
    assert change_set_role_arn(target) == arns["cloudformation"]
    assert arns["cloudformation"].endswith(":role/social-ci-cloudformation")
    assert arns["deploy"].endswith(":role/social-ci-deploy")
    without = cfg.model_copy(update={"ci": cfg.ci.model_copy(update={"repository": None})})
    with pytest.raises(UsageError, match="no repository"):
        ci_roles_stack(without)


def test_deploy_role_may_start_the_database_setup_task_and_pass_only_its_role() -> None:
    """RunTask of the data stack's `NAME-dbsetup` needs iam:PassRole on its execution role (ECS checks it at
    RunTask; the recorded calls do not show it): exactly that role of the data stack, only to ECS tasks."""
    policies, _ = _role(ci_config(), "DeployRole")
    task = Request(
        "ecs:RunTask",
        f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/social-dbsetup:3",
        {"ecs:cluster": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/social"},
    )
    assert decide(policies, task) == "Allow"
    role = f"arn:aws:iam::{ACCOUNT}:role/social-data-dbsetup-execution"
    to_ecs = {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    assert decide(policies, Request("iam:PassRole", role, to_ecs)) == "Allow"
    assert decide(policies, Request("iam:PassRole", role, {"iam:PassedToService": "lambda.amazonaws.com"})) != "Allow"
    for other in ("social-data-BackupRole-ABC123", "other-data-dbsetup-execution"):
        assert decide(policies, Request("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/{other}", to_ecs)) != "Allow"
