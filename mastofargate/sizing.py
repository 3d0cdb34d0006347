"""Documented sizing: the one table every CPU, memory, count and thread number comes from.

Each number carries a comment naming its source:
  [FN]   operator field notes (../shared/reference/field-notes.md): small servers on EC2, measured.
  [OCH]  the Mastodon Helm chart's commented resources (web 768-1280 Mi, Sidekiq 512-768 Mi,
         streaming 128-512 Mi; Sidekiq `-c 25` with all queues in one pod).
  [DOC]  Mastodon's own docs/code: Puma WEB_CONCURRENCY 2 / MAX_THREADS 5 defaults, Sidekiq threads =
         DB connections, the scheduler queue in exactly one process, streaming DB_POOL default 10.
  [FR]   field reports: a 1 GB Sidekiq task is OOM-killed on busy servers.
  [W]    widdix/mastodon-on-aws (third-party Fargate template, 1-50 users): web 0.5 vCPU/1 GB,
         streaming 0.25/0.5 GB, sidekiq 0.25/1 GB, cleanup task 1 vCPU/2 GB.
  [FG]   the Fargate CPU/memory table (../shared/reference/aws.md).
  [RDS]  RDS's default max_connections formula LEAST(DBInstanceClassMemory/9531392, 5000).
  [ECS]  the ECS container rules (../shared/reference/aws.md): hard limits of a task's containers add up to
         at most the task's memory; stopTimeout at most 120 s on Fargate; Spot gives a 2-minute warning.

Each row is one process kind and becomes one container. Which containers share a task is the profile's
`packings` for the chosen layout: a `Packing` names the task, its Fargate size, its counts and each member's
hard limit and reservation inside it; every row no packing claims runs in a task of its own. `task_groups`
turns rows and packings into the `TaskGroup`s the stack makes one ECS service each from.

Everything derived (WEB_CONCURRENCY, MAX_THREADS, DB_POOL, SIDEKIQ concurrency flags, the peak Postgres
connection count) is computed from this table by the functions below and never restated elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Role = Literal["web", "streaming", "sidekiq", "postgres", "redis"]
ProfileName = Literal["personal", "community", "large"]
Layout = Literal["split", "one-task"]
LAYOUTS: tuple[Layout, ...] = ("split", "one-task")

# [FG] Fargate task sizes: CPU units -> allowed memory (MiB).
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}

ONE_TASK = "server"  # the ECS service (and task family suffix) of a one-task server

# [DOC] Sidekiq queues with the charts' weights; `scheduler` must run in exactly one process.
ALL_QUEUES: tuple[str, ...] = ("default,8", "push,6", "ingress,4", "mailers,2", "pull", "scheduler", "fasp")
SCHEDULER_QUEUE = "scheduler"


def fargate_size_error(cpu: int, memory: int) -> str | None:
    """Why (cpu, memory) is not a Fargate size, or None when it is one."""
    if cpu not in FARGATE_SIZES:
        return f"cpu {cpu} is not a Fargate CPU size; allowed: {', '.join(map(str, FARGATE_SIZES))}"
    allowed = FARGATE_SIZES[cpu]
    if memory not in allowed:
        return f"memory {memory} MiB is not allowed with cpu {cpu}; allowed: {allowed[0]}-{allowed[-1]} MiB" + (
            f" in steps of {allowed[1] - allowed[0]}" if len(allowed) > 3 else f" ({', '.join(map(str, allowed))})"
        )
    return None


@dataclass(frozen=True)
class ServiceSize:
    """One ECS service: its Fargate task size, its container's limits, counts and process tuning."""

    name: str
    role: Role
    cpu: int  # Fargate task CPU units
    memory: int  # Fargate task memory, MiB
    container_memory: int  # the container's hard limit, MiB (OOM-kill above it)
    container_reservation: int  # the container's soft reservation, MiB
    desired: int
    min: int
    max: int
    web_concurrency: int = 0  # Puma workers; 0 = single mode [DOC]
    max_threads: int = 0  # Puma threads per worker
    sidekiq_concurrency: int = 0
    queues: tuple[str, ...] = ()
    db_pool: int = 0  # connections per process

    @property
    def singleton(self) -> bool:
        """Must never run twice at once (the scheduler queue, a Postgres/Redis task owning its data)."""
        return self.role in ("postgres", "redis") or SCHEDULER_QUEUE in self.queue_names

    @property
    def queue_names(self) -> tuple[str, ...]:
        return tuple(q.split(",")[0] for q in self.queues)

    @property
    def processes_per_task(self) -> int:
        """Processes that each open their own DB pool: Puma workers (single mode = 1), else 1."""
        return max(1, self.web_concurrency) if self.role == "web" else 1

    def env(self) -> dict[str, str]:
        """Mastodon's process tuning variables, derived from this row."""
        out: dict[str, str] = {}
        if self.role == "web":
            out |= {"WEB_CONCURRENCY": str(self.web_concurrency), "MAX_THREADS": str(self.max_threads)}
        if self.role in ("web", "sidekiq", "streaming"):
            out["DB_POOL"] = str(self.db_pool)
        return out

    def sidekiq_command(self) -> list[str]:
        cmd = ["bundle", "exec", "sidekiq", "-c", str(self.sidekiq_concurrency)]
        for q in self.queues:
            cmd += ["-q", q]
        return cmd


