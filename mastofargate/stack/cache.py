"""Redis for Mastodon: ElastiCache (Valkey or Redis OSS >= 7, TLS and an auth token) in the data stack.

The alternative, a Redis task persisting to EFS, is an ECS service like the others (services.py);
its data directory lives on the EFS access point made in database.py.
"""

from __future__ import annotations

from troposphere import GetAtt, Ref, Tags, elasticache

from mastofargate.stack.context import Build
from mastofargate.stack.network import REDIS_PORT
from mastofargate.stack.secrets import secret_names


def add(b: Build) -> None:
    if b.config.deployment.cache != "elasticache":
        return
    ec = b.config.elasticache
    t = b.data
    subnets = b.add(
        t,
        elasticache.SubnetGroup(
            "CacheSubnetGroup", Description=f"{b.name} cache", SubnetIds=[Ref("PublicSubnet1"), Ref("PublicSubnet2")]
        ),
        "Subnets the cache may run in",
    )
    family = f"{ec.engine}{ec.engine_version.split('.')[0]}"
    params = b.add(
        t,
        elasticache.ParameterGroup(
            "CacheParameters",
            CacheParameterGroupFamily=family,
            Description=f"{b.name}: Sidekiq needs noeviction",
            Properties={"maxmemory-policy": "noeviction"},
        ),
        "Cache settings: never evict keys (Sidekiq's queues live here)",
    )
    group = b.add(
        t,
        elasticache.ReplicationGroup(
            "Cache",
            ReplicationGroupDescription=f"{b.name} Redis for Mastodon",
            Engine=ec.engine,
            EngineVersion=ec.engine_version,
            CacheNodeType=b.config.cache_node_type,
            NumCacheClusters=1,
            AutomaticFailoverEnabled=False,
            MultiAZEnabled=False,
            Port=REDIS_PORT,
            TransitEncryptionEnabled=True,
            AtRestEncryptionEnabled=True,
            KmsKeyId=GetAtt("EncryptionKey", "Arn"),
            AuthToken="{{resolve:secretsmanager:" + secret_names(b.name)["redis"] + ":SecretString:password}}",
            CacheSubnetGroupName=Ref(subnets),
            CacheParameterGroupName=Ref(params),
            SecurityGroupIds=[Ref("CacheSecurityGroup")],
            SnapshotRetentionLimit=3,
            SnapshotWindow="02:00-03:00",
            PreferredMaintenanceWindow="sun:05:00-sun:06:00",
            AutoMinorVersionUpgrade=True,
            Tags=Tags(Name=f"{b.name}-cache"),
        ),
        "Redis (ElastiCache): Sidekiq queues and home timelines",
    )
    # Home timelines live here (field notes: losing them empties every timeline), so snapshot on delete.
    group.DeletionPolicy = "Snapshot"
    group.UpdateReplacePolicy = "Snapshot"
    b.export("CacheId", Ref(group), "ElastiCache replication group id")
    b.export("CacheHost", GetAtt(group, "PrimaryEndPoint.Address"), "Redis primary endpoint")
