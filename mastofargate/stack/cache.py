"""Redis for Mastodon: ElastiCache (Valkey or Redis OSS >= 7, TLS and an auth token) in the data stack.

The alternative, Redis in a task persisting to EFS, is a container of an ECS service like the others
(services.py); its data directory lives on the EFS access point made in database.py. It serves verified TLS
only (`redis_tls`), in either layout: the deploy keeps a private CA in the redis secret (deploy/redistls.py),
Redis serves a certificate signed by it for `task_host`, and every Mastodon process trusts that CA on top of
the public roots, through files the wrapper `TRUST_SCRIPT` writes at start.

Why TLS only even where Mastodon shares Redis' task (the one-task layout): one-off tasks (migrations,
tootctl, scheduled cleanups) reach it across the VPC, and Redis cannot keep plaintext to loopback while
serving TLS to the VPC: its one `bind` applies to every listener (`port` and `tls-port` alike; redis.conf).
So the processes in Redis' own task use TLS too, on loopback (`LOOPBACK_NAMES` in the certificate, the URL
in the secret's `loopback_url`). What that costs was measured with the real entrypoint (bench/redis_tls.py):
about 5 us more of Redis' CPU per request on reused connections and 1 ms per new connection, ~18 KiB more
per open connection; on the 0.5 vCPU task, 1,000 requests/s would cost 1 % of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from troposphere import GetAtt, Ref, Tags, elasticache

from mastofargate.stack.cluster import NAMESPACE_SUFFIX
from mastofargate.stack.context import Build
from mastofargate.stack.network import REDIS_PORT
from mastofargate.stack.secrets import flat_key, secret_name

if TYPE_CHECKING:
    from mastofargate.config import Config
    from mastofargate.sizing import ServiceSize

# The wrapper (mastofargate/data/) every Mastodon container starts through when Redis speaks TLS: it writes
# the CA from REDIS_CA_CERT (a secret) to the files named by these variables, then runs the process.
TRUST_SCRIPT = "trust-redis-ca.sh"
CA_DIR = "/tmp/mastofargate-ca"  # the containers' /tmp is writable by the mastodon user (no read-only root)
# Ruby's OpenSSL (redis-client, and everything else in Rails: federation, S3, SMTP) reads its default store
# from SSL_CERT_FILE: the image's public roots plus the Redis CA, in one file.
RUBY_BUNDLE = f"{CA_DIR}/public-roots-and-redis-ca.pem"
# Node (the streaming server's ioredis) adds NODE_EXTRA_CA_CERTS to its built-in roots when it starts.
NODE_EXTRA = f"{CA_DIR}/redis-ca.pem"


# The names a client on loopback checks: redis-client and Node check an IP address against the certificate's
# IP SANs (127.0.0.1, what Mastodon's URL names), `localhost` against its DNS SANs (redis-cli by hand).
LOOPBACK_HOST = "127.0.0.1"
LOOPBACK_NAMES = ("localhost", LOOPBACK_HOST)


def _auth_token(b: Build) -> str:
    """The cache's AUTH token: a dynamic reference to `redis_password` of the server's one secret.

    Servers deployed before the one secret reference `mastofargate/{name}/redis:SecretString:password`; the
    deploy's migration (deploy/migrate_secrets.py) copies that value verbatim and verifies it BEFORE this
    template is applied. What we rely on (AWS documentation, checked for issue 12):
      - CloudFormation resolves a dynamic reference only when the reference string itself changes
        (knowledge-center "cloudformation-stack-update-secrets"), so this change is what makes it re-read;
      - AuthToken is not among AWS::ElastiCache::ReplicationGroup's createOnlyProperties (the resource
        schema cfn-lint ships), so the change updates the group in place through ModifyReplicationGroup,
        never a replacement; tests/test_secret_layout.py holds that the schema still says so;
      - ModifyReplicationGroup with an AuthToken and no AuthTokenUpdateStrategy uses ROTATE, which keeps the
        old token valid beside the new one; the "new" token is the same string, so no client is cut off.
    """
    return "{{resolve:secretsmanager:" + secret_name(b.name) + ":SecretString:" + flat_key("redis", "password") + "}}"


def redis_tls(config: Config) -> bool:
    """Redis runs in a task (ours, not ElastiCache's, whose TLS has Amazon's public certificate): verified
    TLS with the server's CA for every client, across the VPC and on loopback, nothing in plain."""
    return config.deployment.cache == "task"


def task_host(config: Config, name: str) -> str:
    """The DNS name of the task holding Redis in the server's Cloud Map namespace (cluster.namespace; `redis`
    when it has a task of its own, the one task's name otherwise): the name its certificate is issued for and
    clients in other tasks check."""
    holder = config.task_of(config.redis_task.name)
    if holder is None:
        raise ValueError("no task holds Redis")
    return f"{holder.name}.{name}.{NAMESPACE_SUFFIX}"


def shares_task(config: Config) -> bool:
    """Mastodon's processes run in the task holding Redis (the one-task layout): they reach it on loopback,
    so its certificate also names `LOOPBACK_NAMES`."""
    holder = config.task_of(config.redis_task.name)
    return holder is not None and any(r not in ("redis", "postgres") for r in holder.roles)


def certificate_names(config: Config) -> tuple[str, ...]:
    """The names after `task_host` that Redis' certificate carries (tlscert.issue_server's extra_names)."""
    return LOOPBACK_NAMES if shares_task(config) else ()


def on_loopback(config: Config, process: ServiceSize | None) -> bool:
    """`process` (a row of the sizing table; None for a one-off task) runs in the task holding Redis."""
    holder = config.task_of(config.redis_task.name)
    return process is not None and holder is not None and any(c.name == process.name for c in holder.containers)


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
            AuthToken=_auth_token(b),
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