@dataclass(frozen=True)
class BackupTaskSize:
    """The one-off backup task (stack/backup_tasks.py): pg_dump to S3, and the restore drill, which starts a
    throw-away Postgres in the task and pg_restores the newest dump into it.

    Memory is bounded by settings, not by the database's size: pg_dump's own memory grows with the number of
    schema objects (Mastodon has a few hundred), and the drill's scratch server runs with the default
    shared_buffers (128 MB) plus one maintenance_work_mem (64 MB default) per pg_restore job building an index,
    at most 4 jobs (pgtask.py --jobs); with boto3's multipart upload buffers (8 MB x 10 threads) that stays
    under 700 MiB, so the smallest memory of each CPU size suffices. Measured (bench/backup.py, 0.52 GB
    database, peak PSS of the task's processes): 55 MiB for the dump, 133 MiB for the drill with 2 jobs.
    CPU sets the speed: pg_dump -Fc compresses on one core and pg_restore builds indexes in parallel (one job
    per vCPU, up to 4).
    Ephemeral storage holds the downloaded dump plus the restored cluster, which is at most the live
    database's size: 1.5x the profile's starting database storage (rds_storage_gb), between Fargate's
    21 and 200 GiB."""

    cpu: int
    memory: int
    ephemeral_gib: int


@dataclass(frozen=True)
class Packing:
    """Containers that share one task: the task's name (its ECS service), Fargate size and counts, and each
    member's hard limit and reservation inside it (MiB), keyed by role. A role the deployment does not run
    (Postgres on RDS, Redis on ElastiCache) is simply absent from the task; the size stays the same."""

    name: str
    cpu: int
    memory: int
    counts: tuple[int, int, int]  # desired, min, max
    limits: Mapping[str, tuple[int, int]]  # role -> (hard limit, reservation)


