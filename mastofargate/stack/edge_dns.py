"""The direct edge's moving parts outside the task: DNS that follows the task, and a certificate watch.

- DNS follower (mastofargate/lambdas/dns_follower.py): fired by every ECS task state change of the front
  service (the one whose task holds web and Caddy) and on a schedule; reads the public addresses of the
  service's healthy tasks (all of them: a front that autoscales, or a rolling deployment, runs several)
  and upserts the domain's A (and AAAA, when the tasks have IPv6) record, TTL 60. ECS sends no event when
  a task turns healthy (or unhealthy), so the schedule is what adds a scaled-out task: every minute when
  the front can run several tasks (~44,000 runs a month, cents), every 5 minutes for a singleton, whose
  events (start, stop) are all that move its record. One run at a time
  (reserved concurrency 1), failed asynchronous runs to a dead-letter queue, and an alarm when runs keep
  failing. Its role may change only that one name's A/AAAA records in the zone.
- Certificate watch (mastofargate/lambdas/cert_watch.py): every 6 hours, days left on the certificate the
  site serves, as metric CertificateDaysLeft; the alarm fires below 14 days (Caddy renews at ~30 days left,
  so renewal has then failed for two weeks) or when the certificate does not verify at all, twice in a row.
Both Lambdas are inline code (standard library and boto3 only), reviewable in the template.
"""

from __future__ import annotations

from awacs import cloudwatch as cloudwatch_actions
from awacs import ec2 as ec2_actions
from awacs import ecs as ecs_actions
from awacs import logs as logs_actions
from awacs import route53 as route53_actions
from awacs import sqs as sqs_actions
from awacs.aws import (
    Allow,
    ArnEquals,
    Condition,
    ForAllValuesStringEquals,
    PolicyDocument,
    Principal,
    Statement,
    StringEquals,
)
from troposphere import GetAtt, Output, Ref, Sub, awslambda, cloudwatch, events, logs, sqs

from mastofargate import names
from mastofargate.lambdas import source
from mastofargate.stack.context import Build
from mastofargate.stack.direct_edge import front_service
from mastofargate.stack.iam import least_privilege_role

METRIC_NAMESPACE = "Mastofargate/Edge"
CERT_METRIC = "CertificateDaysLeft"
CERT_ALARM_DAYS = 14
CERT_CHECK_HOURS = 6
RECONCILE_MINUTES = 5  # a singleton front: its events move the record, the schedule catches lost ones
RECONCILE_MINUTES_SCALING = 1  # a front of several tasks: a task that turns healthy sends no event
DNS_TTL = 60
RUNTIME = "python3.13"
FOLLOWER = "DnsFollower"
WATCH = "CertificateWatch"
_NO_VPC = ("CKV_AWS_117", "it calls only public AWS APIs and the public site; a VPC would need a NAT gateway")
_PLAIN_ENV = ("CKV_AWS_173", "its environment holds names (cluster, service, zone, host), never a secret")


def function_name(b: Build, kind: str) -> str:
    return f"{b.name}-{'dns-follower' if kind == FOLLOWER else 'cert-watch'}"


def reconcile_minutes(b: Build) -> int:
    """How often the DNS follower reconciles: every minute when the front service may run several tasks."""
    task = b.config.task_of("web")
    return RECONCILE_MINUTES_SCALING if task is not None and task.max > 1 else RECONCILE_MINUTES


def _every(minutes: int) -> str:
    return "1 minute" if minutes == 1 else f"{minutes} minutes"  # EventBridge's rate() wants the singular


