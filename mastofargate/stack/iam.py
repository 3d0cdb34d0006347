"""Least-privilege IAM roles, written with awacs.

- execution role: pull images, write logs, read exactly our three secrets;
- Mastodon task role (web, Sidekiq, jobs): the media bucket and nothing else, plus ECS Exec;
- streaming task role: ECS Exec only;
- data task role (Postgres/Redis tasks): their EFS access points, plus ECS Exec; with the Postgres task, the
  backup bucket too (pgBackRest archives WAL from inside the Postgres container);
- backup task role (one-off dump, verify and restore-drill tasks): the backup bucket and nothing else;
- scheduler role: run the maintenance task definition, pass only our two roles.
No static AWS keys exist anywhere: tasks get credentials from their role.
"""

from __future__ import annotations

from awacs import cloudwatch as cloudwatch_actions
from awacs import ecs as ecs_actions
from awacs import elasticfilesystem as efs_actions
from awacs import iam as iam_actions
from awacs import kms as kms_actions
from awacs import logs as logs_actions
from awacs import s3 as s3_actions
from awacs import secretsmanager as sm_actions
from awacs import ssmmessages
from awacs.aws import Allow, Condition, PolicyDocument, Principal, Statement, StringEquals
from awacs.sts import AssumeRole
from troposphere import GetAtt, Join, Sub, iam

from mastofargate.stack.backups import METRIC_NAMESPACE
from mastofargate.stack.context import Build

BACKUP_ACTIONS = [
    s3_actions.GetObject,
    s3_actions.PutObject,
    s3_actions.DeleteObject,  # pgBackRest expires its own backups and WAL
    s3_actions.AbortMultipartUpload,
    s3_actions.ListMultipartUploadParts,
]
MEDIA_ACTIONS = [
    s3_actions.GetObject,
    s3_actions.PutObject,
    s3_actions.PutObjectAcl,
    s3_actions.DeleteObject,
    s3_actions.AbortMultipartUpload,
    s3_actions.ListMultipartUploadParts,
]


def _assume(service: str) -> PolicyDocument:
    return PolicyDocument(
        Version="2012-10-17",
        Statement=[
            Statement(
                Effect=Allow,
                Principal=Principal("Service", service),
                Action=[AssumeRole],
                Condition=Condition(StringEquals("aws:SourceAccount", Sub("${AWS::AccountId}"))),
            )
        ],
    )