@dataclass(frozen=True)
class TaskGroup:
    """One ECS service: a task of one or more containers (the rows), its Fargate size and counts. The rows of
    a group carry the group's size and counts, so a row alone still says how many of it can run at once."""

    name: str
    cpu: int
    memory: int
    containers: tuple[ServiceSize, ...]
    desired: int
    min: int
    max: int
    packed: bool = False  # made by a Packing (several containers), not a row alone

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(c.role for c in self.containers)

    def has(self, role: str) -> bool:
        return role in self.roles

    def member(self, role: str) -> ServiceSize | None:
        return next((c for c in self.containers if c.role == role), None)

    @property
    def singleton(self) -> bool:
        """Never two tasks at once: a member that must never run twice makes the whole task a singleton."""
        return any(c.singleton for c in self.containers)

    @property
    def minimum_healthy_percent(self) -> int:
        return 0 if self.singleton else 100

    @property
    def maximum_percent(self) -> int:
        return 100 if self.singleton else 200

    @property
    def peak_tasks(self) -> int:
        """Most tasks that can run at once: scaled to max and mid-deploy (maximumPercent)."""
        return max(1, self.max * self.maximum_percent // 100)

    def peak_db_connections(self, row: ServiceSize) -> int:
        if row.role not in ("web", "sidekiq", "streaming"):
            return 0
        return self.peak_tasks * row.processes_per_task * row.db_pool

    @property
    def limits_total(self) -> int:
        return sum(c.container_memory for c in self.containers)

    @property
    def reserved_total(self) -> int:
        return sum(c.container_reservation for c in self.containers)


def packed_row(row: ServiceSize, packings: tuple[Packing, ...]) -> ServiceSize:
    """A row with the size, counts and limits of the packing that claims its role (unchanged if none does)."""
    for p in packings:
        if row.role in p.limits:
            limit, reservation = p.limits[row.role]
            desired, lo, hi = p.counts
            return replace(
                row,
                cpu=p.cpu,
                memory=p.memory,
                container_memory=limit,
                container_reservation=reservation,
                desired=desired,
                min=lo,
                max=hi,
            )
    return row


def task_groups(
    rows: tuple[ServiceSize, ...],
    packings: tuple[Packing, ...],
    overrides: Mapping[str, Mapping[str, int]] | None = None,
) -> tuple[TaskGroup, ...]:
    """The ECS services: one per packing that claims at least one row (in the order of its first row), and
    one per row no packing claims. `overrides` changes a packing's cpu, memory, desired, min or max by its name;
    the rows of a packed task carry the task's size and counts."""
    order: list[str | ServiceSize] = []
    members: dict[str, list[ServiceSize]] = {}
    for row in rows:
        pack = next((p for p in packings if row.role in p.limits), None)
        if pack is None:
            order.append(row)
            continue
        if pack.name not in members:
            members[pack.name] = []
            order.append(pack.name)
        members[pack.name].append(row)
    groups = []
    for item in order:
        if isinstance(item, ServiceSize):
            groups.append(TaskGroup(item.name, item.cpu, item.memory, (item,), item.desired, item.min, item.max))
            continue
        p = next(p for p in packings if p.name == item)
        desired, lo, hi = p.counts
        v = {
            "cpu": p.cpu,
            "memory": p.memory,
            "desired": desired,
            "min": lo,
            "max": hi,
            **(overrides or {}).get(item, {}),
        }
        containers = tuple(
            replace(r, cpu=v["cpu"], memory=v["memory"], desired=v["desired"], min=v["min"], max=v["max"])
            for r in members[item]
        )
        groups.append(TaskGroup(item, v["cpu"], v["memory"], containers, v["desired"], v["min"], v["max"], packed=True))
    return tuple(groups)


@dataclass(frozen=True)
class Profile:
    name: ProfileName
    summary: str
    services: tuple[ServiceSize, ...]  # web, streaming and sidekiq services
    postgres_task: ServiceSize  # used with database = "task"
    redis_task: ServiceSize  # used with cache = "task"
    job: ServiceSize  # one-off tasks: migrations, tootctl, scheduled maintenance
    rds_instance_class: str
    rds_storage_gb: int
    rds_max_storage_gb: int
    cache_node_type: str
    postgres_task_max_connections: int
    backup_cpu: int  # the backup task's CPU (nightly dump, restore drill); see BackupTaskSize
    # layout -> the tasks that hold several containers; a layout missing here is not offered by the profile
    packings: Mapping[str, tuple[Packing, ...]] = field(default_factory=lambda: {"split": ()})

    @property
    def backup(self) -> BackupTaskSize:
        memory = FARGATE_SIZES[self.backup_cpu][0] if self.backup_cpu > 256 else 1024
        return BackupTaskSize(self.backup_cpu, memory, min(200, max(21, self.rds_storage_gb * 3 // 2)))

    def service(self, name: str) -> ServiceSize:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)


def _sidekiq(
    name: str,
    cpu: int,
    memory: int,
    limit: int,
    reservation: int,
    count: tuple[int, int, int],
    concurrency: int,
    queues: tuple[str, ...],
) -> ServiceSize:
    desired, lo, hi = count
    # [DOC] each Sidekiq thread holds one DB connection: DB_POOL = concurrency.
    return ServiceSize(
        name,
        "sidekiq",
        cpu,
        memory,
        limit,
        reservation,
        desired,
        lo,
        hi,
        sidekiq_concurrency=concurrency,
        queues=queues,
        db_pool=concurrency,
    )


# One-off tasks (db:migrate, tootctl, media cleanup): [W] runs its cleanup task at 1 vCPU/2 GB; a Rails boot
# plus `tootctl media remove --concurrency 5` fits 0.5 vCPU/2 GB with room [FN: Rails alone ~1/3 of 2 GB].
_JOB = ServiceSize("job", "web", 512, 2048, 2048, 1024, 0, 0, 0, web_concurrency=0, max_threads=5, db_pool=5)

PROFILES: dict[str, Profile] = {
    "personal": Profile(
        name="personal",
        summary="1-5 users: one small task per service, Puma in single mode",
        services=(
            # [FN] Puma with workers disabled (single mode) needs about a third of the memory and is fine for
            # few users; [OCH] web requests 768 Mi -> a 1 GiB task; [W] uses 1 GB for web at 1-50 users.
            # 0.25 vCPU: [FN] a personal server's load is tiny (Postgres averaged ~1 % CPU).
            ServiceSize(
                "web", "web", 256, 1024, 1024, 768, 1, 1, 1, web_concurrency=0, max_threads=5, db_pool=5
            ),  # [DOC] DB_POOL = MAX_THREADS
            # [OCH] streaming 128-512 Mi; [FN] "memory-efficient, left untouched"; [W] 0.25 vCPU/0.5 GB.
            ServiceSize("streaming", "streaming", 256, 512, 512, 128, 1, 1, 1, db_pool=3),
            # [FN] a personal server needs 5-10 Sidekiq threads, not 25; [OCH] 512-768 Mi; [W] 0.25/1 GB.
            # All queues incl. scheduler in one process (singleton).
            _sidekiq("sidekiq", 256, 1024, 1024, 512, (1, 1, 1), 5, ALL_QUEUES),
        ),
        # [FN] Postgres split onto a 1 GB t4g.micro averaged ~1 % CPU.
        postgres_task=ServiceSize("postgres", "postgres", 256, 1024, 1024, 512, 1, 1, 1),
        # [FN] Redis "never grew enough to matter".
        redis_task=ServiceSize("redis", "redis", 256, 512, 512, 256, 1, 1, 1),
        job=_JOB,
        rds_instance_class="db.t4g.micro",  # [FN] Postgres on a 1 GB t4g.micro averaged ~1 % CPU
        rds_storage_gb=20,  # [FN] operators ran 25-30 GB gp3 disks for *everything*; media is on S3 here
        rds_max_storage_gb=100,  # storage autoscaling ceiling: growth never needs a human, cost stays bounded
        cache_node_type="cache.t4g.micro",  # [FN] Redis never grew enough to matter
        postgres_task_max_connections=100,  # [DOC] the docs' default max_connections
        backup_cpu=512,  # a personal database dumps in a minute or two on half a vCPU
        packings={
            "split": (),
            "one-task": (
                # Every process of the server in ONE task. [FN] a 2 GB box running all five "ran out of memory
                # almost at once" and needed swap even tuned; Fargate has no swap, so 3 GiB: the operators'
                # practical minimum plus half again. [FG] 3 GiB needs 0.5 vCPU (0.25 vCPU stops at 2 GiB); [FN]
                # a personal server's load is tiny (Postgres ~1 % of a CPU), so 0.5 vCPU is ample.
                Packing(
                    ONE_TASK,
                    512,
                    3072,
                    (1, 1, 1),  # [DOC] singleton: the scheduler queue and Postgres' data directory
                    {
                        # [FN] Puma in single mode: about a third of the default three processes; [OCH] web
                        # requests 768 Mi (the reservation), limit 896 Mi: a little above it for a spike.
                        "web": (896, 768),
                        # [OCH] streaming 128-512 Mi; [FN] "memory-efficient, left untouched".
                        "streaming": (256, 128),
                        # [OCH] Sidekiq 512-768 Mi; [FN] 5 threads (not 25) for one user; limit 896 Mi.
                        "sidekiq": (896, 512),
                        # [FN] "Postgres copes well with little memory", a 512 MB t4g.nano thought enough; the
                        # blog's lesson: shrink Postgres first (its entrypoint sizes shared_buffers from this).
                        "postgres": (512, 384),
                        # [FN] Redis "never grew enough to matter; easy to cap" (maxmemory = 3/4 of this).
                        "redis": (256, 128),
                        # [ECS] hard limits add up to 2816 MiB: 256 MiB stay free for the direct edge's Caddy.
                    },
                ),
            ),
        },
    ),
    "community": Profile(
        name="community",
        summary="up to ~500 users: Puma with 2 workers, web autoscales to 3 tasks",
        services=(
            # [DOC] Puma defaults WEB_CONCURRENCY=2, MAX_THREADS=5; [OCH] web limit 1280 Mi -> 2 GiB task so
            # two workers never hit the limit; 1 vCPU so both workers get CPU.
            ServiceSize("web", "web", 1024, 2048, 2048, 1280, 1, 1, 3, web_concurrency=2, max_threads=5, db_pool=5),
            # [OCH] 128-512 Mi; [DOC] streaming DB_POOL defaults to 10, halved: one Node process per task.
            ServiceSize("streaming", "streaming", 256, 512, 512, 128, 1, 1, 2, db_pool=5),
            # [FR] 1 GB Sidekiq tasks OOM on busy servers -> 2 GiB; [OCH] 768 Mi reservation; [FN] 5-10
            # threads for one user, so 15 for a community; all queues incl. scheduler (singleton).
            _sidekiq("sidekiq", 512, 2048, 2048, 768, (1, 1, 1), 15, ALL_QUEUES),
        ),
        # [FN] 1 GB was ample for one user's Postgres; [RDS] a community's ~113 connections and cache want 2 GiB.
        postgres_task=ServiceSize("postgres", "postgres", 512, 2048, 2048, 1024, 1, 1, 1),
        # [FN] Redis never grew enough to matter; home timelines (800 entries per user) for ~500 users fit 1 GiB.
        redis_task=ServiceSize("redis", "redis", 256, 1024, 1024, 512, 1, 1, 1),
        job=_JOB,
        rds_instance_class="db.t4g.small",  # 2 GiB: [RDS] ~180 connections for the budget below
        rds_storage_gb=40,  # [FN] 25-30 GB served one user with media on disk; media is on S3 here, 40 leaves room
        rds_max_storage_gb=200,  # storage autoscaling ceiling: growth never needs a human, cost stays bounded
        cache_node_type="cache.t4g.micro",  # [FN] Redis never grew enough to matter
        postgres_task_max_connections=200,  # [RDS] the budget below (~123) with headroom
        backup_cpu=1024,  # one core for pg_dump's compression
        packings={
            "split": (
                # The front task: Puma and streaming together behind the ALB (two target groups, one service),
                # Sidekiq apart (its memory grows with the backlog; a web spike must not OOM-kill jobs). [OCH]
                # web limit 1280 Mi and streaming limit 512 Mi fit the web row's 1 vCPU / 2 GiB task [FG]: web
                # gets 1536 Mi (its 1280 Mi reservation plus room for the second worker), streaming 512 Mi.
                # One task, one public IPv4 and one 0.25 vCPU less than two services; counts are web's.
                Packing("front", 1024, 2048, (1, 1, 3), {"web": (1536, 1280), "streaming": (512, 128)}),
            ),
        },
    ),
    "large": Profile(
        name="large",
        summary="thousands of users: Sidekiq split by queue, two web tasks minimum",
        services=(
            # [DOC] processes beat threads for throughput: 3 workers x 5 threads; [OCH] 1280 Mi per 2 workers.
            ServiceSize("web", "web", 2048, 4096, 4096, 2048, 2, 2, 4, web_concurrency=3, max_threads=5, db_pool=5),
            # [DOC] streaming DB_POOL default 10; [OCH] limit 512 Mi, doubled for ~1000 connections [DOC].
            ServiceSize("streaming", "streaming", 512, 1024, 1024, 512, 2, 2, 3, db_pool=10),
            # [DOC] the official scaling method: split queues across processes; [OCH] -c 25 per process.
            _sidekiq("sidekiq-default", 1024, 2048, 2048, 768, (2, 2, 4), 25, ("default,8", "ingress,4", "mailers,2")),
            _sidekiq("sidekiq-federation", 1024, 2048, 2048, 768, (1, 1, 3), 25, ("push,6", "pull", "fasp")),
            # [DOC] the scheduler queue in exactly one process; it only enqueues, so 5 threads suffice.
            _sidekiq("sidekiq-scheduler", 256, 1024, 1024, 512, (1, 1, 1), 5, ("scheduler",)),
        ),
        # [RDS] the same 8 GiB as the RDS class below (~550 connections at peak need the memory).
        postgres_task=ServiceSize("postgres", "postgres", 2048, 8192, 8192, 4096, 1, 1, 1),
        # [FN] Redis is small even so; thousands of users' timelines fit 2 GiB.
        redis_task=ServiceSize("redis", "redis", 512, 2048, 2048, 1024, 1, 1, 1),
        job=_JOB,
        rds_instance_class="db.t4g.large",  # 8 GiB: [RDS] ~720 connections for the budget below
        rds_storage_gb=100,  # [FN] grows with statuses in/out; autoscaling below takes it from here
        rds_max_storage_gb=1000,
        cache_node_type="cache.t4g.small",  # [FN] Redis stays small; 1.37 GiB for thousands of timelines
        postgres_task_max_connections=600,  # [RDS] the budget below (~553) with headroom
        backup_cpu=2048,  # two pg_restore jobs build indexes side by side in the drill
    ),
}

# [RDS] memory of the classes we offer, GiB; DBInstanceClassMemory is what is left after the OS and RDS
# processes, assumed 80 % of the class's memory.
RDS_INSTANCE_MEMORY_GIB: dict[str, float] = {
    "db.t4g.micro": 1,
    "db.t4g.small": 2,
    "db.t4g.medium": 4,
    "db.t4g.large": 8,
    "db.t4g.xlarge": 16,
    "db.m7g.large": 8,
    "db.m7g.xlarge": 16,
    "db.r7g.large": 16,
    "db.t3.micro": 1,
    "db.t3.small": 2,
    "db.t3.medium": 4,
    "db.t3.large": 8,
    "db.m6i.large": 8,
    "db.m6g.large": 8,
}

CACHE_NODE_TYPES: tuple[str, ...] = (
    "cache.t4g.micro",
    "cache.t4g.small",
    "cache.t4g.medium",
    "cache.t3.micro",
    "cache.t3.small",
    "cache.t3.medium",
    "cache.m7g.large",
    "cache.r7g.large",
)

# Connections kept free: RDS reserves 3 for its superuser [RDS]; one-off tasks (migrations, tootctl and the
# scheduled maintenance, each a `job` with DB_POOL connections) may overlap a deploy.
RESERVED_CONNECTIONS = 3
ONE_OFF_TASKS_AT_ONCE = 3


def rds_max_connections(instance_class: str) -> int:
    mem = RDS_INSTANCE_MEMORY_GIB[instance_class] * 1024**3 * 0.8
    return min(int(mem // 9531392), 5000)


def connection_budget(tasks: tuple[TaskGroup, ...], job: ServiceSize) -> dict[str, int]:
    """Peak connections per consumer (process kind), the number every Postgres limit is checked against: a
    container opens its pools once per task, in as many tasks as its service can run at once."""
    budget = {r.name: g.peak_db_connections(r) for g in tasks for r in g.containers if g.peak_db_connections(r)}
    budget["one-off tasks"] = ONE_OFF_TASKS_AT_ONCE * job.db_pool
    budget["reserved"] = RESERVED_CONNECTIONS
    return budget


def with_override(size: ServiceSize, **changes: Any) -> ServiceSize:
    """A row with user overrides applied; None values keep the documented number."""
    return replace(size, **{k: v for k, v in changes.items() if v is not None})


# ---------------------------------------------------------------- the direct edge's Caddy container (edge)


@dataclass(frozen=True)
class SidecarSize:
    """A helper container inside another service's task: a soft reservation, and a hard limit only where a
    runaway must be stopped before it starves the task's main process."""

    reservation: int  # MiB, counted against the task's memory
    limit: int | None = None  # MiB hard limit; None lets it use what the task has spare
    cpu: int = 0  # CPU units reserved; 0 shares the task's CPU


# [M] measured here: Debian's Caddy 2.6 running the exact generated container config (one certificate, TLS,
# HTTP/2, reverse proxy, a WebSocket) held ~37 MiB RSS (tests/test_direct_edge.py prints it). 64 MiB reserved
# leaves room for connection buffers; no hard limit: an OOM-killed edge takes the whole site offline, so it
# may borrow what Puma leaves spare. No CPU reserved: TLS for a small server is light.
CADDY = SidecarSize(reservation=64)
