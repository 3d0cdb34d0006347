"""mastofargate.toml: the validated description of one Mastodon server.

Every setting is a pydantic field, so `mastofargate schema` can print the JSON Schema for editors and a
bad value is reported with its field, the value given and what is allowed. The sizing profile supplies
every number the user did not set (see sizing.py); `Config.services()` returns the resolved rows.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mastofargate.errors import UsageError
from mastofargate.sizing import (
    ALL_QUEUES,
    CACHE_NODE_TYPES,
    PROFILES,
    RDS_INSTANCE_MEMORY_GIB,
    SCHEDULER_QUEUE,
    Packing,
    Profile,
    ServiceSize,
    TaskGroup,
    connection_budget,
    fargate_size_error,
    packed_row,
    rds_max_connections,
    task_groups,
    with_override,
)

DEFAULT_CONFIG_PATH = Path("mastofargate.toml")
# The newest 4.5 release (tags checked in Mastodon's source); >= 4.5.4 fixes assets loading from the main host
# with CDN_HOST, and 4.5.5-4.5.15 are security releases. `mastofargate versions` lists newer ones.
DEFAULT_MASTODON_VERSION = "v4.5.15"

# PostgreSQL versions RDS offers (majors Mastodon 4.5 supports: >= 14), as cfn-lint's RDS data knows them.
RDS_POSTGRES_VERSIONS: tuple[str, ...] = (
    "14.19",
    "14.20",
    "15.14",
    "15.15",
    "16.10",
    "16.11",
    "17.6",
    "17.7",
    "18.3",
)
DEFAULT_POSTGRES_VERSION = "17.6"
# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS: tuple[int, ...] = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)

# The top-level label: letters, or an internationalised TLD in its punycode (ASCII) form, e.g. xn--p1ai.
_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)([a-z0-9-]{1,63}(?<!-)\.)+([a-z]{2,63}|xn--[a-z0-9-]{1,59}(?<!-))$")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_EMAIL = re.compile(r"^[^@\s<>\[\]()\\,;:\"]+@[^@\s<>\[\]()\\,;:\"]+\.([a-z]{2,}|xn--[a-z0-9-]+)$", re.IGNORECASE)
# SMTP_FROM_ADDRESS: an address, or a display name (no line breaks or angle brackets) and the address in <>.
_FROM_ADDRESS = re.compile(r"(?:[^<>\r\n\x00-\x1f]*\S\s*<(?P<addr>[^<>\s]+)>|(?P<bare>[^<>\s]+))")
_VERSION = re.compile(r"^v\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$")
_CERT_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$")
_ZONE_ID = re.compile(r"^Z[A-Z0-9]{4,31}$")
# Names that must never reach a task's plain environment (they belong in Secrets Manager).
SECRET_NAME_PATTERN = re.compile(r"(SECRET|PASSWORD|PASS$|_KEY$|TOKEN|PRIVATE|SALT|DATABASE_URL|REDIS_URL)")


class _Model(BaseModel):
    # strict: TOML has real booleans and numbers, so "yes", "no", "1" or "7" in quotes are mistakes to
    # report, not strings to coerce (pydantic's lax mode turns "no" into False without a word).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _hostname(field: str, value: str) -> str:
    v = value.strip().lower()
    if not _HOSTNAME.match(v):
        raise ValueError(f"{value!r} is not a hostname; allowed: a fully qualified name such as social.example.org")
    return v


class Server(_Model):
    """What the Mastodon server is called; LOCAL_DOMAIN can never change after the first deploy."""

    domain: str = Field(description="LOCAL_DOMAIN: the domain in users' handles. Permanent.")
    web_domain: str | None = Field(None, description="WEB_DOMAIN, when the web UI lives on another host. Permanent.")
    admin_email: str = Field(description="Owner account's email and the alarm address.")
    single_user_mode: bool = Field(False, description="SINGLE_USER_MODE: the profile page is the front page.")

    @field_validator("domain", "web_domain")
    @classmethod
    def _check_host(cls, v: str | None) -> str | None:
        return None if v in (None, "") else _hostname("domain", v)

    @field_validator("admin_email")
    @classmethod
    def _check_email(cls, v: str) -> str:
        if not _EMAIL.match(v):
            raise ValueError(f"{v!r} is not an email address; allowed: name@example.org")
        return v

    @property
    def host(self) -> str:
        """The host serving the web UI and API (WEB_DOMAIN, else LOCAL_DOMAIN)."""
        return self.web_domain or self.domain


class Aws(_Model):
    """Where the server lives and how its HTTPS certificate is obtained."""

    name: str = Field(description="Prefix of every stack and resource name (lowercase, <= 20 chars).")
    region: str = Field("us-east-1", description="AWS region.")
    hosted_zone_id: str | None = Field(None, description="Route 53 zone for DNS validation and the alias record.")
    certificate_arn: str | None = Field(None, description="An existing ACM certificate for the web host.")

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(
                f"{v!r} is not a valid name; allowed: 1-20 characters, lowercase letters, digits and '-', "
                "starting with a letter"
            )
        return v

    @field_validator("region")
    @classmethod
    def _check_region(cls, v: str) -> str:
        if not _REGION.match(v):
            raise ValueError(f"{v!r} is not an AWS region; allowed: a region code such as us-east-1")
        return v

    @field_validator("hosted_zone_id")
    @classmethod
    def _check_zone(cls, v: str | None) -> str | None:
        if v and not _ZONE_ID.match(v):
            raise ValueError(f"{v!r} is not a Route 53 hosted zone id; allowed: an id such as Z0123456789ABC")
        return v or None

    @field_validator("certificate_arn")
    @classmethod
    def _check_cert(cls, v: str | None) -> str | None:
        if v and not _CERT_ARN.match(v):
            raise ValueError(
                f"{v!r} is not an ACM certificate ARN; allowed: arn:aws:acm:REGION:ACCOUNT:certificate/UUID"
            )
        return v or None

    @model_validator(mode="after")
    def _one_certificate_source(self) -> Aws:
        if not self.hosted_zone_id and not self.certificate_arn:
            raise ValueError(
                "neither hosted_zone_id nor certificate_arn is set; allowed: one of them (a Route 53 zone to "
                "validate a new certificate in, or an existing ACM certificate)"
            )
        if self.certificate_arn and f":acm:{self.region}:" not in self.certificate_arn:
            raise ValueError(
                f"certificate_arn {self.certificate_arn!r} is not in region {self.region}; allowed: a "
                "certificate in the same region as the load balancer"
            )
        return self


# Per-profile defaults for what the user does not choose. Low cost without risking data:
# - Postgres on RDS everywhere: a Postgres task costs about the same once its public IPv4 address and EFS are
#   counted (aws.md prices), and RDS brings point-in-time recovery and snapshots.
# - ElastiCache (TLS, managed, snapshots) everywhere: `mastofargate cost --compare` puts a Redis task within
#   ~$2/month of it even for a personal server (the task's own public IPv4 address, Fargate time and EFS eat
#   the node's price), too little to justify one more thing to run.
# - Spot for the stateless services of personal and community servers (~70 % cheaper; a 2-minute warning is
#   a short blip for them); large servers stay on demand. The Postgres task never runs on Spot.
PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "personal": {"database": "rds", "cache": "elasticache", "spot": True},
    "community": {"database": "rds", "cache": "elasticache", "spot": True},
    "large": {"database": "rds", "cache": "elasticache", "spot": False},
}


class Deployment(_Model):
    """The shape: sizing profile, where Postgres and Redis run, CPU architecture, Spot."""

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            defaults = PROFILE_DEFAULTS.get(str(data.get("profile", "personal")), {})
            data = {**defaults, **data}
        return data

    profile: Literal["personal", "community", "large"] = "personal"
    database: Literal["rds", "task"] = Field("rds", description="RDS (managed, backups) or a Postgres task on EFS.")
    cache: Literal["elasticache", "task"] = Field("elasticache", description="ElastiCache or a Redis task.")
    arch: Literal["arm64", "x86_64"] = Field("arm64", description="Graviton (arm64) is ~20 % cheaper.")
    spot: bool = Field(True, description="Run web/streaming/sidekiq/redis on Fargate Spot. Postgres never.")
    mastodon_version: str = Field(DEFAULT_MASTODON_VERSION, description="Tag of ghcr.io/mastodon/mastodon(-streaming).")
    container_insights: bool = Field(False, description="CloudWatch Container Insights (costs extra).")
    edge: Literal["alb", "direct"] = Field(
        "alb",
        description="How requests reach web/streaming: 'alb' (a load balancer with an ACM certificate, ~$24/month "
        "with its two addresses) or 'direct' (Caddy in the web task with a Let's Encrypt certificate on EFS; "
        "the domain's DNS record follows the task; needs aws.hosted_zone_id).",
    )
    layout: Literal["split", "one-task"] = Field(
        "split",
        description="split: a task per process kind (as the profile packs them); one-task: web, streaming, "
        "Sidekiq and the Postgres/Redis tasks as containers of ONE singleton task (personal profile; a rollout "
        "takes the server offline for a few minutes).",
    )

    @field_validator("mastodon_version")
    @classmethod
    def _check_version(cls, v: str) -> str:
        if not v.startswith("v"):
            v = "v" + v
        if not _VERSION.match(v):
            raise ValueError(f"{v!r} is not a Mastodon release tag; allowed: vMAJOR.MINOR.PATCH such as v4.5.15")
        major, minor = (int(x) for x in v[1:].split(".")[:2])
        if (major, minor) < (4, 3):
            raise ValueError(
                f"{v!r} is older than 4.3; allowed: v4.3.0 or newer (the separate streaming image and the "
                "Active Record encryption keys this tool manages appeared in 4.3)"
            )
        return v


class Rds(_Model):
    """RDS for PostgreSQL (used when deployment.database = "rds")."""

    postgres_version: str = Field(DEFAULT_POSTGRES_VERSION, description="An RDS PostgreSQL engine version.")
    instance_class: str | None = Field(None, description="Default: the profile's class.")
    storage_gb: int | None = Field(None, ge=20, le=65536, description="Initial gp3 storage; default from profile.")
    max_storage_gb: int | None = Field(None, ge=20, le=65536, description="Storage autoscaling ceiling.")
    backup_retention_days: int = Field(7, ge=1, le=35)
    multi_az: bool = Field(False, description="A standby in a second AZ (doubles the instance price).")

    @field_validator("postgres_version")
    @classmethod
    def _check_pg(cls, v: str) -> str:
        if v not in RDS_POSTGRES_VERSIONS:
            raise ValueError(
                f"{v!r} is not a PostgreSQL version RDS offers; allowed: {', '.join(RDS_POSTGRES_VERSIONS)}"
            )
        return v

    @field_validator("instance_class")
    @classmethod
    def _check_class(cls, v: str | None) -> str | None:
        if v is not None and v not in RDS_INSTANCE_MEMORY_GIB:
            raise ValueError(
                f"{v!r} is not a supported RDS instance class; allowed: {', '.join(RDS_INSTANCE_MEMORY_GIB)}"
            )
        return v


class ElastiCache(_Model):
    """ElastiCache (used when deployment.cache = "elasticache"); Redis OSS or Valkey, >= 7, TLS + auth."""

    engine: Literal["valkey", "redis"] = "valkey"
    engine_version: Literal["7.0", "7.1", "7.2", "8.0", "8.1"] = "8.0"
    node_type: str | None = Field(None, description="Default: the profile's node type.")

    @field_validator("node_type")
    @classmethod
    def _check_node(cls, v: str | None) -> str | None:
        if v is not None and v not in CACHE_NODE_TYPES:
            raise ValueError(f"{v!r} is not a supported node type; allowed: {', '.join(CACHE_NODE_TYPES)}")
        return v

    @model_validator(mode="after")
    def _engine_version(self) -> ElastiCache:
        if self.engine == "redis" and self.engine_version not in ("7.0", "7.1"):
            raise ValueError(
                f"engine_version {self.engine_version!r} does not exist for redis; allowed: 7.0, 7.1 (or "
                "engine = 'valkey' for 7.2 and 8.x)"
            )
        if self.engine == "valkey" and self.engine_version in ("7.0", "7.1"):
            raise ValueError(
                f"engine_version {self.engine_version!r} does not exist for valkey; allowed: 7.2, 8.0, 8.1"
            )
        return self


class Media(_Model):
    """Remote-media and preview-card cleanup, run by EventBridge Scheduler as one-off tasks."""

    cleanup_days: int = Field(7, ge=1, le=365, description="tootctl media remove --days (operators use 3-7).")
    preview_card_days: int = Field(30, ge=14, le=3650, description="tootctl preview_cards remove --days (>= 14).")
    schedule: str = Field("cron(0 4 * * ? *)", description="EventBridge Scheduler expression, in UTC.")
    versioning: bool = Field(True, description="Keep deleted/overwritten media objects 7 days (guards mistakes).")
    domain: str | None = Field(
        None,
        description="Host serving media and assets (S3_ALIAS_HOST, CDN_HOST). Default with a hosted zone: "
        "files.DOMAIN; 'cloudfront' keeps the distribution's *.cloudfront.net name. PERMANENT once posts exist: "
        "every media URL other servers stored embeds it (like LOCAL_DOMAIN).",
    )
    certificate_arn: str | None = Field(
        None, description="An existing us-east-1 ACM certificate for the media domain (CloudFront reads only there)."
    )

    @field_validator("domain")
    @classmethod
    def _check_domain(cls, v: str | None) -> str | None:
        if v is None or v == MEDIA_ON_CLOUDFRONT:
            return v
        v = v.strip().lower().rstrip(".")
        if not _HOSTNAME.match(v):
            raise ValueError(
                f"{v!r} is not a host name; allowed: a DNS name such as files.example.org, or "
                f"'{MEDIA_ON_CLOUDFRONT}' for the distribution's own name"
            )
        return v

    @field_validator("certificate_arn")
    @classmethod
    def _check_media_cert(cls, v: str | None) -> str | None:
        if v and not (_CERT_ARN.match(v) and ":acm:us-east-1:" in v):
            raise ValueError(
                f"{v!r} is not a us-east-1 ACM certificate ARN; allowed: arn:aws:acm:us-east-1:ACCOUNT:certificate/"
                "UUID (CloudFront uses certificates from us-east-1 only)"
            )
        return v or None

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, v: str) -> str:
        """Checked by the parser the cost model prices it with (mastofargate.schedule), so an expression
        that passes here can neither crash the cost step nor be refused by EventBridge Scheduler."""
        from mastofargate.schedule import ALLOWED, ScheduleError, runs_per_month

        try:
            runs = runs_per_month(v)
        except ScheduleError as e:
            raise ValueError(f"{e}; allowed: {ALLOWED}") from None
        if runs <= 0:
            raise ValueError(f"{v!r} runs once at most; allowed: a recurring {ALLOWED}")
        return v


MEDIA_ON_CLOUDFRONT = "cloudfront"  # media.domain value: keep the distribution's *.cloudfront.net name


class Smtp(_Model):
    """Outgoing mail (password resets, sign-up confirmations). The password lives in Secrets Manager."""

    server: str | None = Field(None, description="SMTP_SERVER: a host name such as email-smtp.us-east-1.amazonaws.com.")
    port: int = Field(587, ge=1, le=65535)
    login: str | None = Field(None, description="SMTP_LOGIN; the password goes into Secrets Manager.")
    from_address: str | None = Field(
        None, description="SMTP_FROM_ADDRESS: name@domain or 'Display Name <name@domain>'."
    )

    @field_validator("server")
    @classmethod
    def _check_server(cls, v: str | None) -> str | None:
        return None if v in (None, "") else _hostname("smtp.server", v)

    @field_validator("login")
    @classmethod
    def _check_login(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c.isspace() or not c.isprintable() for c in v)):
            raise ValueError(f"{v!r} is not an SMTP login; allowed: a non-empty name without spaces")
        return v

    @field_validator("from_address")
    @classmethod
    def _check_from(cls, v: str | None) -> str | None:
        if v is None:
            return None
        m = _FROM_ADDRESS.fullmatch(v)
        if not m or not _EMAIL.fullmatch(m.group("addr") or m.group("bare")):
            raise ValueError(
                f"{v!r} is not a sender address; allowed: notifications@example.org or "
                "'Example Social <notifications@example.org>'"
            )
        return v

    @model_validator(mode="after")
    def _server_for_login(self) -> Smtp:
        if (self.login or self.from_address) and not self.server:
            given = "login" if self.login else "from_address"
            raise ValueError(
                f"smtp.{given} is set but smtp.server is not; allowed: set server too (without it SES is used "
                "and these settings would be ignored)"
            )
        return self


class Logs(_Model):
    retention_days: int = Field(14, description="CloudWatch Logs retention, days.")

    @field_validator("retention_days")
    @classmethod
    def _check_retention(cls, v: int) -> int:
        if v not in LOG_RETENTION_DAYS:
            raise ValueError(
                f"{v} is not a CloudWatch retention period; allowed: {', '.join(map(str, LOG_RETENTION_DAYS))}"
            )
        return v


class Efs(_Model):
    """The file system of the Postgres/Redis tasks (and of the direct edge's certificates)."""

    throughput: Literal["bursting", "elastic"] = Field(
        "bursting",
        description="bursting: no charge per GB read or written, throughput from burst credits (an alarm warns "
        "when they run low); elastic: any throughput, $0.03/GB read and $0.06/GB written.",
    )


class Cost(_Model):
    """How `mastofargate cost`, and the one-line estimates of synth, plan and the CI comment, price the server."""

    free_tier: bool = Field(
        True,
        description="Take AWS's always-free tiers (100 GB out, CloudFront, CloudWatch, Lambda, KMS) off the "
        "estimate: true for an account (or organization) that runs only this server; false where other workloads "
        "share them (`cost --free-tier/--no-free-tier` overrides it for one run).",
    )


class ServiceOverride(_Model):
    """Overrides of one service's documented size; unset fields keep the profile's number."""

    cpu: int | None = None
    memory: int | None = None
    container_memory: int | None = Field(None, description="Hard limit, MiB; default: the task's memory.")
    desired: int | None = Field(None, ge=0, le=100)
    min: int | None = Field(None, ge=0, le=100)
    max: int | None = Field(None, ge=1, le=100)
    web_concurrency: int | None = Field(None, ge=0, le=32)
    max_threads: int | None = Field(None, ge=1, le=64)
    sidekiq_concurrency: int | None = Field(None, ge=1, le=100)
    db_pool: int | None = Field(None, ge=1, le=200)


class SidekiqService(ServiceOverride):
    """A Sidekiq service of a custom split: its name, queues, and size."""

    name: str
    queues: list[str]

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not re.fullmatch(r"sidekiq(-[a-z0-9]+)*", v):
            raise ValueError(f"{v!r} is not a Sidekiq service name; allowed: 'sidekiq' or 'sidekiq-<word>'")
        return v

    @field_validator("queues")
    @classmethod
    def _check_queues(cls, v: list[str]) -> list[str]:
        known = {"default", "push", "ingress", "mailers", "pull", "scheduler", "fasp"}
        for q in v:
            if not re.fullmatch(r"[a-z_]+(,\d+)?", q) or q.split(",")[0] not in known:
                raise ValueError(
                    f"{q!r} is not a Sidekiq queue; allowed: {', '.join(sorted(known))} (optionally 'name,weight')"
                )
        if not v:
            raise ValueError("[] has no queue; allowed: at least one queue")
        return v


Services = Annotated[
    dict[str, ServiceOverride],
    Field(default_factory=dict, description="Size overrides keyed by service name (web, streaming, sidekiq, ...)."),
]


_REPOSITORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")
_OIDC_PROVIDER_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:oidc-provider/token\.actions\.githubusercontent\.com$")
_BRANCH = re.compile(r"^[A-Za-z0-9._/-]{1,100}$")


class Ci(_Model):
    """The repository whose GitHub Actions workflows plan, push images and deploy (through the CI roles)."""

    provider: Literal["github"] = Field("github", description="CI system the workflows and roles are for.")
    repository: str | None = Field(
        None, description="GitHub repository owner/name: the only one whose workflows may assume the CI roles."
    )
    branch: str = Field("main", description="The branch whose pushes build images and deploy.")
    oidc_provider_arn: str | None = Field(
        None,
        description="An existing IAM OIDC provider for token.actions.githubusercontent.com (an account holds at "
        "most one); default: the CI stack creates it.",
    )

    @field_validator("repository")
    @classmethod
    def _check_repository(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not _REPOSITORY.match(v) or v.split("/")[1] in (".", ".."):
            raise ValueError(f"{v!r} is not a GitHub repository; allowed: owner/name, e.g. example/my-server")
        return v

    @field_validator("branch")
    @classmethod
    def _check_branch(cls, v: str) -> str:
        if not _BRANCH.match(v) or ".." in v or v.startswith(("/", "-")) or v.endswith("/"):
            raise ValueError(f"{v!r} is not a branch name; allowed: letters, digits, '.', '_', '-', '/' (no wildcards)")
        return v

    @field_validator("oidc_provider_arn")
    @classmethod
    def _check_provider(cls, v: str | None) -> str | None:
        if v is not None and not _OIDC_PROVIDER_ARN.match(v):
            raise ValueError(
                f"{v!r} is not GitHub's OIDC provider ARN; allowed: "
                "arn:aws:iam::ACCOUNT:oidc-provider/token.actions.githubusercontent.com"
            )
        return v


class Config(_Model):
    """The whole mastofargate.toml."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, json_schema_extra={"title": "mastofargate.toml"}
    )

    server: Server
    aws: Aws
    deployment: Deployment = Field(default_factory=Deployment)
    rds: Rds = Field(default_factory=Rds)
    elasticache: ElastiCache = Field(default_factory=ElastiCache)
    media: Media = Field(default_factory=Media)
    smtp: Smtp = Field(default_factory=Smtp)
    logs: Logs = Field(default_factory=Logs)
    efs: Efs = Field(default_factory=Efs)
    ci: Ci = Field(default_factory=Ci)
    cost: Cost = Field(default_factory=Cost)
    services: Services
    sidekiq: list[SidekiqService] | None = Field(
        None, description="Replaces the profile's Sidekiq services with this split (scheduler in exactly one)."
    )

    @property
    def profile(self) -> Profile:
        return PROFILES[self.deployment.profile]

    @property
    def packings(self) -> tuple[Packing, ...]:
        """The profile's tasks of several containers in the chosen layout (validated to exist)."""
        return tuple(self.profile.packings.get(self.deployment.layout, ()))

    def _row(self, size: ServiceSize) -> ServiceSize:
        """A profile row inside its packing (if any), then the user's overrides."""
        return _apply(packed_row(size, self.packings), self.services.get(size.name))

    @cached_property
    def resolved_services(self) -> tuple[ServiceSize, ...]:
        """web, streaming and sidekiq rows: the profile's numbers with the user's overrides applied."""
        rows = [s for s in self.profile.services if self.sidekiq is None or s.role != "sidekiq"]
        if self.sidekiq is not None:
            template = next(s for s in self.profile.services if s.role == "sidekiq")
            rows += [_apply(with_override(template, name=i.name, queues=tuple(i.queues)), i) for i in self.sidekiq]
        return tuple(self._row(s) for s in rows)

    @property
    def postgres_task(self) -> ServiceSize:
        return self._row(self.profile.postgres_task)

    @property
    def redis_task(self) -> ServiceSize:
        return self._row(self.profile.redis_task)

    @cached_property
    def tasks(self) -> tuple[TaskGroup, ...]:
        """The ECS services: every row of `all_services` as a container of exactly one task."""
        overrides = {
            p.name: self.services[p.name].model_dump(include=set(TASK_FIELDS), exclude_none=True)
            for p in self.packings
            if p.name in self.services
        }
        return task_groups(self.all_services, self.packings, overrides)

    def task_of(self, container: str) -> TaskGroup | None:
        """The task (ECS service) holding the row named `container` (web, sidekiq-default, postgres, ...)."""
        return next((g for g in self.tasks if any(c.name == container for c in g.containers)), None)

    @property
    def one_task(self) -> bool:
        return self.deployment.layout == "one-task"

    @property
    def job(self) -> ServiceSize:
        """Size of one-off tasks (migrations, tootctl, maintenance)."""
        return self.profile.job

    @property
    def all_services(self) -> tuple[ServiceSize, ...]:
        """Every long-running ECS service the stack creates, in a stable order."""
        extra = ((self.postgres_task,) if self.deployment.database == "task" else ()) + (
            (self.redis_task,) if self.deployment.cache == "task" else ()
        )
        return (*self.resolved_services, *extra)

    @property
    def rds_instance_class(self) -> str:
        return self.rds.instance_class or self.profile.rds_instance_class

    @property
    def cache_node_type(self) -> str:
        return self.elasticache.node_type or self.profile.cache_node_type

    @property
    def max_connections(self) -> int:
        if self.deployment.database == "rds":
            return rds_max_connections(self.rds_instance_class)
        return self.profile.postgres_task_max_connections

    @model_validator(mode="after")
    def _check_resolved(self) -> Config:
        self._check_layout()
        packed = [g.name for g in self.tasks if g.packed]
        known = [s.name for s in self.all_services] + packed
        for key in self.services:
            if key not in known:
                raise ValueError(
                    f"services.{key}: {key!r} is not a service of this deployment; allowed: {', '.join(known)}"
                )
        self._check_packed_overrides()
        names = [s.name for s in self.resolved_services]
        if len(set(names)) != len(names):
            raise ValueError(f"sidekiq service names {names} repeat; allowed: each name once")
        schedulers = [s.name for s in self.resolved_services if SCHEDULER_QUEUE in s.queue_names]
        if len(schedulers) != 1:
            raise ValueError(
                f"the scheduler queue is in {len(schedulers)} Sidekiq services ({', '.join(schedulers) or 'none'}); "
                "allowed: exactly one (two schedulers enqueue every scheduled job twice)"
            )
        served = {q for s in self.resolved_services for q in s.queue_names}
        unserved = [q.split(",")[0] for q in ALL_QUEUES if q.split(",")[0] not in served]
        if unserved:
            raise ValueError(
                f"sidekiq: no service runs the queue{'s' if len(unserved) > 1 else ''} {', '.join(unserved)}; "
                "allowed: a split in which every queue Mastodon uses has a service (jobs on a queue nobody runs "
                "wait forever: without mailers, no sign-up confirmation or password reset is ever sent)"
            )
        for g in self.tasks:
            if g.packed:
                _check_group(g)
            else:
                _check_size(g.containers[0])
        if self.rds.max_storage_gb and self.rds.storage_gb and self.rds.max_storage_gb < self.rds.storage_gb:
            raise ValueError(
                f"rds.max_storage_gb {self.rds.max_storage_gb} is below rds.storage_gb {self.rds.storage_gb}; "
                "allowed: a ceiling at or above the initial size"
            )
        budget = connection_budget(self.tasks, self.profile.job)
        total = sum(budget.values())
        if total > self.max_connections:
            detail = ", ".join(f"{k} {v}" for k, v in budget.items())
            where = f"RDS {self.rds_instance_class}" if self.deployment.database == "rds" else "the Postgres task"
            raise ValueError(
                f"the services can open {total} Postgres connections at peak ({detail}) but {where} allows "
                f"{self.max_connections}; allowed: fewer tasks, threads or DB_POOL, or a larger instance class"
            )
        return self

    def _check_layout(self) -> None:
        layout = self.deployment.layout
        if layout not in self.profile.packings:
            offered = [p for p, sizes in PROFILES.items() if layout in sizes.packings]
            raise ValueError(
                f"deployment.layout: {layout!r} is not offered by profile {self.deployment.profile!r}; allowed: "
                f"layout = 'split', or profile = {' or '.join(repr(p) for p in offered)} (one task is sized for a "
                "personal server: it never scales and a rollout takes it offline for a few minutes)"
            )
        if self.one_task and self.sidekiq is not None:
            names = ", ".join(i.name for i in self.sidekiq)
            raise ValueError(
                f"sidekiq: a split of Sidekiq ({names}) runs one task per process, but deployment.layout = "
                "'one-task' runs everything in one task; allowed: no [[sidekiq]] tables with layout 'one-task' "
                "(its one Sidekiq runs every queue), or layout = 'split'"
            )

    def _check_packed_overrides(self) -> None:
        """A packed task's size and counts are set on the task; a member's process settings on the member."""
        for g in self.tasks:
            if not g.packed:
                continue
            members = ", ".join(c.name for c in g.containers)
            for c in g.containers:
                o = self.services.get(c.name)
                wrong = [f for f in TASK_FIELDS if o is not None and getattr(o, f) is not None]
                if wrong:
                    raise ValueError(
                        f"services.{c.name}.{wrong[0]}: {c.name} is a container of the task {g.name!r} "
                        f"({members}); allowed: services.{g.name}.{wrong[0]} (the task's size and counts), and "
                        f"container_memory or process settings under services.{c.name}"
                    )
            o = self.services.get(g.name)
            wrong = [
                f for f in ServiceOverride.model_fields if f not in TASK_FIELDS and o and getattr(o, f) is not None
            ]
            if wrong:
                raise ValueError(
                    f"services.{g.name}.{wrong[0]}: {g.name!r} is a task of several containers ({members}); "
                    f"allowed: {', '.join(TASK_FIELDS)} (the task's size and counts); container_memory and process "
                    f"settings go under services.<container>, e.g. services.{g.containers[0].name}"
                )

    @property
    def media_domain(self) -> str | None:
        """The host media and assets are served on (S3_ALIAS_HOST, CDN_HOST), or None for the distribution's
        *.cloudfront.net name. With a hosted zone the default is files.DOMAIN: a name the user owns, so media
        can move to another CDN later without breaking the URLs other servers stored."""
        d = self.media.domain
        if d == MEDIA_ON_CLOUDFRONT:
            return None
        if d:
            return d
        return f"files.{self.server.domain}" if self.aws.hosted_zone_id else None

    @model_validator(mode="after")
    def _check_edge(self) -> Config:
        """The direct edge keeps the domain's record pointed at the task itself, so it needs the zone; it gets
        its certificate from Let's Encrypt, so an ACM certificate is of no use to it."""
        if self.deployment.edge != "direct":
            return self
        if not self.aws.hosted_zone_id:
            raise ValueError(
                "deployment.edge 'direct' needs aws.hosted_zone_id; allowed: the id of the Route 53 zone that holds "
                f"{self.server.host} (the DNS-follower Lambda upserts its A/AAAA record there whenever the task "
                "moves), or edge = 'alb' with aws.certificate_arn"
            )
        if self.aws.certificate_arn:
            raise ValueError(
                f"aws.certificate_arn {self.aws.certificate_arn!r} is set with deployment.edge 'direct'; allowed: no "
                "certificate_arn (Caddy obtains the site's certificate from Let's Encrypt; ACM certificates cannot "
                "leave AWS's load balancers and CDNs), or edge = 'alb' to use it"
            )
        return self

    @model_validator(mode="after")
    def _check_media_domain(self) -> Config:
        d = self.media_domain
        if d is None or self.media.certificate_arn:
            return self
        if not self.aws.hosted_zone_id:
            raise ValueError(
                f"media.domain {d!r} needs a certificate; allowed: aws.hosted_zone_id (a certificate is made and "
                "validated there) or media.certificate_arn (an existing us-east-1 certificate for that name)"
            )
        if self.aws.region != "us-east-1":
            raise ValueError(
                f"media.domain {d!r} needs a certificate in us-east-1 (CloudFront reads certificates only there) "
                f"but the stacks live in {self.aws.region}; allowed: media.certificate_arn (a us-east-1 certificate "
                f"for {d}), or media.domain = '{MEDIA_ON_CLOUDFRONT}' to keep *.cloudfront.net (a choice that can "
                "never change once posts exist)"
            )
        return self


def _apply(size: ServiceSize, override: ServiceOverride | None) -> ServiceSize:
    if override is None:
        return size
    changes: dict[str, Any] = override.model_dump(exclude={"name", "queues"}, exclude_none=True)
    if "memory" in changes and "container_memory" not in changes:
        changes["container_memory"] = changes["memory"]
    if "sidekiq_concurrency" in changes and "db_pool" not in changes and size.role == "sidekiq":
        changes["db_pool"] = changes["sidekiq_concurrency"]
    if "max_threads" in changes and "db_pool" not in changes and size.role == "web":
        changes["db_pool"] = changes["max_threads"]
    out = with_override(size, **changes)
    if out.container_reservation > out.container_memory:
        out = with_override(out, container_reservation=out.container_memory)
    return out


# ServiceOverride fields that belong to a task (its Fargate size and counts), not to one of its containers.
TASK_FIELDS: tuple[str, ...] = ("cpu", "memory", "desired", "min", "max")


def _check_group(g: TaskGroup) -> None:
    """A task of several containers: a Fargate size, every hard limit inside it and their sum too (ECS refuses
    a task whose containers' limits exceed its memory), sane counts, and a singleton never scaled."""
    where = f"services.{g.name}"
    err = fargate_size_error(g.cpu, g.memory)
    if err:
        raise ValueError(f"{where}: {err}")
    parts = ", ".join(f"{c.name} {c.container_memory}" for c in g.containers)
    if g.limits_total > g.memory:
        raise ValueError(
            f"{where}: the containers' hard limits add up to {g.limits_total} MiB ({parts}) but the task has "
            f"{g.memory} MiB; allowed: a larger services.{g.name}.memory, or smaller services.<container>."
            "container_memory"
        )
    if not g.min <= g.desired <= g.max:
        raise ValueError(
            f"{where}: counts min {g.min} / desired {g.desired} / max {g.max}; allowed: min <= desired <= max"
        )
    if g.singleton and g.max > 1:
        why = "it runs the scheduler queue" if g.has("sidekiq") else "it holds a data store that owns its directory"
        raise ValueError(f"{where}: max {g.max}; allowed: 1, because this task must never run twice ({why})")


def _check_size(s: ServiceSize) -> None:
    where = f"services.{s.name}"
    err = fargate_size_error(s.cpu, s.memory)
    if err:
        raise ValueError(f"{where}: {err}")
    if s.container_memory > s.memory:
        raise ValueError(
            f"{where}: container_memory {s.container_memory} MiB does not fit the task's {s.memory} MiB; "
            f"allowed: at most {s.memory}"
        )
    if not s.min <= s.desired <= s.max:
        raise ValueError(
            f"{where}: counts min {s.min} / desired {s.desired} / max {s.max}; allowed: min <= desired <= max"
        )
    if s.singleton and s.max > 1:
        raise ValueError(
            f"{where}: max {s.max}; allowed: 1, because this service must never run twice "
            f"({'the scheduler queue' if s.role == 'sidekiq' else 'it owns its data directory'})"
        )


# ---------------------------------------------------------------------------- loading and errors


def load_config(path: Path | str = DEFAULT_CONFIG_PATH) -> Config:
    """Read and validate mastofargate.toml; every problem becomes a UsageError naming field and value."""
    path = Path(path)
    if not path.exists():
        raise UsageError(
            f"{path} does not exist.",
            fix="Run 'mastofargate init --domain YOUR.DOMAIN' to write one, or pass --config PATH.",
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path} is not valid TOML: {e}", fix="Fix the syntax at the line named above.") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text.") from None
    return parse_config(data, source=str(path))


def parse_config(data: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise UsageError(
            f"{source} has {e.error_count()} invalid setting{'s' if e.error_count() > 1 else ''}:\n"
            + "\n".join(f"  - {line}" for line in format_validation_error(e)),
            fix=f"Edit {source} and run the command again ('mastofargate schema' lists every setting).",
        ) from None


def format_validation_error(e: ValidationError) -> list[str]:
    lines = []
    for err in e.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        kind = err["type"]
        if kind == "missing":
            lines.append(f"{loc}: missing; allowed: a value must be given")
        elif kind == "extra_forbidden":
            known = _known_fields(err["loc"][:-1])
            name = str(err["loc"][-1])
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            lines.append(
                f"{loc}: {name!r} (= {err['input']!r}) is not a known setting{hint}; "
                f"allowed: {', '.join(known) or 'see mastofargate schema'}"
            )
        elif kind == "value_error":
            lines.append(f"{loc}: {msg}" if loc != "(top level)" else msg)
        elif kind in _TYPE_HINTS:
            lines.append(f"{loc}: {err['input']!r} is not valid: {msg}; allowed: {_TYPE_HINTS[kind]}")
        else:
            lines.append(f"{loc}: {err['input']!r} is not valid: {msg}")
    return lines


# Strict types: what to write instead of the quoted value (TOML's own booleans and numbers).
_TYPE_HINTS = {
    "bool_type": "true or false, without quotes",
    "int_type": "a whole number, without quotes",
    "float_type": "a number, without quotes",
    "string_type": "a string in quotes",
}


def _known_fields(path: tuple[int | str, ...]) -> list[str]:
    """Setting names allowed at a location, for 'did you mean' hints."""
    model: Any = Config
    for part in path:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        model = next((a for a in getattr(annotation, "__args__", ()) if hasattr(a, "model_fields")), annotation)
    return list(getattr(model, "model_fields", {}))


def json_schema() -> dict[str, Any]:
    return Config.model_json_schema()
