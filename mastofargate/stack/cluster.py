"""The ECS cluster: Fargate and Fargate Spot capacity, ECS Exec with encrypted session logs, and the
Cloud Map namespace through which Mastodon finds a Postgres or Redis task."""

from __future__ import annotations

from troposphere import Ref, ecs, servicediscovery

from mastofargate import names
from mastofargate.stack.context import Build

NAMESPACE_SUFFIX = "internal"


def namespace(b: Build) -> str:
    """Private DNS zone in which task-based Postgres and Redis are found (postgres.<name>.internal)."""
    return f"{b.name}.{NAMESPACE_SUFFIX}"


def needs_namespace(b: Build) -> bool:
    """Task-based Postgres/Redis are found by name, and so is streaming by the direct edge's Caddy."""
    d = b.config.deployment
    return d.database == "task" or d.cache == "task" or d.edge == "direct"


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
