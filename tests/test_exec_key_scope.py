"""The tasks' grant on the server's one KMS key opens ECS Exec sessions and nothing the key encrypts.

Issue 10 gave ECS Exec its own key so that "a task can decrypt sessions, and nothing of the data"; issue 12
keeps that property with ONE key by scoping the tasks' kms:Decrypt with Session Manager's encryption context
(stack/keys.py). These tests evaluate the generated IAM policies with tests/iam_policy.py — a small evaluator
of AWS's documented rules, NOT AWS: moto neither evaluates IAM conditions nor KMS encryption-context keys, and
no real KMS runs here. The evaluator refuses constructs it does not know, so a condition it cannot read fails
the test instead of passing it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import COMBINATIONS, combo_id
from tests.iam_policy import ACCOUNT, REGION, Request, decide, resolve
from tests.test_templates import stacks

KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
EXPORTS = {"social-data:KeyArn": KEY_ARN}
TASK = "ecs:social_0123456789abcdef0123456789abcdef_0123456789abcdef0123456789abcdef-3811061257"
SESSION = "ecs-execute-command-0acebb01a1ed41142"
EXEC_CONTEXT = {"kms:EncryptionContext:aws:ssm:SessionId": SESSION, "kms:EncryptionContext:aws:ssm:TargetId": TASK}
# What the services that share the key send as encryption context (their AWS documentation), and contexts an
# attacker holding the role might try: none may open with the tasks' grant.
DATA_CONTEXTS: dict[str, dict[str, str]] = {
    "none": {},
    "CloudWatch Logs": {"kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/x"},
    "S3 (backups)": {"kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::social-backups/dumps/x"},
    "EFS": {"kms:EncryptionContext:aws:elasticfilesystem:filesystem:id": "fs-0123456789abcdef0"},
    "RDS": {"kms:EncryptionContext:aws:rds:db-id": "db-ABCDEFGHIJKLMNOP"},
    "SNS": {"kms:EncryptionContext:aws:sns:topicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:social-alarms"},
    "only a session id": {"kms:EncryptionContext:aws:ssm:SessionId": SESSION},
    "only a target": {"kms:EncryptionContext:aws:ssm:TargetId": TASK},
    "another cluster's session": {**EXEC_CONTEXT, "kms:EncryptionContext:aws:ssm:TargetId": "ecs:other_1_2"},
    "a cluster whose name starts alike": {
        **EXEC_CONTEXT,
        "kms:EncryptionContext:aws:ssm:TargetId": "ecs:social-old_1_2",
    },
    "an EC2 instance's session": {**EXEC_CONTEXT, "kms:EncryptionContext:aws:ssm:TargetId": "i-0123456789abcdef0"},
}
combos = pytest.mark.parametrize("combo", COMBINATIONS, ids=[combo_id(c) for c in COMBINATIONS])


def _resolve_imports(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"Fn::ImportValue"}:
            return EXPORTS.get(value["Fn::ImportValue"], f"imported:{value['Fn::ImportValue']}")
        return {k: _resolve_imports(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_imports(v) for v in value]
    return value


def _role_policies(app: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every role of the app stack whose policy has the Exec key grant: its identity policies, resolved."""
    out = {}
    for title, res in app["Resources"].items():
        if res["Type"] != "AWS::IAM::Role":
            continue
        docs = [p["PolicyDocument"] for p in res["Properties"].get("Policies", [])]
        if not any(s.get("Sid") == "EcsExecKey" for d in docs for s in d["Statement"]):
            continue
        out[title] = [resolve(_exec_free(_resolve_imports(d))) for d in docs]
    return out


def _exec_free(doc: dict[str, Any]) -> dict[str, Any]:
    """Statements the evaluator cannot resolve (Fn::Join/GetAtt of other resources) name no KMS key: they are
    dropped only if they cannot touch KMS, and the test fails otherwise."""
    kept = []
    for s in doc["Statement"]:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        if any(a.lower().startswith("kms:") or a == "*" for a in actions):
            kept.append(s)
    return {**doc, "Statement": kept}


def _data_key_grants(policies: list[dict[str, Any]]) -> list[str]:
    """Sids of the statements that grant the key WITHOUT the Exec condition (the backup jobs' own access)."""
    return [s["Sid"] for d in policies for s in d["Statement"] if s.get("Sid") != "EcsExecKey"]


@combos
def test_task_roles_open_exec_sessions_of_their_cluster(combo: tuple) -> None:
    roles = _role_policies(stacks(combo)["app"])
    assert roles, "no role has ECS Exec"
    for title, policies in roles.items():
        assert decide(policies, Request("kms:Decrypt", KEY_ARN, EXEC_CONTEXT)) == "Allow", title


@combos
def test_the_exec_grant_alone_decrypts_nothing_else(combo: tuple) -> None:
    """The Exec statement in isolation, in every role that has it: no other context, no other action."""
    for title, policies in _role_policies(stacks(combo)["app"]).items():
        statements = [s for d in policies for s in d["Statement"] if s["Sid"] == "EcsExecKey"]
        grant = [{"Version": "2012-10-17", "Statement": statements}]
        for name, context in DATA_CONTEXTS.items():
            assert decide(grant, Request("kms:Decrypt", KEY_ARN, context)) == "ImplicitDeny", (title, name)
        for action in ("kms:GenerateDataKey", "kms:Encrypt", "kms:ReEncryptFrom", "kms:CreateGrant"):
            assert decide(grant, Request(action, KEY_ARN, EXEC_CONTEXT)) == "ImplicitDeny", (title, action)


@combos
def test_mastodon_roles_cannot_decrypt_the_data(combo: tuple) -> None:
    """The roles of Mastodon's processes (web, Sidekiq, one-off jobs, the front task with Caddy) have no other
    grant on the key: as a whole, they decrypt nothing of what EFS, RDS, S3, Logs or SNS stored with it. (The
    roles of tasks holding Postgres keep pgBackRest's grant on the key: that is their backup job, not Exec.)"""
    checked = 0
    for title, policies in _role_policies(stacks(combo)["app"]).items():
        if _data_key_grants(policies):
            assert title in {"ServerTaskRole", "PostgresTaskRole"}, (title, _data_key_grants(policies))
            continue
        checked += 1
        for name, context in DATA_CONTEXTS.items():
            assert decide(policies, Request("kms:Decrypt", KEY_ARN, context)) == "ImplicitDeny", (title, name)
    assert checked, "no Mastodon role was checked"
