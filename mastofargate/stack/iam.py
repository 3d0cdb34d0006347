"""Least-privilege IAM roles, written with awacs.

- execution role: pull this server's three images, write its log groups, read exactly its three secrets
  (no AWS managed policy: AmazonECSTaskExecutionRolePolicy allows every repository and log group);
- Mastodon task role (web, Sidekiq, one-off jobs): the media bucket and nothing else, plus ECS Exec;
- with the direct edge, the task holding web and Caddy has its own role: Mastodon's, plus mounting Caddy's
  certificate directory on EFS (so Sidekiq's role cannot reach the site's private key);
- streaming: no task role at all (it needs no AWS API), so no credentials and no ECS Exec;
- data task role (Redis task): its EFS access point only; no ECS Exec into a data store;
- ECS Exec sessions: the server's one KMS key, which the task roles may decrypt with only under the
  encryption context of an Exec session into this cluster (stack/keys.py): nothing of the data it encrypts;
- Postgres task role: its EFS access point, and only the pgbackrest/ prefix of the backup bucket (pgBackRest
  archives WAL and takes base backups from inside the Postgres container; the dumps are out of its reach),
  and the backup metrics (WalArchiveFailing);
- backup task role (one-off dump, verify and restore-drill tasks): the backup bucket and its metrics only;
- scheduler role: run the maintenance and backup task definitions, tag the tasks it starts, pass only the
  roles those tasks use, and write failed invocations to the schedules' dead-letter queue.
No static AWS keys exist anywhere: tasks get credentials from their role.
"""

from __future__ import annotations

from awacs import cloudwatch as cloudwatch_actions
from awacs import ecr as ecr_actions
from awacs import ecs as ecs_actions
from awacs import elasticfilesystem as efs_actions
from awacs import iam as iam_actions
from awacs import kms as kms_actions
from awacs import logs as logs_actions
from awacs import s3 as s3_actions
from awacs import secretsmanager as sm_actions
from awacs import sqs as sqs_actions
from awacs import ssmmessages
from awacs.aws import Allow, ArnEquals, Condition, PolicyDocument, Principal, Statement, StringEquals, StringLike
from awacs.sts import AssumeRole
from troposphere import GetAtt, Join, Sub, Template, iam

from mastofargate import names
from mastofargate.stack.backups import METRIC_NAMESPACE, PGBACKREST_PREFIX
from mastofargate.stack.context import Build
from mastofargate.stack.keys import SSM_SESSION_CONTEXT, SSM_TARGET_CONTEXT, exec_target_pattern
from mastofargate.stack.registry import repository_names
from mastofargate.stack.secrets import legacy_secret_names, secret_name

BACKUP_ACTIONS = [
    s3_actions.GetObject,
    s3_actions.PutObject,
    s3_actions.DeleteObject,  # pgBackRest expires its own backups and WAL
    s3_actions.AbortMultipartUpload,
    s3_actions.ListMultipartUploadParts,
]
# No s3:PutObjectAcl: the bucket has ACLs disabled and Mastodon is told to send none (S3_PERMISSION="").
MEDIA_ACTIONS = [
    s3_actions.GetObject,
    s3_actions.PutObject,
    s3_actions.DeleteObject,
    s3_actions.AbortMultipartUpload,
    s3_actions.ListMultipartUploadParts,
]


def trust_policy(service: str) -> PolicyDocument:
    """Only `service`, acting for this account (aws:SourceAccount: no confused deputy), may assume the role."""
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


def least_privilege_role(
    b: Build,
    title: str,
    service: str,
    description: str,
    statements: list[Statement],
    *,
    template: Template | None = None,
    **props: object,
) -> iam.Role:
    """A role `service` may assume, with one inline policy and no AWS managed policy (those name every resource
    of a kind), in the app stack unless `template` says otherwise; `props` are further Role properties."""
    return b.add(
        b.app if template is None else template,
        iam.Role(
            title,
            **props,
            AssumeRolePolicyDocument=trust_policy(service),
            Policies=[
                iam.Policy(
                    PolicyName="least-privilege",
                    PolicyDocument=PolicyDocument(Version="2012-10-17", Statement=statements),
                )
            ],
        ),
        description,
    )


def exec_log_group_arn() -> Sub:
    return Sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${ExecLogGroup}")