def _exec_statements(b: Build) -> list[Statement]:
    """ECS Exec: the SSM channels, and the session log group encrypted with our key."""
    return [
        Statement(
            Sid="EcsExecChannels",
            Effect=Allow,
            Resource=["*"],
            Action=[
                ssmmessages.CreateControlChannel,
                ssmmessages.CreateDataChannel,
                ssmmessages.OpenControlChannel,
                ssmmessages.OpenDataChannel,
            ],
        ),
        Statement(
            Sid="EcsExecSessionLogs",
            Effect=Allow,
            Action=[logs_actions.CreateLogStream, logs_actions.PutLogEvents, logs_actions.DescribeLogStreams],
            Resource=[Sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${ExecLogGroup}:*")],
        ),
        Statement(Sid="EcsExecLogGroups", Effect=Allow, Action=[logs_actions.DescribeLogGroups], Resource=["*"]),
        Statement(
            Sid="EcsExecKey",
            Effect=Allow,
            Action=[kms_actions.Decrypt, kms_actions.GenerateDataKey],
            Resource=[b.imported("KeyArn")],
        ),
    ]


def _backup_statements(b: Build) -> list[Statement]:
    """The backup bucket and the KMS key its objects are encrypted with (SSE-KMS needs both)."""
    bucket = b.imported("BackupBucketArn")
    return [
        Statement(Sid="BackupObjects", Effect=Allow, Action=BACKUP_ACTIONS, Resource=[Join("", [bucket, "/*"])]),
        Statement(
            Sid="BackupBucket",
            Effect=Allow,
            Action=[s3_actions.ListBucket, s3_actions.GetBucketLocation],
            Resource=[bucket],
        ),
        Statement(
            Sid="BackupKey",
            Effect=Allow,
            Action=[kms_actions.Decrypt, kms_actions.GenerateDataKey],
            Resource=[b.imported("KeyArn")],
        ),
    ]


def _backup_metric_statement() -> Statement:
    """PutMetricData has no resource to name; the namespace condition keeps it to the backup metrics."""
    return Statement(
        Sid="BackupMetrics",
        Effect=Allow,
        Action=[cloudwatch_actions.PutMetricData],
        Resource=["*"],
        Condition=Condition(StringEquals("cloudwatch:namespace", METRIC_NAMESPACE)),
    )


def _role(
    b: Build, title: str, service: str, description: str, statements: list[Statement], managed: list[Sub] | None = None
) -> iam.Role:
    return b.add(
        b.app,
        iam.Role(
            title,
            AssumeRolePolicyDocument=_assume(service),
            ManagedPolicyArns=managed or [],
            Policies=[
                iam.Policy(
                    PolicyName="least-privilege",
                    PolicyDocument=PolicyDocument(Version="2012-10-17", Statement=statements),
                )
            ],
        ),
        description,
    )


def add(b: Build) -> None:
    secrets = [b.app_param(p) for p in ("AppSecretArn", "DatabaseSecretArn", "RedisSecretArn")]
    _role(
        b,
        "ExecutionRole",
        "ecs-tasks.amazonaws.com",
        "Lets ECS pull images, write logs and read our three secrets",
        [
            Statement(Sid="ReadOurSecrets", Effect=Allow, Action=[sm_actions.GetSecretValue], Resource=secrets),
        ],
        managed=[Sub("arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy")],
    )

    bucket = b.imported("MediaBucketArn")
    _role(
        b,
        "MastodonTaskRole",
        "ecs-tasks.amazonaws.com",
        "Mastodon (web, Sidekiq, jobs): the media bucket only",
        [
            Statement(Sid="MediaObjects", Effect=Allow, Action=MEDIA_ACTIONS, Resource=[Join("", [bucket, "/*"])]),
            Statement(
                Sid="MediaBucket",
                Effect=Allow,
                Action=[s3_actions.ListBucket, s3_actions.GetBucketLocation],
                Resource=[bucket],
            ),
            *_exec_statements(b),
        ],
    )
    _role(
        b,
        "StreamingTaskRole",
        "ecs-tasks.amazonaws.com",
        "Streaming: no AWS access beyond ECS Exec",
        _exec_statements(b),
    )
    cfg = b.config.deployment
    if cfg.database == "task" or cfg.cache == "task":
        aps = [
            b.imported(f"{r.capitalize()}AccessPointArn")
            for r, on in (("postgres", cfg.database == "task"), ("redis", cfg.cache == "task"))
            if on
        ]
        _role(
            b,
            "DataTaskRole",
            "ecs-tasks.amazonaws.com",
            "Postgres/Redis tasks: their EFS directories only",
            [
                Statement(
                    Sid="MountOwnDirectory",
                    Effect=Allow,
                    Action=[efs_actions.ClientMount, efs_actions.ClientWrite],
                    Resource=[b.imported("FileSystemArn")],
                    Condition=Condition(StringEquals("elasticfilesystem:AccessPointArn", aps)),
                ),
                *(_backup_statements(b) if cfg.database == "task" else []),
                *_exec_statements(b),
            ],
        )
    _role(
        b,
        "BackupTaskRole",
        "ecs-tasks.amazonaws.com",
        "One-off backup, verify and restore-drill tasks: the backup bucket and their metrics only",
        [*_backup_statements(b), _backup_metric_statement()],
    )
    _role(
        b,
        "SchedulerRole",
        "scheduler.amazonaws.com",
        "Lets EventBridge Scheduler start the maintenance task",
        [
            Statement(
                Sid="RunMaintenance",
                Effect=Allow,
                Action=[ecs_actions.RunTask],
                Resource=[
                    Sub(
                        f"arn:${{AWS::Partition}}:ecs:${{AWS::Region}}:${{AWS::AccountId}}:task-definition/{b.name}-tootctl:*"
                    )
                ],
            ),
            Statement(
                Sid="PassTaskRoles",
                Effect=Allow,
                Action=[iam_actions.PassRole],
                Resource=[GetAtt("ExecutionRole", "Arn"), GetAtt("MastodonTaskRole", "Arn")],
                Condition=Condition(StringEquals("iam:PassedToService", "ecs-tasks.amazonaws.com")),
            ),
        ],
    )
