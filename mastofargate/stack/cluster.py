"""The ECS cluster: Fargate and Fargate Spot capacity, ECS Exec with encrypted session logs, and the
Cloud Map namespace through which Mastodon finds a Postgres or Redis task."""

from __future__ import annotations

from troposphere import Ref, ecs, servicediscovery

from mastofargate import names
from mastofargate.sizing import TaskGroup
from mastofargate.stack.context import Build

NAMESPACE_SUFFIX = "internal"


def namespace(b: Build) -> str:
    """Private DNS zone in which task-based Postgres and Redis are found (postgres.<name>.internal)."""
    return f"{b.name}.{NAMESPACE_SUFFIX}"


DATA_ROLES = ("postgres", "redis")


def found_by_name(b: Build, task: TaskGroup) -> list[str]:
    """What in this task others find by its Cloud Map name: Postgres/Redis (Mastodon in other tasks and the
    one-off tasks), and streaming in a task without web (the direct edge's Caddy, which runs beside web).
    Streaming packed with web is reached on 127.0.0.1 and needs no name."""
    found = [r for r in DATA_ROLES if task.has(r)]
    if b.config.deployment.edge == "direct" and task.has("streaming") and not task.has("web"):
        found.append("streaming")
    return found


def needs_namespace(b: Build) -> bool:
    """The private zone costs $0.50 a month (a Route 53 hosted zone): made only when some task is found by name.
    One-off tasks reach a packed Postgres/Redis by the same name, so the one-task layout still needs it."""
    return any(found_by_name(b, task) for task in b.config.tasks)


def add(b: Build) -> None:
    t = b.app
    cluster = b.add(
        t,
        ecs.Cluster(
            "Cluster",
            ClusterName=names.cluster(b.name),
            ClusterSettings=[
                ecs.ClusterSetting(
                    Name="containerInsights", Value="enabled" if b.config.deployment.container_insights else "disabled"
                )
            ],
            Configuration=ecs.ClusterConfiguration(
                ExecuteCommandConfiguration=ecs.ExecuteCommandConfiguration(
                    KmsKeyId=b.imported("KeyArn"),  # tasks may use it only for sessions: stack/keys.py
                    Logging="OVERRIDE",
                    LogConfiguration=ecs.ExecuteCommandLogConfiguration(
                        CloudWatchLogGroupName=Ref("ExecLogGroup"), CloudWatchEncryptionEnabled=True
                    ),
                )
            ),
        ),
        "ECS cluster running every Mastodon task",
        skip=[("CKV_AWS_65", "Container Insights costs extra; opt in with deployment.container_insights")]
        if not b.config.deployment.container_insights
        else [],
    )
    b.add(
        t,
        ecs.ClusterCapacityProviderAssociations(
            "ClusterCapacity",
            Cluster=Ref(cluster),
            CapacityProviders=["FARGATE", "FARGATE_SPOT"],
            DefaultCapacityProviderStrategy=[ecs.CapacityProviderStrategy(CapacityProvider="FARGATE", Weight=1)],
        ),
        "Fargate and Fargate Spot capacity for the cluster",
    )
    if needs_namespace(b):
        b.add(
            t,
            servicediscovery.PrivateDnsNamespace(
                "Namespace", Name=namespace(b), Vpc=b.imported("VpcId"), Description="Postgres/Redis tasks by name"
            ),
            f"Private DNS zone {namespace(b)} for task-based Postgres/Redis",
        )
