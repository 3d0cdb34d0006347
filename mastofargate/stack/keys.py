"""The server's one customer-managed KMS key, and who may use it for what.

One key encrypts the log groups (ECS Exec transcripts included), EFS, RDS, ElastiCache, ECR, SNS, the
backup bucket and vault, and ECS Exec sessions. Until issue 12 ECS Exec had a key of its own (`ExecKey`,
issue 10) so that "a task can decrypt sessions, and nothing of the data"; each key costs $1/month plus
$1/month for each of its first two yearly rotations. The same property is now kept by policy:

- the tasks' roles may call kms:Decrypt on this key only with the encryption context of an ECS Exec session
  of THIS server's cluster (stack/iam.py, `exec_key_statement`), so a ciphertext of any other service
  (EFS, RDS, S3, CloudWatch Logs, SNS...) — whose contexts never carry `aws:ssm:*` keys — stays out of reach;
- CloudWatch Logs may use the key only for log groups of this account and region (its `aws:logs:arn`
  context), the Exec transcripts' log group among them.

A server deployed with the old `ExecKey` is moved to this key by the deploy (deploy/exec_key.py); the old
key is retained, never deleted by a deploy, and `status` says from when it may be deleted.
"""

from __future__ import annotations

from typing import Any

from awacs.aws import Action, Allow, Condition, PolicyDocument, Principal, Statement, StringEquals, StringLike
from troposphere import AccountId, GetAtt, Join, Partition, Ref, Region, Sub, kms

from mastofargate import names
from mastofargate.stack.context import Build

# The encryption context of an ECS Exec session's data key. ECS Exec runs on SSM Session Manager: the client
# (session-manager-plugin) calls kms:GenerateDataKey and the SSM agent in the task calls kms:Decrypt, both
# with {"aws:ssm:SessionId": <session>, "aws:ssm:TargetId": <target>} (the agent's source,
# aws/amazon-ssm-agent agent/session/crypto/blockcipher.go, UpdateEncryptionKey; likewise the plugin's data
# channel in aws/session-manager-plugin). For ECS the target is
# "ecs:<cluster>_<task id>_<container runtime id>" (the AWS CLI's ecs execute-command,
# build_ssm_request_paramaters), so "ecs:<cluster>_*" is this server's tasks and no other cluster's (cluster
# names are stack names here: letters, digits and '-', never '_').
SSM_SESSION_CONTEXT = "kms:EncryptionContext:aws:ssm:SessionId"
SSM_TARGET_CONTEXT = "kms:EncryptionContext:aws:ssm:TargetId"


def exec_target_pattern(stack_name: str) -> str:
    """The `aws:ssm:TargetId` of every ECS Exec session into a task of this server's cluster."""
    return f"ecs:{names.cluster(stack_name)}_*"


def add(b: Build) -> None:
    """The one customer-managed KMS key, its alias, and its ARN for the app stack."""
    logs_arn = Sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:*")
    policy = PolicyDocument(
        Version="2012-10-17",
        Statement=[
            _account_admin(),
            # Every log group of this account and region: the services' logs and the Exec transcripts
            # (stack/observability.py). CloudWatch Logs sends the log group's ARN as `aws:logs:arn`.
            _logs_may_use("CloudWatchLogs", StringLike("kms:EncryptionContext:aws:logs:arn", logs_arn)),
            Statement(
                Sid="AlarmsToSns",
                Effect=Allow,
                Principal=Principal("Service", ["cloudwatch.amazonaws.com", "events.amazonaws.com"]),
                Action=[_kms("Decrypt"), _kms("GenerateDataKey*")],
                Resource=["*"],
                Condition=Condition(StringEquals("aws:SourceAccount", AccountId)),
            ),
        ],
    )
    key = b.add(
        b.data,
        kms.Key(
            "EncryptionKey",
            Description=f"mastofargate {b.name}: logs, storage, images, ECS Exec sessions",
            EnableKeyRotation=True,
            KeyPolicy=policy,
            PendingWindowInDays=30,
        ),
        "KMS key encrypting logs, EFS, RDS, ElastiCache, ECR, alarms and ECS Exec sessions",
    )
    key.DeletionPolicy = "Retain"
    key.UpdateReplacePolicy = "Retain"
    b.add(
        b.data,
        kms.Alias("EncryptionKeyAlias", AliasName=f"alias/mastofargate/{b.name}", TargetKeyId=Ref(key)),
        "Readable name of the KMS key",
    )
    b.export("KeyArn", GetAtt(key, "Arn"), "KMS key ARN")


def _account_admin() -> Statement:
    """The account administers its keys (without it a key can lock everyone out); IAM policies then decide
    which principal may do what, so the tasks' grants in stack/iam.py are what scopes them."""
    return Statement(
        Sid="AccountAdmin",
        Effect=Allow,
        Principal=Principal("AWS", Join("", ["arn:", Partition, ":iam::", AccountId, ":root"])),
        Action=[_kms("*")],
        Resource=["*"],
    )


def _logs_may_use(sid: str, condition: Any) -> Statement:
    """CloudWatch Logs in this region may encrypt with the key, for the log groups the condition names."""
    return Statement(
        Sid=sid,
        Effect=Allow,
        Principal=Principal("Service", Join("", ["logs.", Region, ".amazonaws.com"])),
        Action=[_kms("Encrypt*"), _kms("Decrypt*"), _kms("ReEncrypt*"), _kms("GenerateDataKey*"), _kms("Describe*")],
        Resource=["*"],
        Condition=Condition(condition),
    )


def _kms(action: str) -> Action:
    return Action("kms", action)
