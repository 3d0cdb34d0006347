"""Every IAM role, statement by statement, against an explicit allow-list, over every shape (issue 10 item 4).

A new action, a wider resource, a lost condition or an AWS managed policy on any role fails here: widening a
permission must be a visible change to this list, reviewed for what it lets an attacker with the role do.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import COMBINATIONS, combo_id
from tests.test_templates import stacks

ARN = "arn:${AWS::Partition}:%s:${AWS::Region}:${AWS::AccountId}:%s"


def sub(service: str, resource: str) -> dict[str, str]:
    return {"Fn::Sub": ARN % (service, resource)}


def imported(key: str) -> dict[str, str]:
    return {"Fn::ImportValue": f"social-data:{key}"}


EXEC = {
    "EcsExecChannels": (
        [
            "ssmmessages:CreateControlChannel",
            "ssmmessages:CreateDataChannel",
            "ssmmessages:OpenControlChannel",
            "ssmmessages:OpenDataChannel",
        ],
        ["*"],
        None,
    ),
    "EcsExecSessionLogs": (
        ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
        [{"Fn::Join": ["", [sub("logs", "log-group:${ExecLogGroup}"), ":*"]]}],
        None,
    ),
    "EcsExecLogGroups": (["logs:DescribeLogGroups"], [sub("logs", "log-group:*")], None),
    # The server's one key, only under an Exec session's encryption context into this cluster (stack/keys.py).
    "EcsExecKey": (
        ["kms:Decrypt"],
        [imported("KeyArn")],
        {
            "StringLike": {
                "kms:EncryptionContext:aws:ssm:SessionId": "*",
                "kms:EncryptionContext:aws:ssm:TargetId": "ecs:social_*",
            }
        },
    ),
}

BACKUP = {
    "BackupObjects": (
        ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
        [{"Fn::Join": ["", [imported("BackupBucketArn"), "/*"]]}],
        None,
    ),
    "BackupBucket": (["s3:ListBucket", "s3:GetBucketLocation"], [imported("BackupBucketArn")], None),
    "BackupKey": (["kms:Decrypt", "kms:GenerateDataKey"], [imported("KeyArn")], None),
}

ALLOWED: dict[str, dict[str, tuple[list[str], list[Any], dict[str, Any] | None]]] = {
    "BackupTaskRole": {
        **BACKUP,
        "BackupMetrics": (
            ["cloudwatch:PutMetricData"],
            ["*"],
            {"StringEquals": {"cloudwatch:namespace": "Mastofargate/Backups"}},
        ),
    },
    # The data stack's database setup task (stack/dbsetup.py): the server's one secret (ECS hands the container
    # only database_password of it) and its one log group, nothing else.
    "DatabaseSetupExecutionRole": {
        "WriteItsLog": (
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [sub("logs", "log-group:/mastofargate/social/dbsetup:*")],
            None,
        ),
        "ReadTheServerSecret": (
            ["secretsmanager:GetSecretValue"],
            [sub("secretsmanager", "secret:mastofargate/social/server-??????")],
            None,
        ),
    },
    "ExecutionRole": {
        "EcrLogin": (["ecr:GetAuthorizationToken"], ["*"], None),
        "PullOurImages": (
            ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
            [sub("ecr", f"repository/social/{image}") for image in ("mastodon", "streaming", "backup")],
            None,
        ),
        "WriteOurLogs": (
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [sub("logs", "log-group:/mastofargate/social/*")],
            None,
        ),
        "ReadOurSecrets": (
            ["secretsmanager:GetSecretValue"],
            # the one secret, and the three names of older servers' secrets (readable while a deploy switches a
            # running server, or CloudFormation rolls the switch back: tasks of the previous definitions)
            [
                sub("secretsmanager", f"secret:mastofargate/social/{k}-??????")
                for k in ("server", "app", "database", "redis")
            ],
            None,
        ),
    },
    "MastodonTaskRole": {
        "MediaObjects": (
            [
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
            ],
            [{"Fn::Join": ["", [imported("MediaBucketArn"), "/*"]]}],
            None,
        ),
        "MediaBucket": (["s3:ListBucket", "s3:GetBucketLocation"], [imported("MediaBucketArn")], None),
        **EXEC,
    },
    "SchedulerRole": {
        "RunMaintenance": (
            ["ecs:RunTask"],
            [sub("ecs", "task-definition/social-tootctl:*"), sub("ecs", "task-definition/social-backup:*")],
            {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": ["Cluster", "Arn"]}}},
        ),
        "TagMaintenanceTasks": (
            ["ecs:TagResource"],
            [sub("ecs", "task/social/*")],
            {"StringEquals": {"ecs:CreateAction": "RunTask"}},
        ),
        "PassTaskRoles": (
            ["iam:PassRole"],
            [
                {"Fn::GetAtt": ["ExecutionRole", "Arn"]},
                {"Fn::GetAtt": ["MastodonTaskRole", "Arn"]},
                {"Fn::GetAtt": ["BackupTaskRole", "Arn"]},
            ],
            {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        ),
        "DeadLetters": (["sqs:SendMessage"], [{"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}], None),
    },
}
PRINCIPALS = {
    "ExecutionRole": "ecs-tasks.amazonaws.com",
    "DatabaseSetupExecutionRole": "ecs-tasks.amazonaws.com",
    "MastodonTaskRole": "ecs-tasks.amazonaws.com",
    "DataTaskRole": "ecs-tasks.amazonaws.com",
    "PostgresTaskRole": "ecs-tasks.amazonaws.com",
    "ServerTaskRole": "ecs-tasks.amazonaws.com",
    "BackupTaskRole": "ecs-tasks.amazonaws.com",
    "SchedulerRole": "scheduler.amazonaws.com",
    "SpotFallbackRole": "lambda.amazonaws.com",
    "BackupRole": "backup.amazonaws.com",
    "FrontTaskRole": "ecs-tasks.amazonaws.com",
    "DnsFollowerRole": "lambda.amazonaws.com",
    "CertificateWatchRole": "lambda.amazonaws.com",
}
BACKUP_ONLY = [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup"}]

combos = pytest.mark.parametrize("combo", COMBINATIONS, ids=[combo_id(c) for c in COMBINATIONS])


SPOT_FALLBACK = {  # stack/spot.py: only this cluster's services, its own log group and dead-letter queue
    "SwitchOurServices": (
        ["ecs:DescribeServices", "ecs:UpdateService", "ecs:TagResource", "ecs:UntagResource"],
        [sub("ecs", "service/social/*")],
        None,
    ),
    "ListOurServices": (
        ["ecs:ListServices"],
        ["*"],
        {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": ["Cluster", "Arn"]}}},
    ),
    "WriteOwnLog": (
        ["logs:CreateLogStream", "logs:PutLogEvents"],
        [{"Fn::GetAtt": ["SpotFallbackLogGroup", "Arn"]}],
        None,
    ),
    "DeadLetters": (["sqs:SendMessage"], [{"Fn::GetAtt": ["SpotFallbackDeadLetterQueue", "Arn"]}], None),
}


def _lambda_common(kind: str) -> dict[str, tuple[list[str], list[Any], dict[str, Any] | None]]:
    return {
        "OwnLogs": (
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [{"Fn::GetAtt": [f"{kind}LogGroup", "Arn"]}],
            None,
        ),
        "DeadLetters": (["sqs:SendMessage"], [{"Fn::GetAtt": ["EdgeDeadLetterQueue", "Arn"]}], None),
    }


ZONE = {"Fn::Sub": "arn:${AWS::Partition}:route53:::hostedzone/Z0123456789EXAMPLE"}
CLUSTER = {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": ["Cluster", "Arn"]}}}
DIRECT_EDGE = {
    "FrontTaskRole": {
        **ALLOWED["MastodonTaskRole"],
        "MountCertificates": (
            ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
            [imported("FileSystemArn")],
            {"StringEquals": {"elasticfilesystem:AccessPointArn": [imported("CaddyAccessPointArn")]}},
        ),
    },
    # The DNS follower may read the cluster's tasks and addresses, and change only the server's own A/AAAA.
    "DnsFollowerRole": {
        "ListServiceTasks": (["ecs:ListTasks"], ["*"], CLUSTER),
        "DescribeServiceTasks": (["ecs:DescribeTasks"], [sub("ecs", "task/social/*")], CLUSTER),
        "ReadTaskAddress": (["ec2:DescribeNetworkInterfaces"], ["*"], None),
        "ReadRecords": (["route53:ListResourceRecordSets"], [ZONE], None),
        "ChangeOwnRecordOnly": (
            ["route53:ChangeResourceRecordSets"],
            [ZONE],
            {
                "ForAllValues:StringEquals": {
                    "route53:ChangeResourceRecordSetsNormalizedRecordNames": ["social.example.org"],
                    "route53:ChangeResourceRecordSetsRecordTypes": ["A", "AAAA"],
                    "route53:ChangeResourceRecordSetsActions": ["UPSERT", "DELETE"],
                }
            },
        ),
        **_lambda_common("DnsFollower"),
    },
    "CertificateWatchRole": {
        "PublishCertificateMetric": (
            ["cloudwatch:PutMetricData"],
            ["*"],
            {"StringEquals": {"cloudwatch:namespace": "Mastofargate/Edge"}},
        ),
        **_lambda_common("CertificateWatch"),
    },
}


def _allowed(combo: tuple) -> dict[str, dict[str, tuple[list[str], list[Any], dict[str, Any] | None]]]:
    _, database, cache, _, spot, edge, layout = combo
    out = dict(ALLOWED)
    if spot:  # a Spot service in the template: the fallback and its role exist
        out["SpotFallbackRole"] = SPOT_FALLBACK
    one_task = layout == "one-task" and "task" in (database, cache)
    if edge == "direct":
        out |= DIRECT_EDGE
        if one_task:  # Caddy runs in the one task: its certificate directory is that role's, no FrontTaskRole
            del out["FrontTaskRole"]

    def mount(*aps: str) -> tuple[list[str], list[Any], dict[str, Any]]:
        return (
            ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
            [imported("FileSystemArn")],
            {"StringEquals": {"elasticfilesystem:AccessPointArn": [imported(f"{ap}AccessPointArn") for ap in aps]}},
        )

    # pgBackRest archives WAL and takes base backups from inside the Postgres task: its prefix only
    pgbackrest = {
        "PgbackrestObjects": (
            BACKUP["BackupObjects"][0],
            [{"Fn::Join": ["", [imported("BackupBucketArn"), "/pgbackrest/*"]]}],
            None,
        ),
        "PgbackrestListing": (
            ["s3:ListBucket"],
            [imported("BackupBucketArn")],
            {"StringLike": {"s3:prefix": ["pgbackrest/*"]}},
        ),
        "BackupKey": BACKUP["BackupKey"],
        "BackupMetrics": ALLOWED["BackupTaskRole"]["BackupMetrics"],  # WalArchiveFailing, that namespace only
    }
    if one_task:  # Mastodon and its data stores in one task: one role holding both
        aps = [r for r, on in (("Postgres", database == "task"), ("Redis", cache == "task")) if on]
        out["ServerTaskRole"] = {
            **ALLOWED["MastodonTaskRole"],
            "MountOwnDirectory": mount(*aps, *(["Caddy"] if edge == "direct" else [])),
            **(pgbackrest if database == "task" else {}),
        }
        return out
    if database == "task":
        out["PostgresTaskRole"] = {"MountOwnDirectory": mount("Postgres"), **pgbackrest}
    if cache == "task":
        out["DataTaskRole"] = {"MountOwnDirectory": mount("Redis")}
    return out


def _roles(combo: tuple) -> dict[str, dict[str, Any]]:
    return {
        title: res
        for tpl in stacks(combo).values()
        for title, res in tpl["Resources"].items()
        if res["Type"] == "AWS::IAM::Role"
    }


@combos
def test_every_role_matches_the_allow_list(combo: tuple) -> None:
    allowed = _allowed(combo)
    roles = _roles(combo)
    # AWS Backup (and its role) only for what is safe to copy file by file: RDS, or an EFS without Postgres on
    # it, which happens only beside RDS
    backed_up = combo[1] == "rds"
    assert set(roles) == set(allowed) | ({"BackupRole"} if backed_up else set())
    for title, role in roles.items():
        props = role["Properties"]
        trust = props["AssumeRolePolicyDocument"]["Statement"]
        assert [s["Principal"] for s in trust] == [{"Service": PRINCIPALS[title]}], title
        if title == "BackupRole":
            # An AWS managed policy only here, and only the one for taking backups: never the restore policy.
            assert props["ManagedPolicyArns"] == BACKUP_ONLY and not props.get("Policies")
            continue
        assert not props.get("ManagedPolicyArns"), f"{title} has an AWS managed policy"
        statements = [s for p in props["Policies"] for s in p["PolicyDocument"]["Statement"]]
        got = {s["Sid"]: (s["Action"], s["Resource"], s.get("Condition")) for s in statements}
        assert len(got) == len(statements), f"{title}: statements without a unique Sid"
        assert all(s["Effect"] == "Allow" for s in statements)
        assert json.dumps(got, sort_keys=True) == json.dumps(allowed[title], sort_keys=True), title


@combos
def test_ecs_exec_only_where_an_operator_needs_it(combo: tuple) -> None:
    """Web and Sidekiq (and one-off tasks, which share their role): yes. Postgres, Redis, streaming: no, and
    their task roles cannot open a session channel."""
    app = stacks(combo)["app"]["Resources"]
    for res in app.values():
        if res["Type"] != "AWS::ECS::Service":
            continue
        name = res["Properties"]["ServiceName"]
        definition = res["Properties"]["TaskDefinition"]
        refs = [d["Ref"] for d in definition["Fn::If"][1:]] if "Fn::If" in definition else [definition["Ref"]]
        td = app[refs[0]]["Properties"]
        names = {c["Name"] for c in td["ContainerDefinitions"]}
        wants = bool(names & {"web", "sidekiq"})
        assert res["Properties"]["EnableExecuteCommand"] is wants, name
        for ref in refs:
            role = app[ref]["Properties"].get("TaskRoleArn", {}).get("Fn::GetAtt", [None])[0]
            if names == {"streaming"}:
                assert role is None  # no AWS API at all: no credentials
            elif names == {"postgres"}:
                assert role == "PostgresTaskRole"
            elif names == {"redis"}:
                assert role == "DataTaskRole"
            elif names & {"postgres", "redis"}:  # the one task: Mastodon with its data stores
                assert role == "ServerTaskRole"
            elif "web" in names and combo[5] == "direct":
                assert role == "FrontTaskRole"  # Mastodon's role plus Caddy's certificate directory
            else:
                assert role == "MastodonTaskRole"
    cluster = app["Cluster"]["Properties"]["Configuration"]["ExecuteCommandConfiguration"]
    assert cluster["KmsKeyId"] == imported("KeyArn")
    assert app["ExecLogGroup"]["Properties"]["KmsKeyId"] == imported("KeyArn")


@combos
def test_one_customer_managed_key_whose_logs_grant_covers_the_exec_transcripts(combo: tuple) -> None:
    """One key per server (issue 12: each key costs $1/month and more once rotated); CloudWatch Logs may use it
    for this account's and region's log groups, the Exec transcripts' among them, and for no other account's."""
    from tests.iam_policy import ACCOUNT, REGION, Request, decide, resolve

    built = stacks(combo)
    keys = {k: v for t in built.values() for k, v in t["Resources"].items() if v["Type"] == "AWS::KMS::Key"}
    assert list(keys) == ["EncryptionKey"]
    key = keys["EncryptionKey"]
    assert key["DeletionPolicy"] == "Retain" and key["Properties"]["EnableKeyRotation"] is True
    statements = {s["Sid"]: s for s in key["Properties"]["KeyPolicy"]["Statement"]}
    assert set(statements) == {"AccountAdmin", "CloudWatchLogs", "AlarmsToSns"}
    logs = dict(statements["CloudWatchLogs"])
    principal = logs.pop("Principal")["Service"]
    assert principal == {"Fn::Join": ["", ["logs.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
    policy = {"Version": "2012-10-17", "Statement": [resolve(logs)]}
    group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/mastofargate/social/exec"
    assert built["app"]["Resources"]["ExecLogGroup"]["Properties"]["LogGroupName"] == "/mastofargate/social/exec"
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert decide([policy], Request(action, "*", {"kms:EncryptionContext:aws:logs:arn": group})) == "Allow"
        other = group.replace(ACCOUNT, "210987654321")
        assert decide([policy], Request(action, "*", {"kms:EncryptionContext:aws:logs:arn": other})) != "Allow"
        assert decide([policy], Request(action, "*")) != "Allow"


@combos
def test_secret_parameters_accept_only_this_servers_secrets(combo: tuple) -> None:
    import re

    built = stacks(combo)
    assert [k for k in built["app"]["Parameters"] if k.endswith("SecretArn")] == ["SecretArn"]  # one secret
    for params in (built["app"]["Parameters"], built["data"]["Parameters"]):
        pattern = re.compile(params["SecretArn"]["AllowedPattern"])
        good = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mastofargate/social/server-AbC123"
        assert pattern.fullmatch(good)
        for bad in (
            good.replace("/social/", "/other/"),
            good.replace("/server-", "/app-"),
            good.replace("/server-", "/database-"),
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbC123",
            good + "x",
            "*",
        ):
            assert not pattern.fullmatch(bad), bad


@combos
def test_backup_vault_refuses_deleting_recovery_points(combo: tuple) -> None:
    vault = stacks(combo)["data"]["Resources"]["BackupVault"]["Properties"]
    policy = vault["AccessPolicy"]
    (statement,) = (json.loads(policy) if isinstance(policy, str) else policy)["Statement"]
    assert statement["Effect"] == "Deny" and statement["Principal"] == {"AWS": "*"}
    assert sorted(statement["Action"]) == ["backup:DeleteRecoveryPoint", "backup:UpdateRecoveryPointLifecycle"]
    assert "Condition" not in statement  # nobody is exempt, administrators included


@combos
def test_schedules_have_a_dead_letter_queue_and_an_alarm(combo: tuple) -> None:
    app = stacks(combo)["app"]["Resources"]
    queue = app["ScheduleDeadLetterQueue"]["Properties"]
    assert queue["KmsMasterKeyId"] == "alias/aws/sqs" and queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    schedules = [r for r in app.values() if r["Type"] == "AWS::Scheduler::Schedule"]
    assert schedules
    for s in schedules:
        target = s["Properties"]["Target"]
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}}
        assert target["EcsParameters"]["PropagateTags"] == "TASK_DEFINITION"  # needs ecs:TagResource: allowed
    alarm = app["ScheduleDeadLetterAlarm"]["Properties"]
    assert alarm["Namespace"] == "AWS/SQS" and alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    queue_name = {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "QueueName"]}
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": queue_name}]
    assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
