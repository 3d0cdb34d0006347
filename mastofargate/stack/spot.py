"""Spot without being stranded: the fallback to on-demand Fargate when Fargate Spot has no capacity.

ECS never falls back by itself (a Spot service just cannot place its task). Here: an EventBridge rule on
this cluster's `SERVICE_TASK_PLACEMENT_FAILURE` service action events whose capacity provider is
FARGATE_SPOT invokes a small Lambda (mastofargate/lambdas/spot_fallback.py) that moves that service to
on-demand FARGATE and tags it; an hourly rule lets the same Lambda return services to Spot when that cannot
cost an outage (see the Lambda's docstring); `mastofargate deploy` returns the rest (deploy/spot.py).

Keyed by capacity strategy, never by service names: the rule matches the cluster and the Spot provider,
and the whole thing exists only when a service of the template uses FARGATE_SPOT. The Lambda's role may
describe, update and tag only this cluster's services. Failed invocations go to a dead-letter queue with
an alarm.
"""

from __future__ import annotations

from typing import Any

from awacs import ecs as ecs_actions
from awacs import logs as logs_actions
from awacs import sqs as sqs_actions
from awacs.aws import Allow, ArnEquals, Condition, Statement
from troposphere import GetAtt, Ref, Sub, awslambda, events, logs, sqs

from mastofargate import names
from mastofargate.lambdas import source
from mastofargate.stack.context import Build
from mastofargate.stack.iam import least_privilege_role
from mastofargate.stack.observability import _alarm, log_group_name

SPOT = "FARGATE_SPOT"
RETRY_HOURS = 6  # how long a non-singleton service stays on on-demand before the Lambda tries Spot again
RETRY_SCHEDULE = "rate(1 hour)"
FUNCTION_SUFFIX = "spot-fallback"


def spot_services(b: Build) -> list[str]:
    """Logical ids of the template's ECS services whose capacity provider strategy uses Fargate Spot."""
    out = []
    for title, res in b.app.resources.items():
        if res.resource_type != "AWS::ECS::Service":
            continue
        strategy: list[Any] = res.properties.get("CapacityProviderStrategy") or []
        if any(getattr(item, "properties", {}).get("CapacityProvider") == SPOT for item in strategy):
            out.append(title)
    return out


def function_name(name: str) -> str:
    return f"{name}-{FUNCTION_SUFFIX}"


