"""ECS services: task definitions, services and autoscaling for every row of the sizing profile.

What a service looks like is decided by its `ServiceSize` row (role, size, counts, singleton), not by
wiring per name: a profile that splits Sidekiq three ways gets three services from the same code.
Singletons (the Sidekiq process with the scheduler queue, a Postgres or Redis task that owns its data
directory) deploy with minimumHealthyPercent 0 / maximumPercent 100, so two never run at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from troposphere import AWSHelperFn, Equals, GetAtt, If, Join, Ref, applicationautoscaling, ecs, servicediscovery

from mastofargate.sizing import ServiceSize
from mastofargate.stack import cache, direct_edge, entrypoints, pgbackrest, queue_metrics
from mastofargate.stack.backups import METRIC_NAMESPACE
from mastofargate.stack.context import Build, logical
from mastofargate.stack.database import DB_USER
from mastofargate.stack.edge import HEALTH_PATHS, PORTS
from mastofargate.stack.environment import mastodon_environment
from mastofargate.stack.network import POSTGRES_PORT, REDIS_PORT, subnet_ids
from mastofargate.stack.observability import add_log_group
from mastofargate.stack.secrets import SecretRef, mastodon_secrets

SIDEKIQ_READY_FILE = "/opt/mastodon/tmp/sidekiq_process_has_started_and_will_begin_processing_jobs"
POSTGRES_IMAGE = "public.ecr.aws/docker/library/postgres:{major}-bookworm"
REDIS_IMAGE = "public.ecr.aws/docker/library/redis:7.4-bookworm"
CPU_TARGET_PERCENT = 60
SERVICES_ON = "ServicesOn"
JOB_CONTAINER = "mastodon"  # the container of every one-off task (migrations, tootctl, maintenance)

COMMANDS = {
    "web": ["bundle", "exec", "puma", "-C", "config/puma.rb"],
    "streaming": ["node", "./streaming/index.js"],
}


def container_name(size: ServiceSize) -> str:
    return size.role


def image(b: Build, role: str) -> Join | str:
    if role == "streaming":
        return Join("", [b.imported("StreamingRepositoryUri"), ":", b.app_param("StreamingImageTag")])
    if role == "postgres":
        # the backup image: this Postgres (POSTGRES_IMAGE is its base) plus pgBackRest and pgtask.py
        return Join("", [b.imported("BackupRepositoryUri"), ":", b.app_param("BackupImageTag")])
    if role == "redis":
        return REDIS_IMAGE
    return Join("", [b.imported("MastodonRepositoryUri"), ":", b.app_param("MastodonImageTag")])


def grace_period(size: ServiceSize) -> int:
    """Seconds ECS ignores failing health checks after start: Puma boots slowly on a quarter vCPU."""
    if size.role == "web":
        return 180 if size.cpu <= 256 else 120
    return 30


def trust_entrypoint() -> list[str]:
    """The EntryPoint of Mastodon containers when Redis speaks TLS: the wrapper (mastofargate/data/
    trust-redis-ca.sh) writes the Redis CA where Ruby and Node read it, then execs the container's command
    (the task's Command, or a one-off task's override). It replaces the images' `tini --`: ECS runs an init
    process of its own in every container (InitProcessEnabled)."""
    return ["sh", "-c", entrypoints.script(cache.TRUST_SCRIPT), "mastofargate-ca"]


def health_check(size: ServiceSize, *, redis_tls: bool = False) -> ecs.HealthCheck:
    curl = "curl -sf --noproxy localhost localhost:{port}{path} || exit 1"
    cmd = {
        "web": curl.format(port=PORTS["web"], path=HEALTH_PATHS["web"]),
        "streaming": curl.format(port=PORTS["streaming"], path=HEALTH_PATHS["streaming"]),
        "sidekiq": f"test -e {SIDEKIQ_READY_FILE}",
        "postgres": 'pg_isready -U "$POSTGRES_USER" -d "$POSTGRES_DB" -h 127.0.0.1',
        # REDISCLI_AUTH, not -a: a password in argv is readable by every process through /proc.
        # With TLS: loopback inside the task, asking the server it runs beside whether it answers (not who it
        # is); --insecure because the certificate names redis.<namespace>, not 127.0.0.1.
        "redis": 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -h 127.0.0.1 -p "$REDIS_PORT"'
        + (" --tls --insecure" if redis_tls else "")
        + " ping | grep -q PONG",
    }[size.role]
    return ecs.HealthCheck(
        Command=["CMD-SHELL", cmd], Interval=15, Timeout=5, Retries=3, StartPeriod=min(grace_period(size), 300)
    )


def _secrets(b: Build, refs: list[SecretRef]) -> list[ecs.Secret]:
    return [ecs.Secret(Name=r.env, ValueFrom=r.value_from(b)) for r in sorted(refs, key=lambda r: r.env)]


def _env(env: Mapping[str, object]) -> list[ecs.Environment]:
    return [ecs.Environment(Name=k, Value=v) for k, v in sorted(env.items())]


def container(
    b: Build,
    size: ServiceSize,
    job: str | None = None,
    command: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
) -> ecs.ContainerDefinition:
    """The one container of a service's task (from its sizing row), or of a one-off `job`'s task. A job's
    container is always named `mastodon`; its logs go to the job's own group and stream prefix."""
    role = size.role
    log_name = job or size.name
    log = add_log_group(b, log_name)
    props: dict[str, object] = dict(
        Name=JOB_CONTAINER if job else container_name(size),
        Image=image(b, role),
        Essential=True,
        Memory=size.container_memory,
        MemoryReservation=size.container_reservation,
        LogConfiguration=ecs.LogConfiguration(
            LogDriver="awslogs",
            Options={
                "awslogs-group": Ref(log),
                "awslogs-region": Ref("AWS::Region"),
                "awslogs-stream-prefix": log_name,
            },
        ),
        LinuxParameters=ecs.LinuxParameters(InitProcessEnabled=True),  # reaps zombies; needed by ECS Exec
        StopTimeout=120 if role in ("postgres", "redis", "sidekiq") else 30,
    )
    if role in ("web", "streaming", "sidekiq"):
        props["Command"] = command or (size.sidekiq_command() if role == "sidekiq" else COMMANDS[role])
        props["Environment"] = _env({**mastodon_environment(b, size, job=job is not None), **(extra_env or {})})
        props["Secrets"] = _secrets(b, mastodon_secrets(b, role))
        if cache.redis_tls(b.config):
            props["EntryPoint"] = trust_entrypoint()
    elif role == "postgres":
        # The shipped entrypoint: an EFS lock so one Postgres owns the data directory, fast shutdown on
        # SIGTERM, TLS, memory settings from the container budget (mastofargate/data/postgres-entrypoint.sh).
        props["EntryPoint"] = ["bash", "-c", entrypoints.script(entrypoints.POSTGRES), "mastofargate-postgres"]
        # continuous WAL archiving to the backup bucket (stack/pgbackrest.py), as `postgres -c` settings
        props["Command"] = [arg for k, v in pgbackrest.postgres_settings().items() for arg in ("-c", f"{k}={v}")]
        props["Environment"] = _env({**postgres_environment(b, size), **pgbackrest_environment(b)})
        props["Secrets"] = _secrets(b, [SecretRef("POSTGRES_PASSWORD", "database", "password")])
        props["MountPoints"] = [ecs.MountPoint(ContainerPath="/var/lib/postgresql/data", SourceVolume="data")]
    elif role == "redis":
        # The shipped entrypoint: append-only file (everysec) on EFS, password via stdin, never as root.
        props["EntryPoint"] = ["bash", "-c", entrypoints.script(entrypoints.REDIS), "mastofargate-redis"]
        tls = cache.redis_tls(b.config)
        props["Environment"] = _env(redis_environment(size, tls=tls))
        refs = [SecretRef("REDIS_PASSWORD", "redis", "password")]
        if tls:  # the server's certificate and key, signed by the CA (whose key stays in the secret)
            refs += [SecretRef("REDIS_TLS_CERT", "redis", "tls_cert"), SecretRef("REDIS_TLS_KEY", "redis", "tls_key")]
        props["Secrets"] = _secrets(b, refs)
        props["MountPoints"] = [ecs.MountPoint(ContainerPath="/data", SourceVolume="data")]
    if job is None:  # long-running services get a health check; one-off jobs just run
        props["HealthCheck"] = health_check(size, redis_tls=cache.redis_tls(b.config))
    if role in PORTS and job is None:
        props["PortMappings"] = [ecs.PortMapping(ContainerPort=PORTS[role], Protocol="tcp", Name=role)]
    elif role in ("postgres", "redis"):
        port = POSTGRES_PORT if role == "postgres" else REDIS_PORT
        props["PortMappings"] = [ecs.PortMapping(ContainerPort=port, Protocol="tcp", Name=role)]
    return ecs.ContainerDefinition(**props)


