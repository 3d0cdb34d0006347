"""Logs and alarms for what breaks small servers: memory, 5xx, failed deployments, unhealthy targets,
a filling database disk, a full Redis, a Sidekiq backlog. Alarms go to the admin email through SNS.

The backlog metric comes from the queue-metrics sidecar (stack/queue_metrics.py, CloudWatch embedded
metric format). One CloudWatch dashboard (`dashboard_name`; three are free) shows the vital signs at a
glance: task CPU and memory, 5xx, queue wait and size, database connections and storage, Redis memory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from awacs import sns as sns_actions
from awacs.aws import Allow, PolicyDocument, Principal, Statement
from troposphere import GetAtt, Ref, Sub, cloudwatch, events, logs, sns

from mastofargate import names
from mastofargate.stack import queue_metrics
from mastofargate.stack.context import Build, logical

MEMORY_ALARM_PERCENT = 90
FIVE_XX_PER_5_MIN = 25
FREE_STORAGE_BYTES = 2 * 1024**3


def log_group_name(b: Build, service: str) -> str:
    return names.log_group(b.name, service)


def add_log_group(b: Build, service: str) -> logs.LogGroup:
    title = f"{logical(service)}LogGroup"
    if title in b.app.resources:
        return b.app.resources[title]
    return b.add(
        b.app,
        logs.LogGroup(
            title,
            LogGroupName=log_group_name(b, service),
            RetentionInDays=b.config.logs.retention_days,
            KmsKeyId=b.imported("KeyArn"),
        ),
        f"Logs of {service}, kept {b.config.logs.retention_days} days",
    )


def add(b: Build) -> None:
    t = b.app
    b.add(
        t,
        logs.LogGroup(
            "ExecLogGroup",
            LogGroupName=log_group_name(b, "exec"),
            RetentionInDays=b.config.logs.retention_days,
            # The server's one key (stack/keys.py); servers that had ExecKey keep it for the transcripts
            # written before the switch, until they expire (deploy/exec_key.py reads this retention).
            KmsKeyId=b.imported("KeyArn"),
        ),
        "Transcripts of ECS Exec sessions",
    )
    topic = b.add(
        t,
        sns.Topic(
            "AlarmTopic",
            TopicName=f"{b.name}-alarms",
            KmsMasterKeyId=b.imported("KeyArn"),
            Subscription=[sns.Subscription(Protocol="email", Endpoint=b.config.server.admin_email)],
        ),
        f"Alarm notifications to {b.config.server.admin_email}",
    )
    b.add(
        t,
        sns.TopicPolicy(
            "AlarmTopicPolicy",
            Topics=[Ref(topic)],
            PolicyDocument=PolicyDocument(
                Version="2012-10-17",
                Statement=[
                    Statement(
                        Sid="EventsAndAlarmsPublish",
                        Effect=Allow,
                        Principal=Principal("Service", ["events.amazonaws.com", "cloudwatch.amazonaws.com"]),
                        Action=[sns_actions.Publish],
                        Resource=[Ref(topic)],
                    )
                ],
            ),
        ),
        "Lets EventBridge and CloudWatch publish alarms",
    )
    b.add(
        t,
        events.Rule(
            "DeploymentFailedRule",
            Description="An ECS deployment failed and rolled back",
            EventPattern={
                "source": ["aws.ecs"],
                "detail-type": ["ECS Deployment State Change"],
                "resources": [
                    {
                        "prefix": Sub(
                            "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:service/" + b.name + "/"
                        )
                    }
                ],
                "detail": {"eventName": ["SERVICE_DEPLOYMENT_FAILED"]},
            },
            Targets=[events.Target(Id="alarms", Arn=Ref(topic))],
        ),
        "Emails when a service deployment fails (circuit breaker rolled back)",
    )
    for task in b.config.tasks:
        _memory_alarm(b, task.name)
    _alarm(
        b,
        "ScheduleDeadLetterAlarm",
        "A scheduled run (media or preview-card cleanup, nightly dump, restore drill) could not be started",
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"QueueName": GetAtt("ScheduleDeadLetterQueue", "QueueName")},
        0,
        "Maximum",
        "GreaterThanThreshold",
    )
    if b.config.deployment.edge == "alb":
        _load_balancer_alarms(b)
    if b.config.deployment.database == "rds":
        _alarm(
            b,
            "DatabaseStorageAlarm",
            "Less than 2 GiB free on the database disk",
            "AWS/RDS",
            "FreeStorageSpace",
            {"DBInstanceIdentifier": b.imported("DatabaseId")},
            FREE_STORAGE_BYTES,
            "Minimum",
            "LessThanThreshold",
        )
    _alarm(
        b,
        "SidekiqBacklogAlarm",
        f"A Sidekiq job has waited over {queue_metrics.BACKLOG_ALARM_SECONDS // 60} minutes in its queue",
        queue_metrics.NAMESPACE,
        "OldestJobSeconds",
        {"Server": b.name},
        queue_metrics.BACKLOG_ALARM_SECONDS,
        "Maximum",
        "GreaterThanThreshold",
    )
    _dashboard(b)
    if b.config.deployment.cache == "elasticache":
        _alarm(
            b,
            "CacheMemoryAlarm",
            "Redis memory above 90 %",
            "AWS/ElastiCache",
            "DatabaseMemoryUsagePercentage",
            {"ReplicationGroupId": b.imported("CacheId")},
            MEMORY_ALARM_PERCENT,
            "Maximum",
            "GreaterThanThreshold",
        )


def _load_balancer_alarms(b: Build) -> None:
    """Server errors and unhealthy web targets as the ALB sees them (the direct edge has no ALB: there, ECS's
    container health checks replace a failing task and the deployment alarm reports failed rollouts)."""
    _alarm(
        b,
        "LoadBalancer5xxAlarm",
        "More than 25 server errors in 5 minutes",
        "AWS/ApplicationELB",
        "HTTPCode_Target_5XX_Count",
        {"LoadBalancer": GetAtt("LoadBalancer", "LoadBalancerFullName")},
        FIVE_XX_PER_5_MIN,
        "Sum",
        "GreaterThanThreshold",
    )
    _alarm(
        b,
        "WebUnhealthyAlarm",
        "A web task failed its health check for 5 minutes",
        "AWS/ApplicationELB",
        "UnHealthyHostCount",
        {
            "LoadBalancer": GetAtt("LoadBalancer", "LoadBalancerFullName"),
            "TargetGroup": GetAtt("WebTargetGroup", "TargetGroupFullName"),
        },
        0,
        "Maximum",
        "GreaterThanThreshold",
    )


def _memory_alarm(b: Build, service: str) -> None:
    """Per ECS service (a task of several containers is measured as a whole: ECS reports per service)."""
    _alarm(
        b,
        f"{logical(service)}MemoryAlarm",
        f"{service} memory above {MEMORY_ALARM_PERCENT} % of its task",
        "AWS/ECS",
        "MemoryUtilization",
        {"ClusterName": b.name, "ServiceName": service},
        MEMORY_ALARM_PERCENT,
        "Maximum",
        "GreaterThanThreshold",
        depends=f"{logical(service)}Service",
    )


def _alarm(
    b: Build,
    title: str,
    description: str,
    namespace: str,
    metric: str,
    dims: dict[str, object],
    threshold: float,
    stat: str,
    op: str,
    depends: str | None = None,
) -> None:
    alarm = cloudwatch.Alarm(
        title,
        AlarmName=f"{b.name}-{title.removesuffix('Alarm')}",
        AlarmDescription=description,
        Namespace=namespace,
        MetricName=metric,
        Dimensions=[cloudwatch.MetricDimension(Name=k, Value=v) for k, v in dims.items()],
        Statistic=stat,
        Period=300,
        EvaluationPeriods=1,
        Threshold=threshold,
        ComparisonOperator=op,
        TreatMissingData="notBreaching",
        AlarmActions=[Ref("AlarmTopic")],
        OKActions=[Ref("AlarmTopic")],
    )
    if depends:
        alarm.DependsOn = [depends]
    b.add(b.app, alarm, f"Alarm: {description}")


def dashboard_name(name: str) -> str:
    return name


def dashboard_url(name: str, region: str) -> str:
    return f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#dashboards/dashboard/{name}"


def _widget(
    title: str, metrics: Sequence[Sequence[object]], x: int, y: int, stat: str = "Average"
) -> dict[str, object]:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "region": "${AWS::Region}",
            "view": "timeSeries",
            "stat": stat,
            "period": 300,
            "metrics": metrics,
        },
    }


def _dashboard(b: Build) -> None:
    """The server's vital signs on one page (a Sub template: region, load balancer, database ids)."""
    cfg, name = b.config, b.name
    services = [t.name for t in cfg.tasks]
    ecs_metric = [["AWS/ECS", "CPUUtilization", "ClusterName", name, "ServiceName", s] for s in services]
    mem_metric = [["AWS/ECS", "MemoryUtilization", "ClusterName", name, "ServiceName", s] for s in services]
    lb = "${LoadBalancer.LoadBalancerFullName}"
    queue = [
        [queue_metrics.NAMESPACE, "OldestJobSeconds", "Server", name, {"stat": "Maximum", "yAxis": "left"}],
        [queue_metrics.NAMESPACE, "EnqueuedJobs", "Server", name, {"stat": "Maximum", "yAxis": "right"}],
        [queue_metrics.NAMESPACE, "RetryJobs", "Server", name, {"stat": "Maximum", "yAxis": "right"}],
        [queue_metrics.NAMESPACE, "DeadJobs", "Server", name, {"stat": "Maximum", "yAxis": "right"}],
    ]
    if cfg.deployment.edge == "alb":
        errors = _widget(
            "Server errors (5xx)",
            [
                ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer", lb],
                ["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "LoadBalancer", lb],
            ],
            0,
            6,
            "Sum",
        )
    else:  # the direct edge: its certificate's days left (stack/edge_dns.py) where the ALB's errors were
        from mastofargate.stack.edge_dns import CERT_METRIC, METRIC_NAMESPACE

        errors = _widget(
            "TLS certificate: days left", [[METRIC_NAMESPACE, CERT_METRIC, "Server", name]], 0, 6, "Minimum"
        )
    widgets = [
        _widget("Task CPU %", ecs_metric, 0, 0, "Maximum"),
        _widget("Task memory %", mem_metric, 12, 0, "Maximum"),
        errors,
        _widget("Sidekiq: oldest job wait (s, left), jobs (right)", queue, 12, 6, "Maximum"),
    ]
    variables: dict[str, object] = {}
    if cfg.deployment.database == "rds":
        variables["DatabaseId"] = b.imported("DatabaseId")
        db = ["AWS/RDS", "DatabaseConnections", "DBInstanceIdentifier", "${DatabaseId}"]
        disk = ["AWS/RDS", "FreeStorageSpace", "DBInstanceIdentifier", "${DatabaseId}", {"stat": "Minimum"}]
        widgets += [
            _widget("Database connections", [db], 0, 12, "Maximum"),
            _widget("Database free storage", [disk], 12, 12),
        ]
    else:
        variables["FileSystemId"] = b.imported("FileSystemId")
        efs = ["AWS/EFS", "StorageBytes", "FileSystemId", "${FileSystemId}", "StorageClass", "Total"]
        widgets.append(_widget("Postgres/Redis data on EFS (bytes)", [efs], 0, 12, "Maximum"))
    if cfg.deployment.cache == "elasticache":
        variables["CacheId"] = b.imported("CacheId")
        redis = ["AWS/ElastiCache", "DatabaseMemoryUsagePercentage", "ReplicationGroupId", "${CacheId}"]
        widgets.append(_widget("Redis memory %", [redis], 0, 18, "Maximum"))
    body = json.dumps({"widgets": widgets}, sort_keys=True)
    b.add(
        b.app,
        cloudwatch.Dashboard(
            "Dashboard",
            DashboardName=dashboard_name(name),
            DashboardBody=Sub(body, **variables) if variables else Sub(body),
        ),
        "The server's vital signs at a glance (status links here)",
    )
