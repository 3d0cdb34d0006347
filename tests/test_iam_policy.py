"""The small IAM evaluator the CI-role tests rely on: AWS's documented evaluation rules, and a refusal to
evaluate what it does not understand (which must never become an Allow)."""

from __future__ import annotations

import pytest

from tests.iam_policy import Request, decide, requests_for, resolve

BUCKET = "arn:aws:s3:::b"


def doc(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def test_explicit_deny_wins_over_allow_and_default_is_deny() -> None:
    allow = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
    deny = {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": f"{BUCKET}/*"}
    assert decide([doc(allow, deny)], Request("s3:DeleteObject", f"{BUCKET}/k")) == "ExplicitDeny"
    assert decide([doc(allow), doc(deny)], Request("s3:GetObject", f"{BUCKET}/k")) == "Allow"
    assert decide([doc(deny)], Request("s3:GetObject", f"{BUCKET}/k")) == "ImplicitDeny"


def test_wildcards_case_and_not_elements() -> None:
    st = {"Effect": "Allow", "Action": "ECS:describe*", "Resource": "arn:aws:ecs:*:1:service/social/*"}
    assert decide([doc(st)], Request("ecs:DescribeServices", "arn:aws:ecs:us-east-1:1:service/social/web")) == "Allow"
    assert decide([doc(st)], Request("ecs:DescribeServices", "arn:aws:ecs:us-east-1:1:service/Social/web")) != "Allow"
    assert decide([doc(st)], Request("ecs:UpdateService", "arn:aws:ecs:us-east-1:1:service/social/web")) != "Allow"
    not_action = {"Effect": "Allow", "NotAction": "iam:*", "NotResource": f"{BUCKET}/secret"}
    assert decide([doc(not_action)], Request("s3:GetObject", f"{BUCKET}/k")) == "Allow"
    assert decide([doc(not_action)], Request("s3:GetObject", f"{BUCKET}/secret")) == "ImplicitDeny"
    assert decide([doc(not_action)], Request("iam:PassRole", "*")) == "ImplicitDeny"


def test_conditions() -> None:
    st = {
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": BUCKET,
        "Condition": {"StringLike": {"s3:prefix": ["assets/*"]}},
    }
    assert decide([doc(st)], Request("s3:ListBucket", BUCKET, {"s3:prefix": "assets/x"})) == "Allow"
    assert decide([doc(st)], Request("s3:ListBucket", BUCKET, {"s3:prefix": "media/x"})) == "ImplicitDeny"
    assert decide([doc(st)], Request("s3:ListBucket", BUCKET)) == "ImplicitDeny"  # key absent: no match
    if_exists = {**st, "Condition": {"StringLikeIfExists": {"s3:prefix": "assets/*"}}}
    assert decide([doc(if_exists)], Request("s3:ListBucket", BUCKET)) == "Allow"
    arn = {**st, "Condition": {"ArnLike": {"ecs:cluster": "arn:aws:ecs:*:1:cluster/social"}}}
    assert (
        decide([doc(arn)], Request("s3:ListBucket", BUCKET, {"ecs:cluster": "arn:aws:ecs:eu-west-1:1:cluster/social"}))
        == "Allow"
    )
    assert (
        decide([doc(arn)], Request("s3:ListBucket", BUCKET, {"ecs:cluster": "arn:aws:ecs:eu-west-1:1:cluster/other"}))
        != "Allow"
    )


def test_what_it_does_not_understand_raises() -> None:
    odd = {
        "Effect": "Allow",
        "Action": "s3:*",
        "Resource": "*",
        "Condition": {"DateLessThan": {"aws:CurrentTime": "x"}},
    }
    with pytest.raises(ValueError, match="not supported"):
        decide([doc(odd)], Request("s3:GetObject", BUCKET))
    with pytest.raises(ValueError, match="policy variables"):
        decide(
            [doc({"Effect": "Allow", "Action": "s3:*", "Resource": "${aws:username}"})], Request("s3:GetObject", BUCKET)
        )
    with pytest.raises(ValueError, match="intrinsic"):
        resolve({"Fn::GetAtt": ["Role", "Arn"]})
    with pytest.raises(KeyError, match="no IAM mapping"):
        requests_for("lambda", "Invoke", {}, {})


def test_recorded_calls_become_iam_requests() -> None:
    sets: dict[str, str] = {}
    (create,) = requests_for(
        "cloudformation", "CreateChangeSet", {"StackName": "social-app", "ChangeSetName": "cs1", "RoleARN": "r"}, sets
    )
    assert create.context == {"cloudformation:RoleArn": "r"} and "stack/social-app/" in create.resource
    (execute,) = requests_for(
        "cloudformation",
        "ExecuteChangeSet",
        {"ChangeSetName": "arn:aws:cloudformation:us-east-1:1:changeSet/cs1/x"},
        sets,
    )
    assert "stack/social-app/" in execute.resource
    run = requests_for("ecs", "RunTask", {"cluster": "social", "taskDefinition": "social-migrate:3"}, sets)
    assert run[0].resource.endswith("task-definition/social-migrate:1") and run[0].context["ecs:cluster"].endswith(
        "cluster/social"
    )
    head = requests_for("s3", "HeadObject", {"Bucket": "b", "Key": "k"}, sets)
    assert (head[0].action, head[0].resource) == ("s3:GetObject", "arn:aws:s3:::b/k")
    assert requests_for("sts", "GetCallerIdentity", {}, sets) == []