def _exec_statements(b: Build) -> list[Statement]:
    """What the ECS Exec agent in a task needs (AWS's ECS Exec guide): the SSM channels, writing the
    session transcript to its log group, and decrypting the session's data key. Nothing else."""
    return [
        Statement(
            Sid="EcsExecChannels",
            Effect=Allow,
            Resource=["*"],  # the ssmmessages actions have no resource type
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
            Resource=[Join("", [exec_log_group_arn(), ":*"])],
        ),
        Statement(
            Sid="EcsExecLogGroups",
            Effect=Allow,
            Action=[logs_actions.DescribeLogGroups],
            Resource=[Sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*")],
        ),
        exec_key_statement(b),
    ]


def exec_key_statement(b: Build) -> Statement:
    """kms:Decrypt on the server's one key, only for the data key of an ECS Exec session into a task of this
    cluster (its `aws:ssm:TargetId` and `aws:ssm:SessionId` context: stack/keys.py). Without both keys in the
    context the condition fails, so what EFS, RDS, S3, Logs or SNS encrypted with the key cannot be decrypted."""
    return Statement(
        Sid="EcsExecKey",
        Effect=Allow,
        Action=[kms_actions.Decrypt],
        Resource=[b.imported("KeyArn")],
        Condition=Condition(StringLike({SSM_TARGET_CONTEXT: exec_target_pattern(b.name), SSM_SESSION_CONTEXT: "*"})),
    )


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


def _mount_statement(b: Build, role: str) -> Statement:
    return Statement(
        Sid="MountOwnDirectory",
        Effect=Allow,
        Action=[efs_actions.ClientMount, efs_actions.ClientWrite],
        Resource=[b.imported("FileSystemArn")],
        Condition=Condition(
            StringEquals("elasticfilesystem:AccessPointArn", [b.imported(f"{role.capitalize()}AccessPointArn")])
        ),
    )


def _mount_statement_for(b: Build, access_points: list[str]) -> Statement:
    """Mounting the file system only through these access points (logical ids of the data stack's exports)."""
    return Statement(
        Sid="MountOwnDirectory",
        Effect=Allow,
        Action=[efs_actions.ClientMount, efs_actions.ClientWrite],
        Resource=[b.imported("FileSystemArn")],
        Condition=Condition(
            StringEquals("elasticfilesystem:AccessPointArn", [b.imported(f"{ap}Arn") for ap in access_points])
        ),
    )


def _pgbackrest_statements(b: Build) -> list[Statement]:
    """pgBackRest's repository only: objects under pgbackrest/ (it deletes what it expires), listings of
    that prefix, and the key the bucket encrypts with."""
    bucket = b.imported("BackupBucketArn")
    prefix = PGBACKREST_PREFIX.rstrip("/")
    return [
        Statement(
            Sid="PgbackrestObjects",
            Effect=Allow,
            Action=BACKUP_ACTIONS,
            Resource=[Join("", [bucket, f"/{prefix}/*"])],
        ),
        Statement(
            Sid="PgbackrestListing",
            Effect=Allow,
            Action=[s3_actions.ListBucket],
            Resource=[bucket],
            Condition=Condition(StringLike("s3:prefix", [f"{prefix}/*"])),
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


def add(b: Build) -> None:
    arn = "arn:${AWS::Partition}:%s:${AWS::Region}:${AWS::AccountId}:%s"
    b.app_param("SecretArn")  # constrained to this server's secret (context.secret_arn_constraint)
    least_privilege_role(
        b,
        "ExecutionRole",
        "ecs-tasks.amazonaws.com",
        "Lets ECS pull this server's images, write its logs and read its secret",
        [
            # GetAuthorizationToken has no resource type; the pull itself is limited to our repositories.
            Statement(Sid="EcrLogin", Effect=Allow, Action=[ecr_actions.GetAuthorizationToken], Resource=["*"]),
            Statement(
                Sid="PullOurImages",
                Effect=Allow,
                Action=[
                    ecr_actions.BatchCheckLayerAvailability,
                    ecr_actions.GetDownloadUrlForLayer,
                    ecr_actions.BatchGetImage,
                ],
                Resource=[Sub(arn % ("ecr", f"repository/{r}")) for r in repository_names(b.name).values()],
            ),
            Statement(
                Sid="WriteOurLogs",
                Effect=Allow,
                Action=[logs_actions.CreateLogStream, logs_actions.PutLogEvents],
                Resource=[Sub(arn % ("logs", f"log-group:{names.log_group(b.name, '')}*"))],
            ),
            Statement(
                Sid="ReadOurSecrets",
                Effect=Allow,
                Action=[sm_actions.GetSecretValue],
                # The one secret, and the names of the three a server deployed before it had: while a deploy
                # switches a running server (or CloudFormation rolls that switch back, restoring services before
                # this role), a task of the previous task definitions may start and must still read them. After
                # `secrets prune-legacy` those names hold nothing (only this server's deploy may create them).
                Resource=[
                    Sub(arn % ("secretsmanager", f"secret:{n}-??????"))
                    for n in (secret_name(b.name), *legacy_secret_names(b.name).values())
                ],
            ),
        ],
    )

    bucket = b.imported("MediaBucketArn")
    mastodon = [
        Statement(Sid="MediaObjects", Effect=Allow, Action=MEDIA_ACTIONS, Resource=[Join("", [bucket, "/*"])]),
        Statement(
            Sid="MediaBucket",
            Effect=Allow,
            Action=[s3_actions.ListBucket, s3_actions.GetBucketLocation],
            Resource=[bucket],
        ),
        *_exec_statements(b),
    ]
    least_privilege_role(
        b,
        "MastodonTaskRole",
        "ecs-tasks.amazonaws.com",
        "Mastodon (web, Sidekiq, jobs): the media bucket only, and ECS Exec",
        mastodon,
    )
    one = next((g for g in b.config.tasks if g.packed and (g.has("postgres") or g.has("redis"))), None)
    if b.config.deployment.edge == "direct" and not (one is not None and one.has("web")):
        from mastofargate.stack.direct_edge import ACCESS_POINT, TASK_ROLE

        least_privilege_role(
            b,
            TASK_ROLE,
            "ecs-tasks.amazonaws.com",
            "The task holding web and Caddy: what Mastodon's role allows, and Caddy's certificate directory",
            [
                *mastodon,
                Statement(
                    Sid="MountCertificates",
                    Effect=Allow,
                    Action=[efs_actions.ClientMount, efs_actions.ClientWrite],
                    Resource=[b.imported("FileSystemArn")],
                    Condition=Condition(
                        StringEquals("elasticfilesystem:AccessPointArn", [b.imported(f"{ACCESS_POINT}Arn")])
                    ),
                ),
            ],
        )
    cfg = b.config.deployment
    if one is not None:
        # The one task: Mastodon's processes and the data stores share a task, hence one role with both (and,
        # with the direct edge, Caddy's certificate directory: Caddy runs in that task too).
        from mastofargate.stack.direct_edge import ACCESS_POINT

        aps = [f"{r.capitalize()}AccessPoint" for r in ("postgres", "redis") if one.has(r)]
        if b.config.deployment.edge == "direct" and one.has("web"):
            aps.append(ACCESS_POINT)
        least_privilege_role(
            b,
            "ServerTaskRole",
            "ecs-tasks.amazonaws.com",
            "The one task (Mastodon with its Postgres/Redis): the media bucket, ECS Exec, their EFS directories"
            + (", pgBackRest's prefix of the backup bucket" if one.has("postgres") else ""),
            [
                *mastodon,
                _mount_statement_for(b, aps),
                *([*_pgbackrest_statements(b), _backup_metric_statement()] if one.has("postgres") else []),
            ],
        )
    else:
        if cfg.database == "task":
            least_privilege_role(
                b,
                "PostgresTaskRole",
                "ecs-tasks.amazonaws.com",
                "Postgres task: its EFS directory and pgBackRest's prefix of the backup bucket (no ECS Exec)",
                [_mount_statement(b, "postgres"), *_pgbackrest_statements(b), _backup_metric_statement()],
            )
        if cfg.cache == "task":
            least_privilege_role(
                b,
                "DataTaskRole",
                "ecs-tasks.amazonaws.com",
                "Redis task: its EFS directory only (no ECS Exec into a data store)",
                [_mount_statement(b, "redis")],
            )
    least_privilege_role(
        b,
        "BackupTaskRole",
        "ecs-tasks.amazonaws.com",
        "One-off backup, verify and restore-drill tasks: the backup bucket and their metrics only",
        [*_backup_statements(b), _backup_metric_statement()],
    )
    least_privilege_role(
        b,
        "SchedulerRole",
        "scheduler.amazonaws.com",
        "Lets EventBridge Scheduler start and tag the maintenance and backup tasks, and record failures",
        [
            Statement(
                Sid="RunMaintenance",
                Effect=Allow,
                Action=[ecs_actions.RunTask],
                Resource=[
                    Sub(arn % ("ecs", f"task-definition/{b.name}-tootctl:*")),
                    Sub(arn % ("ecs", f"task-definition/{b.name}-backup:*")),
                ],
                Condition=Condition(ArnEquals("ecs:cluster", GetAtt("Cluster", "Arn"))),
            ),
            Statement(
                # The schedules propagate the task definition's tags to the task (PropagateTags), which
                # RunTask does only with ecs:TagResource; the condition limits it to tagging at launch.
                Sid="TagMaintenanceTasks",
                Effect=Allow,
                Action=[ecs_actions.TagResource],
                Resource=[Sub(arn % ("ecs", f"task/{names.cluster(b.name)}/*"))],
                Condition=Condition(StringEquals("ecs:CreateAction", "RunTask")),
            ),
            Statement(
                Sid="PassTaskRoles",
                Effect=Allow,
                Action=[iam_actions.PassRole],
                Resource=[
                    GetAtt("ExecutionRole", "Arn"),
                    GetAtt("MastodonTaskRole", "Arn"),
                    GetAtt("BackupTaskRole", "Arn"),
                ],
                Condition=Condition(StringEquals("iam:PassedToService", "ecs-tasks.amazonaws.com")),
            ),
            Statement(
                Sid="DeadLetters",
                Effect=Allow,
                Action=[sqs_actions.SendMessage],
                Resource=[GetAtt("ScheduleDeadLetterQueue", "Arn")],
            ),
        ],
    )