def add(b: Build) -> None:
    t = b.app
    cfg = b.config
    zone = str(cfg.aws.hosted_zone_id)
    host = cfg.server.host
    service = front_service(b)
    minutes = reconcile_minutes(b)
    dlq = b.add(
        t,
        sqs.Queue(
            "EdgeDeadLetterQueue",
            QueueName=f"{b.name}-edge-dead-letters",
            MessageRetentionPeriod=14 * 24 * 3600,
            KmsMasterKeyId="alias/aws/sqs",  # SQS's own key: Lambda needs no KMS permission to drop a message
        ),
        "Runs of the DNS follower or certificate watch that failed after Lambda's retries (alarmed)",
    )
    cluster_arn = GetAtt("Cluster", "Arn")
    follower_statements = [
        Statement(
            Sid="ListServiceTasks",
            Effect=Allow,
            Action=[ecs_actions.ListTasks],
            Resource=["*"],  # ListTasks names a container instance, if anything; the condition keeps the cluster
            Condition=Condition(ArnEquals("ecs:cluster", cluster_arn)),
        ),
        Statement(
            Sid="DescribeServiceTasks",
            Effect=Allow,
            Action=[ecs_actions.DescribeTasks],
            Resource=[Sub(f"arn:${{AWS::Partition}}:ecs:${{AWS::Region}}:${{AWS::AccountId}}:task/{b.name}/*")],
            Condition=Condition(ArnEquals("ecs:cluster", cluster_arn)),
        ),
        # DescribeNetworkInterfaces supports no resource-level permission: read-only, addresses of the account.
        Statement(
            Sid="ReadTaskAddress",
            Effect=Allow,
            Action=[ec2_actions.DescribeNetworkInterfaces],
            Resource=["*"],
        ),
        Statement(
            Sid="ReadRecords",
            Effect=Allow,
            Action=[route53_actions.ListResourceRecordSets],
            Resource=[Sub(f"arn:${{AWS::Partition}}:route53:::hostedzone/{zone}")],
        ),
        Statement(
            Sid="ChangeOwnRecordOnly",
            Effect=Allow,
            Action=[route53_actions.ChangeResourceRecordSets],
            Resource=[Sub(f"arn:${{AWS::Partition}}:route53:::hostedzone/{zone}")],
            # One condition operator holding the three keys (separate ones would overwrite each other).
            Condition=Condition(
                ForAllValuesStringEquals(
                    {
                        "route53:ChangeResourceRecordSetsNormalizedRecordNames": [host],
                        "route53:ChangeResourceRecordSetsRecordTypes": ["A", "AAAA"],
                        "route53:ChangeResourceRecordSetsActions": ["UPSERT", "DELETE"],
                    }
                )
            ),
        ),
    ]
    _function(
        b,
        FOLLOWER,
        "dns_follower",
        f"Points {host}'s A/AAAA records at the healthy {service} tasks",
        {
            "CLUSTER": names.cluster(b.name),
            "SERVICE": service,
            "HOSTED_ZONE_ID": zone,
            "RECORD_NAME": host,
            "TTL": str(DNS_TTL),
        },
        follower_statements,
        dlq,
    )
    _function(
        b,
        WATCH,
        "cert_watch",
        f"Publishes the days left on {host}'s certificate",
        {"RECORD_NAME": host, "SERVER": b.name, "NAMESPACE": METRIC_NAMESPACE},
        [
            Statement(
                Sid="PublishCertificateMetric",
                Effect=Allow,
                Action=[cloudwatch_actions.PutMetricData],
                Resource=["*"],  # PutMetricData has no resource; the namespace condition limits it
                Condition=Condition(StringEquals("cloudwatch:namespace", METRIC_NAMESPACE)),
            )
        ],
        dlq,
    )
    _trigger(
        b,
        "DnsFollowerTaskEvents",
        FOLLOWER,
        f"A task of {service} changed state: point DNS at the running one",
        event_pattern={
            "source": ["aws.ecs"],
            "detail-type": ["ECS Task State Change"],
            "detail": {"clusterArn": [cluster_arn], "group": [f"service:{service}"]},
        },
    )
    _trigger(
        b,
        "DnsFollowerSchedule",
        FOLLOWER,
        f"Every {_every(minutes)}: reconcile DNS with the healthy tasks (events can be lost or late, and none "
        "comes when a task turns healthy)",
        schedule=f"rate({_every(minutes)})",
    )
    _trigger(
        b,
        "CertificateWatchSchedule",
        WATCH,
        f"Every {CERT_CHECK_HOURS} hours: check the certificate the site serves",
        schedule=f"rate({CERT_CHECK_HOURS} hours)",
    )
    _alarms(b, dlq)
    t.add_output(Output("Url", Description="The server's address", Value=f"https://{host}"))


def _function(
    b: Build,
    kind: str,
    module: str,
    description: str,
    env: dict[str, str],
    statements: list[Statement],
    dlq: sqs.Queue,
) -> awslambda.Function:
    name = function_name(b, kind)
    log = b.add(
        b.app,
        logs.LogGroup(
            f"{kind}LogGroup",
            LogGroupName=names.log_group(b.name, name.removeprefix(f"{b.name}-")),
            RetentionInDays=b.config.logs.retention_days,
            KmsKeyId=b.imported("KeyArn"),
        ),
        f"Logs of the {name} Lambda, kept {b.config.logs.retention_days} days",
    )
    role = least_privilege_role(
        b,
        f"{kind}Role",
        "lambda.amazonaws.com",
        f"The {name} Lambda: {description[0].lower()}{description[1:]}, nothing else",
        [
            *statements,
            Statement(
                Sid="OwnLogs",
                Effect=Allow,
                Action=[logs_actions.CreateLogStream, logs_actions.PutLogEvents],
                Resource=[GetAtt(log, "Arn")],
            ),
            Statement(
                Sid="DeadLetters",
                Effect=Allow,
                Action=[sqs_actions.SendMessage],
                Resource=[GetAtt(dlq, "Arn")],
            ),
        ],
    )
    return b.add(
        b.app,
        awslambda.Function(
            kind,
            FunctionName=name,
            Description=description,
            Runtime=RUNTIME,
            Architectures=["arm64"],
            Handler="index.handler",
            Code=awslambda.Code(ZipFile=source(module)),
            Role=GetAtt(role, "Arn"),
            MemorySize=128,
            Timeout=30,
            ReservedConcurrentExecutions=1,  # one run at a time: two reconciles never race on the record
            Environment=awslambda.Environment(Variables=env),
            DeadLetterConfig=awslambda.DeadLetterConfig(TargetArn=GetAtt(dlq, "Arn")),
            LoggingConfig=awslambda.LoggingConfig(LogGroup=Ref(log)),
        ),
        f"Lambda {name}: {description}",
        skip=[_NO_VPC, _PLAIN_ENV],
    )


