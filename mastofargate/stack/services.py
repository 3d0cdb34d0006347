"""ECS services: task definitions, services and autoscaling for every task of the sizing profile.

What a service looks like is decided by its `TaskGroup` (sizing.py: the rows it holds as containers, its
size, counts, singleton), not by wiring per name: a profile that splits Sidekiq three ways gets three
services from the same code, and a one-task layout one service of five containers. Singletons (a task
with the Sidekiq scheduler queue, or a Postgres or Redis that owns its data directory) deploy with
minimumHealthyPercent 0 / maximumPercent 100, so two never run at once.

A task of several containers (a packed task): the data stores start first and must be HEALTHY before
Mastodon's processes start, and (ECS stops containers in the reverse order of `dependsOn`) they stop
last, after Sidekiq has pushed its unfinished jobs back to Redis. Mastodon's processes restart in place
(the ECS container restart policy): a leaking Sidekiq comes back in the same task, same address, while
Postgres and Redis are never restarted under a running task's feet (they are essential: their exit
stops the task, and ECS starts a clean one that takes the data directory's lock again).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from troposphere import AWSHelperFn, Equals, GetAtt, If, Join, Ref, applicationautoscaling, ecs, servicediscovery

from mastofargate.sizing import ServiceSize, TaskGroup
from mastofargate.stack import cache, direct_edge, entrypoints, pgbackrest, queue_metrics
from mastofargate.stack.backups import METRIC_NAMESPACE
from mastofargate.stack.cluster import DATA_ROLES, found_by_name
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

# [ECS] stop timeouts of a packed task: Fargate allows at most 120 s per container, and a Spot interruption
# gives two minutes in all. ECS stops the app containers first and the data stores after them, so the two
# timeouts add up: Sidekiq's own shutdown timeout is 25 s (its default; Mastodon's sidekiq.yml sets none),
# Puma and Node stop faster; Postgres' fast shutdown and Redis' final fsync take seconds, 60 s covers a slow
# EFS. 30 + 60 = 90 s, inside the Spot warning.
PACKED_APP_STOP_SECONDS = 30
PACKED_DATA_STOP_SECONDS = 60
SPOT_WARNING_SECONDS = 120
# The ECS restart policy of Mastodon's containers: a container that ran at least this long before it
# failed is restarted in place (AWS's minimum period is 60 s; shorter runs stop the task, so a crash loop
# still reaches the deployment circuit breaker).
RESTART_ATTEMPT_PERIOD = 300
APP_ROLES = ("web", "streaming", "sidekiq")

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
    """Seconds ECS ignores failing health checks after start: Puma boots slowly on a quarter vCPU (or on half
    of one shared with Sidekiq's boot in the one task); Postgres may first wait for the EFS lock of a task
    that died (up to its POSTGRES_LOCK_WAIT, 150 s: an NFS lease)."""
    if size.role == "web":
        return 180 if size.cpu <= 512 else 120
    if size.role == "postgres":
        return 180
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
        # is: the Redis container has no copy of the CA, only its own certificate), hence --insecure.
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


def stop_timeout(role: str, packed: bool) -> int:
    """Seconds between SIGTERM and SIGKILL (see PACKED_*: a packed task's chain fits the Spot warning)."""
    if packed:
        return PACKED_DATA_STOP_SECONDS if role in DATA_ROLES else PACKED_APP_STOP_SECONDS
    return 120 if role in ("postgres", "redis", "sidekiq") else 30


def container(
    b: Build,
    size: ServiceSize,
    job: str | None = None,
    command: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
    task: TaskGroup | None = None,
) -> ecs.ContainerDefinition:
    """A container of a service's task (from its sizing row), or the one container of a one-off `job`'s task.
    A job's container is always named `mastodon`; its logs go to the job's own group and stream prefix. In a
    packed `task` it depends on the task's data stores being healthy and restarts in place."""
    role = size.role
    packed = task is not None and task.packed
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
        StopTimeout=stop_timeout(role, packed),
    )
    if task is not None and packed and role in APP_ROLES:
        data = [ecs.ContainerDependency(ContainerName=r, Condition="HEALTHY") for r in DATA_ROLES if task.has(r)]
        if data:
            props["DependsOn"] = data
        props["RestartPolicy"] = ecs.RestartPolicy(Enabled=True, RestartAttemptPeriod=RESTART_ATTEMPT_PERIOD)
    if role in ("web", "streaming", "sidekiq"):
        props["Command"] = command or (size.sidekiq_command() if role == "sidekiq" else COMMANDS[role])
        props["Environment"] = _env({**mastodon_environment(b, size, job=job is not None), **(extra_env or {})})
        loopback = job is None and cache.on_loopback(b.config, size)
        props["Secrets"] = _secrets(b, mastodon_secrets(b, role, redis_on_loopback=loopback))
        if cache.redis_tls(b.config):
            props["EntryPoint"] = trust_entrypoint()
    elif role == "postgres":
        # The shipped entrypoint: an EFS lock so one Postgres owns the data directory, fast shutdown on
        # SIGTERM, TLS, memory settings from the container budget (mastofargate/data/postgres-entrypoint.sh).
        props["EntryPoint"] = ["bash", "-c", entrypoints.script(entrypoints.POSTGRES), "mastofargate-postgres"]
        # continuous WAL archiving to the backup bucket (stack/pgbackrest.py), as `postgres -c` settings
        props["Command"] = [arg for k, v in pgbackrest.postgres_settings().items() for arg in ("-c", f"{k}={v}")]
        props["Environment"] = _env({**postgres_environment(b, size, packed=packed), **pgbackrest_environment(b)})
        props["Secrets"] = _secrets(b, [SecretRef("POSTGRES_PASSWORD", "database", "password")])
        props["MountPoints"] = [
            ecs.MountPoint(ContainerPath="/var/lib/postgresql/data", SourceVolume=volume_name(role, packed))
        ]
    elif role == "redis":
        # The shipped entrypoint: append-only file (everysec) on EFS, password via stdin, never as root.
        props["EntryPoint"] = ["bash", "-c", entrypoints.script(entrypoints.REDIS), "mastofargate-redis"]
        tls = cache.redis_tls(b.config)
        props["Environment"] = _env(redis_environment(size, tls=tls))
        refs = [SecretRef("REDIS_PASSWORD", "redis", "password")]
        if tls:  # the server's certificate and key, signed by the CA (whose key stays in the secret)
            refs += [SecretRef("REDIS_TLS_CERT", "redis", "tls_cert"), SecretRef("REDIS_TLS_KEY", "redis", "tls_key")]
        props["Secrets"] = _secrets(b, refs)
        props["MountPoints"] = [ecs.MountPoint(ContainerPath="/data", SourceVolume=volume_name(role, packed))]
    if job is None:  # long-running services get a health check; one-off jobs just run
        props["HealthCheck"] = health_check(size, redis_tls=cache.redis_tls(b.config))
    if role in PORTS and job is None:
        props["PortMappings"] = [ecs.PortMapping(ContainerPort=PORTS[role], Protocol="tcp", Name=role)]
    elif role in ("postgres", "redis"):
        port = POSTGRES_PORT if role == "postgres" else REDIS_PORT
        props["PortMappings"] = [ecs.PortMapping(ContainerPort=port, Protocol="tcp", Name=role)]
    return ecs.ContainerDefinition(**props)


def postgres_environment(b: Build, size: ServiceSize, packed: bool = False) -> dict[str, str]:
    """The Postgres entrypoint's settings: its memory budget is the container's hard limit (the sizing table),
    from which it derives shared_buffers and the rest; TLS is on because Mastodon reaches it across the VPC
    (issue 10: TLS between tasks) — in a packed task too: one-off tasks (migrations, tootctl, backups) run
    apart. In a packed task the fast shutdown turns immediate well inside the container's stop timeout."""
    env = {
        "POSTGRES_USER": "mastodon",
        "POSTGRES_DB": "mastodon_production",
        "PGDATA": PGDATA,
        "POSTGRES_MEMORY_MB": str(size.container_memory),
        "POSTGRES_MAX_CONNECTIONS": str(b.config.max_connections),
        "POSTGRES_TLS": "on",
    }
    if packed:
        env["POSTGRES_STOP_WAIT"] = str(PACKED_DATA_STOP_SECONDS * 3 // 4)
    return env


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
    container left for the AOF rewrite's fork and buffers. `tls` (cache.redis_tls: Redis in a task, its own
    or the one task) serves TLS only, with the certificate the deploy signed with the server's CA
    (REDIS_TLS_CERT/KEY, secrets), which every Mastodon process verifies, on loopback too."""
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
    size: ServiceSize | TaskGroup,
    containers: list[ecs.ContainerDefinition],
    task_role: str | None,
    description: str,
) -> ecs.TaskDefinition:
    """A Fargate task definition; a service's task mounts the EFS directories of the data stores it holds."""
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
    roles = size.roles if isinstance(size, TaskGroup) else (size.role,)
    volumes = [
        ecs.Volume(
            Name=volume_name(role, isinstance(size, TaskGroup) and size.packed),
            EFSVolumeConfiguration=ecs.EFSVolumeConfiguration(
                FilesystemId=b.imported("FileSystemId"),
                TransitEncryption="ENABLED",
                AuthorizationConfig=ecs.AuthorizationConfig(
                    AccessPointId=b.imported(f"{role.capitalize()}AccessPointId"), IAM="ENABLED"
                ),
            ),
        )
        for role in roles
        if role in DATA_ROLES
    ]
    if any(c.Name == direct_edge.CONTAINER for c in containers):
        volumes += direct_edge.caddy_volumes(b)
    if volumes:
        props["Volumes"] = volumes
    return b.add(b.app, ecs.TaskDefinition(title, **props), description)


def volume_name(role: str, packed: bool) -> str:
    """The EFS volume of a data store: `data` in a task of its own (as deployed before layouts existed),
    `<role>-data` in a packed task, where Postgres and Redis each mount their own access point."""
    return f"{role}-data" if packed else "data"


def capacity_strategy(b: Build, task: TaskGroup) -> list[ecs.CapacityProviderStrategyItem]:
    """Spot for stateless services when enabled, keeping one on-demand task when a service runs two or
    more. A Postgres task of its own never runs on Spot (a separate database should not take a 2-minute
    warning for the whole server); inside one packed task it may (DESIGN: the cheapest personal server),
    because the whole server stops together and its stop chain fits the warning (PACKED_*)."""
    if not b.config.deployment.spot or (task.has("postgres") and not task.packed):
        return [ecs.CapacityProviderStrategyItem(CapacityProvider="FARGATE", Weight=1)]
    if task.min >= 2:
        return [
            ecs.CapacityProviderStrategyItem(CapacityProvider="FARGATE", Base=1, Weight=0),
            ecs.CapacityProviderStrategyItem(CapacityProvider="FARGATE_SPOT", Weight=1),
        ]
    return [ecs.CapacityProviderStrategyItem(CapacityProvider="FARGATE_SPOT", Weight=1)]


def task_role(task: TaskGroup, direct: bool = False) -> str | None:
    """The task's IAM role: Mastodon's where a Mastodon process runs (the one task holding data stores too
    gets `ServerTaskRole`: Mastodon's rights and the data stores' EFS directories); with the direct edge, the
    task holding web (and Caddy) also mounts Caddy's certificates: a role of its own, so Sidekiq's cannot;
    streaming alone has none: it calls no AWS API, so it gets no credentials at all."""
    mastodon = task.has("web") or task.has("sidekiq")
    data = any(task.has(r) for r in DATA_ROLES)
    if mastodon and data:
        return "ServerTaskRole"
    if task.has("web") and direct:
        return direct_edge.TASK_ROLE
    if mastodon:
        return "MastodonTaskRole"
    if task.has("postgres"):
        return "PostgresTaskRole"
    return "DataTaskRole" if data else None


# ECS Exec only where an operator needs a Rails console or tootctl: never into a database or Redis of their
# own, nor into streaming (nothing to do there); one-off tasks get it when the deploy starts them with it.
EXEC_ROLES = ("web", "sidekiq")


def _services_on(b: Build) -> str:
    b.app_param("ServicesEnabled")
    if SERVICES_ON not in b.app.conditions:
        b.app.add_condition(SERVICES_ON, Equals(Ref("ServicesEnabled"), "true"))
    return SERVICES_ON


def _desired(b: Build, task: TaskGroup, count: int) -> int | AWSHelperFn:
    """Mastodon services wait at zero while a first install migrates; a task with a data store always runs
    (the migrations need it: a packed one runs its data stores alone meanwhile, see `_service`)."""
    if any(task.has(r) for r in DATA_ROLES):
        return count
    return If(_services_on(b), count, 0)


def add(b: Build) -> None:
    for task in b.config.tasks:
        _service(b, task)


SECURITY_GROUPS = {"postgres": "DatabaseSecurityGroupId", "redis": "CacheSecurityGroupId"}


def security_groups(b: Build, task: TaskGroup) -> list[object]:
    """The task's groups: each member's (a packed task with Postgres is reachable as a database too)."""
    keys = ["TaskSecurityGroupId"] if any(r not in DATA_ROLES for r in task.roles) else []
    keys += [SECURITY_GROUPS[r] for r in DATA_ROLES if task.has(r)]
    if task.has("web") and direct_edge.enabled(b):
        keys.append(direct_edge.SECURITY_GROUP)  # 80/443 from anywhere, to Caddy
    return [b.imported(k) for k in keys]


def _service(b: Build, task: TaskGroup) -> None:
    t = b.app
    key = logical(task.name)
    # Every container of the task, from its rows, then the direct edge's Caddy beside web.
    containers = [container(b, size, task=task) for size in task.containers]
    if task.has("web") and direct_edge.enabled(b):
        containers.append(
            direct_edge.caddy_container(b, same_task_streaming=task.has("streaming"), singleton=task.singleton)
        )
    for size in task.containers:
        if queue_metrics.wanted(size):
            sidecar = _queue_metrics_sidecar(b, size)
            if task.packed and task.has("redis"):  # it reads Redis: start after it, stop before it
                sidecar.DependsOn = [ecs.ContainerDependency(ContainerName="redis", Condition="HEALTHY")]
            containers.append(sidecar)
    td = task_definition(
        b,
        f"{key}TaskDefinition",
        f"{b.name}-{task.name}",
        task,
        containers,
        task_role(task, direct_edge.enabled(b)),
        f"Task definition of {task.name} ({task.cpu / 1024:g} vCPU, {task.memory} MiB"
        + (f": {', '.join(task.roles)}" if task.packed else "")
        + ")",
    )
    definition: object = Ref(td)
    if task.packed and any(task.has(r) for r in DATA_ROLES) and any(task.has(r) for r in APP_ROLES):
        # While a first install migrates (ServicesEnabled=false) Mastodon's processes must wait but the
        # migrations need the task's Postgres/Redis: the service then runs the data stores alone (this
        # definition), and switching the services on rolls it to the whole task (a singleton: the old task
        # stops, releasing Postgres' lock, before the new one starts).
        data_only = task_definition(
            b,
            f"{key}DataOnlyTaskDefinition",
            f"{b.name}-{task.name}-data",
            task,
            [c for c, size in zip(containers, task.containers, strict=False) if size.role in DATA_ROLES],
            task_role(task),
            f"The {task.name} task's data stores alone, run while a first install migrates",
        )
        definition = If(_services_on(b), Ref(td), Ref(data_only))
    props: dict[str, object] = dict(
        ServiceName=task.name,
        Cluster=Ref("Cluster"),
        TaskDefinition=definition,
        DesiredCount=_desired(b, task, task.desired),
        CapacityProviderStrategy=capacity_strategy(b, task),
        PlatformVersion="LATEST",
        EnableExecuteCommand=any(r in EXEC_ROLES for r in task.roles),
        PropagateTags="SERVICE",
        EnableECSManagedTags=True,
        DeploymentConfiguration=ecs.DeploymentConfiguration(
            MinimumHealthyPercent=task.minimum_healthy_percent,
            MaximumPercent=task.maximum_percent,
            DeploymentCircuitBreaker=ecs.DeploymentCircuitBreaker(Enable=True, Rollback=True),
        ),
        NetworkConfiguration=ecs.NetworkConfiguration(
            AwsvpcConfiguration=ecs.AwsvpcConfiguration(
                AssignPublicIp="ENABLED", Subnets=subnet_ids(b), SecurityGroups=security_groups(b, task)
            )
        ),
    )
    depends = ["ClusterCapacity"]
    # The direct edge has no load balancer: Caddy in the task holding web is the way in.
    served = [] if direct_edge.enabled(b) else [c for c in task.containers if c.role in PORTS]
    if served:
        # One target group per served container: the front task registers web:3000 AND streaming:4000.
        props["LoadBalancers"] = [
            ecs.LoadBalancer(
                ContainerName=container_name(c),
                ContainerPort=PORTS[c.role],
                TargetGroupArn=Ref(f"{c.role.capitalize()}TargetGroup"),
            )
            for c in served
        ]
        props["HealthCheckGracePeriodSeconds"] = max(grace_period(c) for c in served)
        depends += ["HttpsListener", "StreamingRule"]
    # Found by name: Postgres/Redis by Mastodon and one-off tasks, streaming in a task of its own by the direct
    # edge's Caddy (in the task holding web).
    found = found_by_name(b, task)
    if found:
        what_dns = " and ".join(found)
        registry = b.add(
            t,
            servicediscovery.Service(
                f"{key}Discovery",
                Name=task.name,
                NamespaceId=Ref("Namespace"),
                DnsConfig=servicediscovery.DnsConfig(
                    DnsRecords=[servicediscovery.DnsRecord(Type="A", TTL=10)], RoutingPolicy="MULTIVALUE"
                ),
                HealthCheckCustomConfig=servicediscovery.HealthCheckCustomConfig(FailureThreshold=1),
            ),
            f"DNS name {task.name} for {what_dns} in the {task.name} task (found by this name)",
        )
        props["ServiceRegistries"] = [ecs.ServiceRegistry(RegistryArn=GetAtt(registry, "Arn"))]
    service = ecs.Service(f"{key}Service", DependsOn=depends, **props)
    b.add(t, service, f"{_what(task)}: {task.desired} task(s)" + (", never two at once" if task.singleton else ""))
    if task.max > task.min:
        _autoscaling(b, task, key)


def _what(task: TaskGroup) -> str:
    names = {
        "web": "Mastodon web (Puma)",
        "streaming": "Mastodon streaming API",
        "postgres": "Postgres on EFS",
        "redis": "Redis on EFS",
    }
    parts = [names.get(c.role, f"Sidekiq ({', '.join(c.queue_names)})") for c in task.containers]
    return ("One task: " if task.packed else "") + ", ".join(parts)


def _queue_metrics_sidecar(b: Build, size: ServiceSize) -> ecs.ContainerDefinition:
    """The Sidekiq backlog publisher (stack/queue_metrics.py): Redis settings as the streaming server gets
    them (the rediss:// URL and the CA as secrets; loopback inside Redis' task), logs in the Sidekiq
    service's group."""
    redis_env = {k: v for k, v in mastodon_environment(b, replace(size, role="streaming")).items() if "REDIS" in k}
    loopback = cache.on_loopback(b.config, size)
    redis_secrets = [
        r for r in mastodon_secrets(b, "streaming", redis_on_loopback=loopback) if r.env.startswith("REDIS_")
    ]
    log = add_log_group(b, size.name)
    return queue_metrics.sidecar(b, size, log, REDIS_IMAGE, redis_env, _secrets(b, redis_secrets))


def _autoscaling(b: Build, size: TaskGroup, key: str) -> None:
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