def postgres_environment(b: Build, size: ServiceSize) -> dict[str, str]:
    """The Postgres entrypoint's settings: its memory budget is the container's hard limit (the sizing table),
    from which it derives shared_buffers and the rest; TLS is on because Postgres is a separate task that
    Mastodon reaches across the VPC (issue 10: TLS between tasks)."""
    return {
        "POSTGRES_USER": "mastodon",
        "POSTGRES_DB": "mastodon_production",
        "PGDATA": PGDATA,
        "POSTGRES_MEMORY_MB": str(size.container_memory),
        "POSTGRES_MAX_CONNECTIONS": str(b.config.max_connections),
        "POSTGRES_TLS": "on",
    }


PGDATA = "/var/lib/postgresql/data/pgdata"


def pgbackrest_environment(b: Build) -> dict[str, object]:
    """pgBackRest's whole configuration (its repository in the backup bucket's pgbackrest/ prefix), and the
    keeper's schedule: a full backup every FULL_BACKUP_DAYS (the entrypoint runs it; see stack/backup_tasks.py
    for why a scheduled task cannot)."""
    env: dict[str, object] = dict(pgbackrest.repository_environment("", b.config.aws.region, pg_path=PGDATA))
    env["PGBACKREST_REPO1_S3_BUCKET"] = b.imported("BackupBucketName")
    env["PGBACKREST_PG1_USER"] = DB_USER
    env["POSTGRES_FULL_BACKUP_DAYS"] = str(pgbackrest.FULL_BACKUP_DAYS)
    # the keeper reports whether WAL reaches S3 (alarm WalArchiveFailing, stack/backup_tasks.py)
    env["POSTGRES_METRICS_NAMESPACE"] = METRIC_NAMESPACE
    env["POSTGRES_METRICS_SERVER"] = b.name
    env["AWS_DEFAULT_REGION"] = Ref("AWS::Region")  # Debian's boto3 1.26 reads this one
    return env