def _trigger(
    b: Build,
    title: str,
    kind: str,
    description: str,
    *,
    event_pattern: dict[str, object] | None = None,
    schedule: str | None = None,
) -> None:
    props: dict[str, object] = dict(
        Description=description,
        State="ENABLED",
        Targets=[
            events.Target(
                Id=kind,
                Arn=GetAtt(kind, "Arn"),
                RetryPolicy=events.RetryPolicy(MaximumRetryAttempts=2, MaximumEventAgeInSeconds=600),
                DeadLetterConfig=events.DeadLetterConfig(Arn=GetAtt("EdgeDeadLetterQueue", "Arn")),
            )
        ],
    )
    if event_pattern is not None:
        props["EventPattern"] = event_pattern
    if schedule is not None:
        props["ScheduleExpression"] = schedule
    rule = b.add(b.app, events.Rule(title, **props), description)
    b.add(
        b.app,
        awslambda.Permission(
            f"{title}Permission",
            FunctionName=Ref(kind),
            Action="lambda:InvokeFunction",
            Principal="events.amazonaws.com",
            SourceArn=GetAtt(rule, "Arn"),
        ),
        f"Lets the rule {title} invoke the {kind} Lambda",
    )
    if title == "DnsFollowerTaskEvents":
        # EventBridge delivers to the dead-letter queue only with permission on the queue itself.
        b.add(
            b.app,
            sqs.QueuePolicy(
                "EdgeDeadLetterQueuePolicy",
                Queues=[Ref("EdgeDeadLetterQueue")],
                PolicyDocument=PolicyDocument(
                    Version="2012-10-17",
                    Statement=[
                        Statement(
                            Sid="EventBridgeDeadLetters",
                            Effect=Allow,
                            Principal=Principal("Service", "events.amazonaws.com"),
                            Action=[sqs_actions.SendMessage],
                            Resource=[GetAtt("EdgeDeadLetterQueue", "Arn")],
                            Condition=Condition(
                                ArnEquals(
                                    "aws:SourceArn",
                                    [
                                        GetAtt("DnsFollowerTaskEvents", "Arn"),
                                        GetAtt("DnsFollowerSchedule", "Arn"),
                                        GetAtt("CertificateWatchSchedule", "Arn"),
                                    ],
                                )
                            ),
                        )
                    ],
                ),
            ),
            "Lets the edge's EventBridge rules drop undeliverable events in its dead-letter queue",
        )


def _alarms(b: Build, dlq: sqs.Queue) -> None:
    def alarm(title: str, description: str, **props: object) -> None:
        b.add(
            b.app,
            cloudwatch.Alarm(
                title,
                AlarmName=f"{b.name}-{title.removesuffix('Alarm')}",
                AlarmDescription=description,
                AlarmActions=[Ref("AlarmTopic")],
                OKActions=[Ref("AlarmTopic")],
                **props,
            ),
            f"Alarm: {description}",
        )

    alarm(
        "DnsFollowerErrorsAlarm",
        f"The DNS follower has failed for 15 minutes: {b.config.server.host} may not point at the serving tasks",
        Namespace="AWS/Lambda",
        MetricName="Errors",
        Dimensions=[cloudwatch.MetricDimension(Name="FunctionName", Value=Ref(FOLLOWER))],
        Statistic="Sum",
        Period=300,
        EvaluationPeriods=3,
        DatapointsToAlarm=3,
        Threshold=0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
    )
    alarm(
        "EdgeDeadLetterAlarm",
        "A DNS-follower or certificate-watch run failed for good (see the edge dead-letter queue)",
        Namespace="AWS/SQS",
        MetricName="ApproximateNumberOfMessagesVisible",
        Dimensions=[cloudwatch.MetricDimension(Name="QueueName", Value=GetAtt(dlq, "QueueName"))],
        Statistic="Maximum",
        Period=300,
        EvaluationPeriods=1,
        Threshold=0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
    )
    alarm(
        "CertificateExpiryAlarm",
        f"{b.config.server.host}'s certificate expires in under {CERT_ALARM_DAYS} days or does not verify: "
        "Caddy's renewals have been failing (see the caddy log group)",
        Namespace=METRIC_NAMESPACE,
        MetricName=CERT_METRIC,
        Dimensions=[cloudwatch.MetricDimension(Name="Server", Value=b.name)],
        Statistic="Minimum",
        Period=CERT_CHECK_HOURS * 3600,
        EvaluationPeriods=2,
        DatapointsToAlarm=2,
        Threshold=CERT_ALARM_DAYS,
        ComparisonOperator="LessThanThreshold",
        TreatMissingData="notBreaching",
    )
