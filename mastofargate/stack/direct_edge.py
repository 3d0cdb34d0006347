"""The direct edge's container (`edge = "direct"`): Caddy in the task that holds web, instead of an ALB.

Whichever task holds the `web` container gets `caddy_container()` and `caddy_volumes()`; nothing else in the
stack needs to know how Caddy is configured. Decisions:
- The official image (multi-arch) from the ECR Public mirror of Docker's library images, pinned to a minor
  series like Postgres and Redis (stack/services.py), so a deploy never pulls a new major by surprise.
- No custom image: the JSON configuration (stack/caddy.py) travels in the container's environment
  (CADDY_CONFIG: reviewable in task_definitions/, holds no secret) and a one-line shell command writes it to
  a file Caddy runs. A config change is a task definition change, so it reaches the task by a normal rollout.
- Certificates and the ACME account live on EFS, under an access point of their own (never the task's
  disk): Let's Encrypt refuses a sixth duplicate certificate in a week, and every rollout starts a new task.
- Upstreams: Puma and, when streaming runs in the same task, the streaming server on loopback; otherwise the
  streaming service's Cloud Map name in the cluster's private namespace.
- Health: Caddy's loopback health listener (stack/caddy.py HEALTH_PORT); web keeps its own health check.
- Several tasks (a front that autoscales, and every rolling deployment of a non-singleton): DNS publishes
  each healthy one (lambdas/dns_follower.py), Caddy in a task being stopped drains first (DRAIN_LAUNCH), and
  all share one certificate through the EFS storage (stack/caddy.py). A singleton stops at once.
"""

from __future__ import annotations

import json

from troposphere import Ref, ecs

from mastofargate.sizing import CADDY
from mastofargate.stack.caddy import GRACE_SECONDS, HEALTH_PORT, STORAGE_DIR, Upstreams, caddy_config
from mastofargate.stack.context import Build
from mastofargate.stack.network import STREAMING_PORT, WEB_PORT
from mastofargate.stack.observability import add_log_group

# Multi-arch (amd64, arm64v8) official image; 2.10 is the maintained series (Alpine-based: busybox wget and sh).
CADDY_IMAGE = "public.ecr.aws/docker/library/caddy:2.10-alpine"
CONTAINER = "caddy"
VOLUME = "caddy"
CONFIG_ENV = "CADDY_CONFIG"
CONFIG_FILE = "/tmp/caddy.json"
WRITE_CONFIG = f'umask 077 && printf "%s" "${CONFIG_ENV}" > {CONFIG_FILE}'
# Written owner-only, then Caddy replaces the shell (exec) so it receives ECS's SIGTERM itself.
LAUNCH = f"{WRITE_CONFIG} && exec caddy run --config {CONFIG_FILE}"
# A front that runs several tasks (not a singleton) drains like an ALB target: when ECS stops a task
# (rolling deployment, scale-in, Spot interruption) the DNS follower drops its address at once, but
# resolvers keep the old record for up to its TTL (stack/edge_dns.py DNS_TTL, 60 s) plus the event ->
# Lambda -> Route 53 delay. So Caddy keeps serving DRAIN_SECONDS after the SIGTERM (the shell holds it;
# web and streaming stop only after Caddy, by their dependsOn), then shuts down gracefully within
# caddy.GRACE_SECONDS. Caddy's own `shutdown_delay` does this from 2.7 on; the shell does it for any version.
# 75 s covers the TTL and the usual seconds of Lambda and Route 53 delay; Route 53's worst case (changes reach
# its servers "within 60 seconds") plus a full TTL would exceed Fargate's 120 s stop limit and the Spot
# warning, so a client that resolved at that worst moment gets a refused connection and retries (browsers,
# apps and federating servers do).
DRAIN_SECONDS = 75
DRAIN_LAUNCH = (
    f"{WRITE_CONFIG} && {{ caddy run --config {CONFIG_FILE} & pid=$!; "
    f'trap \'sleep {DRAIN_SECONDS}; kill -TERM "$pid"; wait "$pid"; exit $?\' TERM; wait "$pid"; }}'
)
# A singleton has no other task to send clients to: it stops at once (its downtime is said by `plan`).
STOP_SECONDS = 30
# Drain, then Caddy's grace period; web's own stop (services.PACKED_APP_STOP_SECONDS, 30 s) follows, so
# the whole front task still stops inside Fargate Spot's two-minute warning (services.SPOT_WARNING_SECONDS).
DRAIN_STOP_SECONDS = DRAIN_SECONDS + GRACE_SECONDS
HEALTH_COMMAND = f"wget -q -O /dev/null http://127.0.0.1:{HEALTH_PORT}/ || exit 1"
TASK_ROLE = "FrontTaskRole"  # the role of the task holding web and Caddy (stack/iam.py)
SECURITY_GROUP = "EdgeSecurityGroupId"  # 80/443 from anywhere (stack/network.py), added to that task
ACCESS_POINT = "CaddyAccessPoint"  # stack/database.py
CADDY_UID = 1000  # owner of Caddy's EFS directory (the access point maps every file operation to it)