def add(b: Build) -> None:
    if not spot_services(b):
        return
    t = b.app
    arn = "arn:${AWS::Partition}:%s:${AWS::Region}:${AWS::AccountId}:%s"
    cluster = names.cluster(b.name)
    queue = b.add(
        t,
        sqs.Queue(
            "SpotFallbackDeadLetterQueue",
            QueueName=f"{b.name}-spot-fallback-dlq",
            MessageRetentionPeriod=14 * 24 * 3600,
            KmsMasterKeyId="alias/aws/sqs",
        ),
        "Spot fallback invocations that failed (kept 14 days)",
    )
    log_group = b.add(
        t,
        logs.LogGroup(
            "SpotFallbackLogGroup",
            LogGroupName=log_group_name(b, FUNCTION_SUFFIX),
            RetentionInDays=b.config.logs.retention_days,
            KmsKeyId=b.imported("KeyArn"),
        ),
        f"Logs of the Spot fallback: one JSON line per run, kept {b.config.logs.retention_days} days",
    )
    role = least_privilege_role(
        b,
        "SpotFallbackRole",
        "lambda.amazonaws.com",
        "Spot fallback: may switch only this cluster's services between Spot and on-demand",
        [
            Statement(
                Sid="SwitchOurServices",
                Effect=Allow,
                Action=[
                    ecs_actions.DescribeServices,
                    ecs_actions.UpdateService,
                    ecs_actions.TagResource,
                    ecs_actions.UntagResource,
                ],
                Resource=[Sub(arn % ("ecs", f"service/{cluster}/*"))],
            ),
            Statement(
                Sid="ListOurServices",
                Effect=Allow,
                Action=[ecs_actions.ListServices],
                Resource=["*"],  # ListServices has no resource type; the condition scopes it
                Condition=Condition(ArnEquals("ecs:cluster", GetAtt("Cluster", "Arn"))),
            ),
            Statement(
                Sid="WriteOwnLog",
                Effect=Allow,
                Action=[logs_actions.CreateLogStream, logs_actions.PutLogEvents],
                Resource=[GetAtt(log_group, "Arn")],  # "log-group:NAME:*": its streams
            ),
            Statement(
                Sid="DeadLetters",
                Effect=Allow,
                Action=[sqs_actions.SendMessage],
                Resource=[GetAtt(queue, "Arn")],
            ),
        ],
        template=t,
    )
    function = b.add(
        t,
        awslambda.Function(
            "SpotFallbackFunction",
            FunctionName=function_name(b.name),
            Description="Moves a Fargate Spot service to on-demand when Spot has no capacity, and back later",
            Runtime="python3.12",
            Architectures=["arm64"],
            Handler="index.handler",
            Code=awslambda.Code(ZipFile=source("spot_fallback")),
            MemorySize=128,
            Timeout=60,
            ReservedConcurrentExecutions=1,  # one switch at a time: two runs never race on one service
            Role=GetAtt(role, "Arn"),
            Environment=awslambda.Environment(Variables={"CLUSTER": cluster, "RETRY_HOURS": str(RETRY_HOURS)}),
            DeadLetterConfig=awslambda.DeadLetterConfig(TargetArn=GetAtt(queue, "Arn")),
            LoggingConfig=awslambda.LoggingConfig(LogGroup=Ref(log_group)),
        ),
        "Spot fallback: switches a service to on-demand when Spot cannot place it, and back",
        skip=[
            (
                "CKV_AWS_117",
                "no VPC: it calls only the ECS API; in the public subnets a Lambda gets no public address, so it "
                "would need a NAT gateway or an ECS endpoint (~$7+/month each) to reach it",
            ),
            ("CKV_AWS_173", "its environment holds only the cluster name and a number of hours: nothing secret"),
        ],
    )
    placement = b.add(
        t,
        events.Rule(
            "SpotPlacementFailureRule",
            Description="A Fargate Spot service of this cluster cannot place its task (no Spot capacity)",
            EventPattern={
                "source": ["aws.ecs"],
                "detail-type": ["ECS Service Action"],
                "detail": {
                    "eventName": ["SERVICE_TASK_PLACEMENT_FAILURE"],
                    "clusterArn": [GetAtt("Cluster", "Arn")],
                    "capacityProviderArns": [{"suffix": f"capacity-provider/{SPOT}"}],
                    "reason": [{"prefix": "RESOURCE:"}],
                },
            },
            State="ENABLED",
            Targets=[events.Target(Id="spot-fallback", Arn=GetAtt(function, "Arn"))],
        ),
        "Sends Spot placement failures of this cluster to the Spot fallback",
    )
    retry = b.add(
        t,
        events.Rule(
            "SpotRetryRule",
            Description=f"Hourly: services on the Spot fallback for {RETRY_HOURS} h go back to Spot where safe",
            ScheduleExpression=RETRY_SCHEDULE,
            State="ENABLED",
            Targets=[events.Target(Id="spot-retry", Arn=GetAtt(function, "Arn"))],
        ),
        "Lets the Spot fallback return services to Spot",
    )
    for rule in (placement, retry):
        b.add(
            t,
            awslambda.Permission(
                f"{rule.title}Permission",
                Action="lambda:InvokeFunction",
                FunctionName=Ref(function),
                Principal="events.amazonaws.com",
                SourceArn=GetAtt(rule, "Arn"),
            ),
            f"Lets {rule.title} invoke the Spot fallback",
        )
    _alarm(
        b,
        "SpotFallbackDeadLetterAlarm",
        "The Spot fallback failed to run (a service may be stuck without Spot capacity)",
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"QueueName": GetAtt(queue, "QueueName")},
        0,
        "Maximum",
        "GreaterThanThreshold",
    )