def redis_environment(size: ServiceSize, *, tls: bool) -> dict[str, str]:
    """The Redis entrypoint's settings: data on EFS (/data), never evicting (Sidekiq), a quarter of the
    container left for the AOF rewrite's fork and buffers. `tls` (cache.redis_tls: a separate task) serves
    TLS only, with the certificate the deploy signed with the server's CA (REDIS_TLS_CERT/KEY, secrets),
    which every Mastodon process verifies; off only where clients reach Redis over loopback."""
    return {
        "REDIS_DIR": "/data",
        "REDIS_PORT": str(REDIS_PORT),
        "REDIS_MAXMEMORY_MB": str(size.container_memory * 3 // 4),
        "REDIS_TLS": "on" if tls else "off",
    }


def task_definition(
    b: Build,
    title: str,
    family: str,
    size: ServiceSize,
    containers: list[ecs.ContainerDefinition],
    task_role: str | None,
    description: str,
) -> ecs.TaskDefinition:
    props: dict[str, object] = dict(
        Family=family,
        Cpu=str(size.cpu),
        Memory=str(size.memory),
        NetworkMode="awsvpc",
        RequiresCompatibilities=["FARGATE"],
        ExecutionRoleArn=GetAtt("ExecutionRole", "Arn"),
        ContainerDefinitions=containers,
        RuntimePlatform=ecs.RuntimePlatform(
            OperatingSystemFamily="LINUX", CpuArchitecture="ARM64" if b.config.deployment.arch == "arm64" else "X86_64"
        ),
    )
    if task_role is not None:
        props["TaskRoleArn"] = GetAtt(task_role, "Arn")
    if size.role in ("postgres", "redis"):
        props["Volumes"] = [
            ecs.Volume(
                Name="data",
                EFSVolumeConfiguration=ecs.EFSVolumeConfiguration(
                    FilesystemId=b.imported("FileSystemId"),
                    TransitEncryption="ENABLED",
                    AuthorizationConfig=ecs.AuthorizationConfig(
                        AccessPointId=b.imported(f"{size.role.capitalize()}AccessPointId"), IAM="ENABLED"
                    ),
                ),
            )
        ]
    if any(c.Name == direct_edge.CONTAINER for c in containers):
        props["Volumes"] = [*props.get("Volumes", []), *direct_edge.caddy_volumes(b)]  # type: ignore[misc]
    return b.add(b.app, ecs.TaskDefinition(title, **props), description)


def capacity_strategy(b: Build, size: ServiceSize) -> list[ecs.CapacityProviderStrategyItem]:
    """Spot for stateless services when enabled, keeping one on-demand task when a service runs two or
    more; the Postgres task never runs on Spot (a 2-minute warning is no way to stop a database)."""
    if not b.config.deployment.spot or size.role == "postgres":
        return [ecs.CapacityProviderStrategyItem(CapacityProvider="FARGATE", Weight=1)]
    if size.min >= 2:
        return [
            ecs.CapacityProviderStrategyItem(CapacityProvider="FARGATE", Base=1, Weight=0),
            ecs.CapacityProviderStrategyItem(CapacityProvider="FARGATE_SPOT", Weight=1),
        ]
    return [ecs.CapacityProviderStrategyItem(CapacityProvider="FARGATE_SPOT", Weight=1)]


def task_role(size: ServiceSize, direct: bool = False) -> str | None:
    """The task's IAM role; streaming has none: it calls no AWS API, so it gets no credentials at all. With the
    direct edge, web's task also mounts Caddy's certificates: a role of its own, so Sidekiq's cannot."""
    if size.role == "streaming":
        return None
    if size.role == "web" and direct:
        return direct_edge.TASK_ROLE
    return {"postgres": "PostgresTaskRole", "redis": "DataTaskRole"}.get(size.role, "MastodonTaskRole")


# ECS Exec only where an operator needs a Rails console or tootctl: never into a database or Redis, nor
# into streaming (nothing to do there); one-off tasks get it when the deploy starts them with it.
EXEC_ROLES = ("web", "sidekiq")


def _desired(b: Build, size: ServiceSize, count: int) -> int | AWSHelperFn:
    """Mastodon services wait at zero while a first install migrates; Postgres/Redis always run."""
    if size.role in ("postgres", "redis"):
        return count
    b.app_param("ServicesEnabled")
    if SERVICES_ON not in b.app.conditions:
        b.app.add_condition(SERVICES_ON, Equals(Ref("ServicesEnabled"), "true"))
    return If(SERVICES_ON, count, 0)


def add(b: Build) -> None:
    for size in b.config.all_services:
        _service(b, size)


def _service(b: Build, size: ServiceSize) -> None:
    t = b.app
    key = logical(size.name)
    containers = [container(b, size)]
    if size.role == "web" and direct_edge.enabled(b):
        containers.append(direct_edge.caddy_container(b, same_task_streaming=False))
    if queue_metrics.wanted(size):
        containers.append(_queue_metrics_sidecar(b, size))
    td = task_definition(
        b,
        f"{key}TaskDefinition",
        f"{b.name}-{size.name}",
        size,
        containers,
        task_role(size, direct_edge.enabled(b)),
        f"Task definition of {size.name} ({size.cpu / 1024:g} vCPU, {size.memory} MiB)",
    )
    security = {"postgres": "DatabaseSecurityGroupId", "redis": "CacheSecurityGroupId"}.get(
        size.role, "TaskSecurityGroupId"
    )
    props: dict[str, object] = dict(
        ServiceName=size.name,
        Cluster=Ref("Cluster"),
        TaskDefinition=Ref(td),
        DesiredCount=_desired(b, size, size.desired),
        CapacityProviderStrategy=capacity_strategy(b, size),
        PlatformVersion="LATEST",
        EnableExecuteCommand=size.role in EXEC_ROLES,
        PropagateTags="SERVICE",
        EnableECSManagedTags=True,
        DeploymentConfiguration=ecs.DeploymentConfiguration(
            MinimumHealthyPercent=size.minimum_healthy_percent,
            MaximumPercent=size.maximum_percent,
            DeploymentCircuitBreaker=ecs.DeploymentCircuitBreaker(Enable=True, Rollback=True),
        ),
        NetworkConfiguration=ecs.NetworkConfiguration(
            AwsvpcConfiguration=ecs.AwsvpcConfiguration(
                AssignPublicIp="ENABLED",
                Subnets=subnet_ids(b),
                SecurityGroups=[b.imported(security)]
                + ([b.imported(direct_edge.SECURITY_GROUP)] if size.role == "web" and direct_edge.enabled(b) else []),
            )
        ),
    )
    depends = ["ClusterCapacity"]
    if size.role in PORTS and not direct_edge.enabled(b):
        props["LoadBalancers"] = [
            ecs.LoadBalancer(
                ContainerName=container_name(size),
                ContainerPort=PORTS[size.role],
                TargetGroupArn=Ref(f"{size.role.capitalize()}TargetGroup"),
            )
        ]
        props["HealthCheckGracePeriodSeconds"] = grace_period(size)
        depends += ["HttpsListener", "StreamingRule"]
    # Found by name: Postgres/Redis by Mastodon, streaming by the direct edge's Caddy (in the web task).
    if size.role in ("postgres", "redis") or (size.role == "streaming" and direct_edge.enabled(b)):
        registry = b.add(
            t,
            servicediscovery.Service(
                f"{key}Discovery",
                Name=size.role,
                NamespaceId=Ref("Namespace"),
                DnsConfig=servicediscovery.DnsConfig(
                    DnsRecords=[servicediscovery.DnsRecord(Type="A", TTL=10)], RoutingPolicy="MULTIVALUE"
                ),
                HealthCheckCustomConfig=servicediscovery.HealthCheckCustomConfig(FailureThreshold=1),
            ),
            f"DNS name {size.role} for the {size.role} task",
        )
        props["ServiceRegistries"] = [ecs.ServiceRegistry(RegistryArn=GetAtt(registry, "Arn"))]
    service = ecs.Service(f"{key}Service", DependsOn=depends, **props)
    what = {
        "web": "Mastodon web (Puma)",
        "streaming": "Mastodon streaming API",
        "postgres": "Postgres task on EFS",
        "redis": "Redis task",
    }.get(size.role, f"Sidekiq ({', '.join(size.queue_names)})")
    b.add(t, service, f"{what}: {size.desired} task(s)" + (", never two at once" if size.singleton else ""))
    if size.max > size.min:
        _autoscaling(b, size, key)


def _queue_metrics_sidecar(b: Build, size: ServiceSize) -> ecs.ContainerDefinition:
    """The Sidekiq backlog publisher (stack/queue_metrics.py): Redis settings as the streaming server gets
    them (host/port or the rediss:// URL as a secret), logs in the Sidekiq service's group."""
    redis_env = {k: v for k, v in mastodon_environment(b, replace(size, role="streaming")).items() if "REDIS" in k}
    redis_secrets = [r for r in mastodon_secrets(b, "streaming") if r.env.startswith("REDIS_")]
    log = add_log_group(b, size.name)
    return queue_metrics.sidecar(b, size, log, REDIS_IMAGE, redis_env, _secrets(b, redis_secrets))


def _autoscaling(b: Build, size: ServiceSize, key: str) -> None:
    target = b.add(
        b.app,
        applicationautoscaling.ScalableTarget(
            f"{key}ScalableTarget",
            ServiceNamespace="ecs",
            ScalableDimension="ecs:service:DesiredCount",
            ResourceId=Join("/", ["service", b.name, GetAtt(f"{key}Service", "Name")]),
            MinCapacity=_desired(b, size, size.min),
            MaxCapacity=_desired(b, size, size.max),
        ),
        f"Lets {size.name} scale between {size.min} and {size.max} tasks",
    )
    b.add(
        b.app,
        applicationautoscaling.ScalingPolicy(
            f"{key}ScalingPolicy",
            PolicyName=f"{b.name}-{size.name}-cpu",
            PolicyType="TargetTrackingScaling",
            ScalingTargetId=Ref(target),
            TargetTrackingScalingPolicyConfiguration=applicationautoscaling.TargetTrackingScalingPolicyConfiguration(
                TargetValue=CPU_TARGET_PERCENT,
                ScaleInCooldown=300,
                ScaleOutCooldown=60,
                PredefinedMetricSpecification=applicationautoscaling.PredefinedMetricSpecification(
                    PredefinedMetricType="ECSServiceAverageCPUUtilization"
                ),
            ),
        ),
        f"Adds {size.name} tasks above {CPU_TARGET_PERCENT} % CPU, removes them below",
    )