def enabled(b: Build) -> bool:
    return b.config.deployment.edge == "direct"


def upstreams(b: Build, *, same_task_streaming: bool) -> Upstreams:
    from mastofargate.stack.cluster import namespace

    streaming = "127.0.0.1" if same_task_streaming else f"streaming.{namespace(b)}"
    return Upstreams(web=f"127.0.0.1:{WEB_PORT}", streaming=f"{streaming}:{STREAMING_PORT}")


def config_text(b: Build, *, same_task_streaming: bool) -> str:
    """The exact JSON the container receives (compact and sorted: deterministic, and small in the task
    definition)."""
    config = caddy_config(b.config, upstreams=upstreams(b, same_task_streaming=same_task_streaming))
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def caddy_container(b: Build, *, same_task_streaming: bool, singleton: bool = True) -> ecs.ContainerDefinition:
    """Caddy for the task that holds `web`: 80/443, certificates on EFS, started after web and, in the same
    task, streaming (so ECS stops it first, before Puma and streaming: no request reaches a process that is
    shutting down). A task of a front that runs several (`singleton` False) drains first (DRAIN_LAUNCH)."""
    log = add_log_group(b, CONTAINER)
    after = ["web", "streaming"] if same_task_streaming else ["web"]
    props: dict[str, object] = dict(
        Name=CONTAINER,
        Image=CADDY_IMAGE,
        Essential=True,
        MemoryReservation=CADDY.reservation,
        EntryPoint=["/bin/sh", "-c"],
        Command=[LAUNCH if singleton else DRAIN_LAUNCH],
        Environment=[ecs.Environment(Name=CONFIG_ENV, Value=config_text(b, same_task_streaming=same_task_streaming))],
        PortMappings=[
            ecs.PortMapping(ContainerPort=443, Protocol="tcp", Name="https"),
            ecs.PortMapping(ContainerPort=80, Protocol="tcp", Name="http"),
        ],
        MountPoints=[ecs.MountPoint(ContainerPath=STORAGE_DIR, SourceVolume=VOLUME, ReadOnly=False)],
        DependsOn=[ecs.ContainerDependency(ContainerName=name, Condition="START") for name in after],
        HealthCheck=ecs.HealthCheck(
            Command=["CMD-SHELL", HEALTH_COMMAND], Interval=15, Timeout=5, Retries=3, StartPeriod=15
        ),
        LinuxParameters=ecs.LinuxParameters(InitProcessEnabled=True),
        StopTimeout=STOP_SECONDS if singleton else DRAIN_STOP_SECONDS,
        LogConfiguration=ecs.LogConfiguration(
            LogDriver="awslogs",
            Options={
                "awslogs-group": Ref(log),
                "awslogs-region": Ref("AWS::Region"),
                "awslogs-stream-prefix": CONTAINER,
            },
        ),
    )
    if CADDY.limit is not None:
        props["Memory"] = CADDY.limit
    if CADDY.cpu:
        props["Cpu"] = CADDY.cpu
    return ecs.ContainerDefinition(**props)


def caddy_volumes(b: Build) -> list[ecs.Volume]:
    """Caddy's EFS directory (its own access point; TLS in transit; IAM-authorised by the task role)."""
    return [
        ecs.Volume(
            Name=VOLUME,
            EFSVolumeConfiguration=ecs.EFSVolumeConfiguration(
                FilesystemId=b.imported("FileSystemId"),
                TransitEncryption="ENABLED",
                AuthorizationConfig=ecs.AuthorizationConfig(
                    AccessPointId=b.imported(f"{ACCESS_POINT}Id"), IAM="ENABLED"
                ),
            ),
        )
    ]


def front_service(b: Build) -> str:
    """The ECS service whose task holds web (and Caddy): the one the DNS record follows."""
    task = b.config.task_of("web")
    if task is None:  # every profile runs web; a config without it is a bug, not bad input
        raise ValueError("no task holds web")
    return task.name
