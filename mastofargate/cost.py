"""What the generated stacks will cost each month, computed from their resources.

The estimate walks the CloudFormation templates `synth` renders (not a parallel description that could
drift from them): every ECS service's task definition size, count, architecture and capacity provider,
every address, load balancer, database, cache, file system, bucket, key, log group and alarm. Every
resource type must be priced here or listed in FREE with the reason it costs nothing; any other type
makes `estimate` raise, so a new billable resource cannot slip into the stack unpriced.

Usage-driven charges (log volume, media size, EFS I/O, backups, LCUs) need assumptions; each one is
stated in the estimate's `assumptions`, and the numbers live in USAGE, one row per sizing profile.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from mastofargate.errors import MastofargateError
from mastofargate.prices import ALWAYS_FREE, COMMITMENTS, HOURS_PER_MONTH, Commitment, Prices, for_region
from mastofargate.stack.backups import DUMP_PREFIX

if TYPE_CHECKING:
    from troposphere import Template

    from mastofargate.config import Config

DAYS_PER_MONTH = HOURS_PER_MONTH / 24
# Reference points for --compare (aws.md, field notes).
EC2_REFERENCE_USD = 22.00  # operator field notes: t4g.small + t4g.micro + 25 GB gp3 each ($18 compute + $4 EBS)
EC2_REFERENCE_IPV4 = 1  # [AWS.md] the Mastodon box's public IPv4, billed since 2024-02 (the blog's $22 predates it)
FARGATE_TEMPLATE_USD = 52.97  # widdix/mastodon-on-aws, 1-50 users, as claimed (no public IPv4 counted)
FARGATE_TEMPLATE_IPV4 = 5  # its 3 Spot tasks + 2 ALB addresses, each billed since 2024


@dataclass(frozen=True)
class Usage:
    """Assumed usage of one sizing profile: the numbers no template can tell. Each is printed."""

    alb_lcu: float  # average LCUs (1 LCU = 25 new conn/s, 3,000 active conn/min, 1 GB/h or 1,000 rules/s)
    logs_gb_month: float  # CloudWatch Logs ingested by all services and jobs
    media_local_gb: float  # uploads, avatars, headers, custom emoji and pre-built assets in S3
    media_inflow_gb_day: float  # remote media cached per day (field notes: grows without cleanup)
    s3_puts_month: float
    s3_gets_month: float  # CloudFront cache misses reaching the bucket
    cloudfront_gb_month: float  # media and assets served (field notes: ~25 GB/month for a personal server)
    cloudfront_requests_month: float  # requests CloudFront answers (~50 KB each: avatars, previews, thumbnails)
    internet_out_gb_month: float  # federation deliveries and API responses from the tasks and the ALB
    db_data_gb: float  # Postgres data size (drives EFS storage and backup storage)
    db_daily_change: float  # fraction of the database whose blocks change per day (incremental backups)
    redis_rdb_gb: float  # size of one Redis RDB snapshot
    redis_changes_per_s: float  # Redis key changes per second (decides which `--save` rule fires)
    postgres_efs_read_gb: float  # metered EFS reads per month of a Postgres task
    postgres_efs_write_gb: float  # metered EFS writes per month (WAL + checkpoints)
    job_minutes: float  # run time of one scheduled maintenance task
    dns_queries_month: float  # queries for the server's own name (billed when it is not an alias record)
    kms_requests_month: float
    secret_calls_month: float


USAGE: dict[str, Usage] = {
    "personal": Usage(
        alb_lcu=0.1,
        logs_gb_month=1,
        media_local_gb=5,
        media_inflow_gb_day=0.5,
        s3_puts_month=100_000,
        s3_gets_month=300_000,
        cloudfront_gb_month=25,
        cloudfront_requests_month=500_000,
        internet_out_gb_month=20,
        db_data_gb=3,
        db_daily_change=0.01,
        redis_rdb_gb=0.02,
        redis_changes_per_s=5,
        postgres_efs_read_gb=20,
        postgres_efs_write_gb=40,
        job_minutes=10,
        dns_queries_month=1_000_000,
        kms_requests_month=30_000,
        secret_calls_month=2_000,
    ),
    "community": Usage(
        alb_lcu=0.5,
        logs_gb_month=5,
        media_local_gb=30,
        media_inflow_gb_day=2,
        s3_puts_month=500_000,
        s3_gets_month=2_000_000,
        cloudfront_gb_month=150,
        cloudfront_requests_month=3_000_000,
        internet_out_gb_month=80,
        db_data_gb=15,
        db_daily_change=0.01,
        redis_rdb_gb=0.1,
        redis_changes_per_s=50,
        postgres_efs_read_gb=100,
        postgres_efs_write_gb=200,
        job_minutes=15,
        dns_queries_month=5_000_000,
        kms_requests_month=100_000,
        secret_calls_month=5_000,
    ),
    "large": Usage(
        alb_lcu=2.0,
        logs_gb_month=30,
        media_local_gb=200,
        media_inflow_gb_day=10,
        s3_puts_month=3_000_000,
        s3_gets_month=15_000_000,
        cloudfront_gb_month=800,
        cloudfront_requests_month=16_000_000,
        internet_out_gb_month=400,
        db_data_gb=80,
        db_daily_change=0.01,
        redis_rdb_gb=0.5,
        redis_changes_per_s=500,
        postgres_efs_read_gb=500,
        postgres_efs_write_gb=1000,
        job_minutes=30,
        dns_queries_month=20_000_000,
        kms_requests_month=500_000,
        secret_calls_month=20_000,
    ),
}

# ECR: compressed size of the first image and of the layers a new release adds [ASSUME; aws.md: the
# Mastodon image is ~400 MB; the Node streaming image is much smaller].
# The backup image is Docker's postgres (Debian bookworm, ~150 MB compressed) plus pgBackRest and python3-boto3
# (~40 MB); a new tag mostly re-uses the base layers.
IMAGE_GB: dict[str, tuple[float, float]] = {
    "mastodon": (0.45, 0.20),
    "streaming": (0.08, 0.03),
    "backup": (0.19, 0.02),
}
DEFAULT_IMAGE_GB = (0.3, 0.1)
LOG_COMPRESSION = 1 / 6  # CloudWatch bills stored logs compressed; text compresses ~6:1 [ASSUME]

# Resource types that cost nothing by themselves, each with the reason.
FREE: dict[str, str] = {
    "AWS::EC2::VPC": "VPCs are free",
    "AWS::EC2::Subnet": "subnets are free",
    "AWS::EC2::RouteTable": "route tables are free",
    "AWS::EC2::Route": "routes are free",
    "AWS::EC2::SubnetRouteTableAssociation": "free",
    "AWS::EC2::VPCGatewayAttachment": "free (internet traffic is priced with the internet gateway)",
    "AWS::EC2::SecurityGroup": "security groups are free",
    "AWS::IAM::Role": "IAM is free",
    "AWS::IAM::Policy": "IAM is free",
    "AWS::IAM::ManagedPolicy": "IAM is free",
    "AWS::IAM::OIDCProvider": "IAM is free (the CI stack's GitHub OIDC provider)",
    "AWS::KMS::Alias": "aliases are free (the key is priced)",
    "AWS::RDS::DBSubnetGroup": "free",
    "AWS::RDS::DBParameterGroup": "free",
    "AWS::ElastiCache::SubnetGroup": "free",
    "AWS::ElastiCache::ParameterGroup": "free",
    "AWS::EFS::MountTarget": "free (storage and throughput are priced on the file system)",
    "AWS::EFS::AccessPoint": "free",
    "AWS::S3::BucketPolicy": "free",
    "AWS::CloudFront::OriginAccessControl": "free",
    "AWS::CloudFront::CachePolicy": "free",
    "AWS::Backup::BackupVault": "free (its storage is priced with the backup plan)",
    "AWS::Backup::BackupSelection": "priced with the backup plan it belongs to",
    "AWS::ECS::TaskDefinition": "priced through the services and schedules that run it",
    "AWS::ECS::ClusterCapacityProviderAssociations": "free",
    "AWS::ElasticLoadBalancingV2::TargetGroup": "included in the load balancer's hourly and LCU price",
    "AWS::ElasticLoadBalancingV2::Listener": "included in the load balancer's hourly and LCU price",
    "AWS::ElasticLoadBalancingV2::ListenerRule": "included in the LCU price (rule evaluations)",
    "AWS::CertificateManager::Certificate": "public ACM certificates are free",
    "AWS::IAM::User": "IAM users and their access keys are free",
    "AWS::ApplicationAutoScaling::ScalableTarget": "free; the tasks it may add are priced per task",
    "AWS::ApplicationAutoScaling::ScalingPolicy": "free",
    "AWS::SNS::Topic": "alarm emails stay within SNS's 1,000 free email notifications a month",
    "AWS::SNS::TopicPolicy": "free",
    "AWS::Events::Rule": "rules on AWS service events (ECS deployment state, placement failures) and scheduled "
    "rules are free",
    "AWS::SQS::Queue": "dead-letter queues see a handful of messages, within SQS's 1 million free requests a month",
    "AWS::Lambda::Permission": "free (the function's invocations are priced with it)",
    "AWS::SQS::QueuePolicy": "free",
}


class UnpricedResourceError(MastofargateError):
    """A template holds a resource type the estimate neither prices nor knows to be free."""


# The kinds of estimate lines: what AWS bills, and what one of its always-free allowances takes off again.
CHARGE = "charge"
FREE_TIER_CREDIT = "free_tier_credit"


@dataclass(frozen=True)
class LineItem:
    name: str
    quantity: float
    unit: str
    unit_price: float
    usd_month: float
    on_demand_usd_month: float | None = None  # a Spot line: what it costs on on-demand (e.g. on the Spot fallback)
    committed_usd_month: float | None = None  # with `--commit`: the line under a Savings Plan / reservation
    commit_class: str = ""  # "fargate" (Compute Savings Plans apply) | "rds" (RDS reserved instances) | ""
    free_tier: str = ""  # the always-free allowance (prices.ALWAYS_FREE key) a charge draws on or a credit grants
    kind: str = CHARGE  # CHARGE (gross, >= 0) | FREE_TIER_CREDIT (negative: an allowance taken off)
    offsets: tuple[str, ...] = ()  # a credit: the names of the charge lines it takes its allowance off

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "quantity": round(self.quantity, 4),
            "unit": self.unit,
            "unit_price": round(self.unit_price, 6),
            "usd_month": round(self.usd_month, 2),
        }
        if self.on_demand_usd_month is not None:
            out["on_demand_usd_month"] = round(self.on_demand_usd_month, 2)
        if self.committed_usd_month is not None:
            out["committed_usd_month"] = round(self.committed_usd_month, 2)
        if self.offsets:
            out["offsets"] = list(self.offsets)
        return out


@dataclass(frozen=True)
class Estimate:
    """The lines of one estimate. With the always-free tiers applied (`free_tier`), the credit lines are part
    of `items` and every total is net of them; the `*_without_free_tier` totals leave them out (gross)."""

    total_usd_month: float
    items: list[LineItem]
    assumptions: list[str]
    prices_as_of: str
    region: str
    commitment: Commitment | None = None
    free_tier: bool = True  # False: `--no-free-tier`, every line gross and no credit line

    @property
    def charges(self) -> list[LineItem]:
        return [i for i in self.items if i.kind == CHARGE]

    @property
    def credits(self) -> list[LineItem]:
        return [i for i in self.items if i.kind == FREE_TIER_CREDIT]

    @property
    def total_on_demand_usd_month(self) -> float:
        """The bill if every Spot task ran on on-demand Fargate all month (Spot without capacity: the fallback)."""
        return sum(_on_demand(i) for i in self.items)

    @property
    def total_without_free_tier_usd_month(self) -> float:
        """The bill where something else already uses the always-free allowances (a shared account)."""
        return sum(i.usd_month for i in self.charges)

    @property
    def total_on_demand_without_free_tier_usd_month(self) -> float:
        return sum(_on_demand(i) for i in self.charges)

    @property
    def free_tier_usd_month(self) -> float:
        """What the credit lines take off (<= 0)."""
        return sum(i.usd_month for i in self.credits)

    @property
    def has_spot(self) -> bool:
        return any(i.on_demand_usd_month is not None for i in self.items)

    @property
    def total_committed_usd_month(self) -> float | None:
        """With a commitment: credits count at their face value (a Savings Plan discounts a charge, never a
        credit; no credit offsets a line a commitment covers, see _apply_free_tier)."""
        if self.commitment is None:
            return None
        return sum(i.committed_usd_month if i.committed_usd_month is not None else i.usd_month for i in self.items)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "total_usd_month": round(self.total_usd_month, 2),
            "total_on_demand_usd_month": round(self.total_on_demand_usd_month, 2),
            "total_without_free_tier_usd_month": round(self.total_without_free_tier_usd_month, 2),
            "total_on_demand_without_free_tier_usd_month": round(self.total_on_demand_without_free_tier_usd_month, 2),
            "free_tier": {
                "applied": self.free_tier,
                "usd_month": round(self.free_tier_usd_month, 2),
                "basis": FREE_TIER_BASIS if self.free_tier else NO_FREE_TIER_BASIS,
                "allowances": [
                    {"name": a.label, "free_per_month": a.quantity, "unit": a.unit, "source": a.source}
                    for a in ALWAYS_FREE
                    if any(c.free_tier == a.key for c in self.credits)
                ],
            },
            "items": [i.to_json() for i in self.items],
            "assumptions": list(self.assumptions),
            "prices_as_of": self.prices_as_of,
            "region": self.region,
        }
        committed = self.total_committed_usd_month
        if self.commitment is not None and committed is not None:
            out["commitment"] = {
                "term": self.commitment.term,
                "what": self.commitment.note,
                "total_usd_month": round(committed, 2),
                "saves_usd_month": round(self.total_usd_month - committed, 2),
            }
        return out


def _on_demand(i: LineItem) -> float:
    return i.on_demand_usd_month if i.on_demand_usd_month is not None else i.usd_month


FREE_TIER_BASIS = (
    "net of AWS's always-free tiers (one allowance per account, or per organization with consolidated billing, "
    "over all regions), assuming nothing else billed to the account uses them"
)
NO_FREE_TIER_BASIS = (
    "gross (--no-free-tier or [cost] free_tier = false): no always-free allowance subtracted, as on an account "
    "other workloads share"
)


# ---------------------------------------------------------------------------------------- the walk


@dataclass
class _Walk:
    """State of one estimate: the templates as dicts, prices, usage, and what has been found."""

    templates: dict[str, dict[str, Any]]
    config: Config
    prices: Prices
    usage: Usage
    media_gb: float | None
    items: list[LineItem] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)

    # -- reading the templates

    def of_type(self, rtype: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(stack, logical id, properties) of every resource of a type, in template order."""
        for stack, tpl in self.templates.items():
            for rid, res in tpl.get("Resources", {}).items():
                if res.get("Type") == rtype:
                    yield stack, rid, res.get("Properties", {})

    def resource(self, stack: str, rid: str | None) -> dict[str, Any]:
        if rid is None:
            return {}
        return self.templates.get(stack, {}).get("Resources", {}).get(rid, {})

    def export(self, name: str) -> Any:
        for tpl in self.templates.values():
            for out in tpl.get("Outputs", {}).values():
                if out.get("Export", {}).get("Name") == name:
                    return out.get("Value")
        return None

    def list_length(self, value: Any) -> int | None:
        """How many items a list property holds, following Fn::Split over an import of a Fn::Join."""
        if isinstance(value, list):
            return len(value)
        if isinstance(value, dict) and "Fn::Split" in value:
            source = value["Fn::Split"][1]
            if isinstance(source, dict) and "Fn::ImportValue" in source:
                source = self.export(source["Fn::ImportValue"])
            if isinstance(source, dict) and "Fn::Join" in source:
                return len(source["Fn::Join"][1])
            if isinstance(source, str):
                return len(source.split(value["Fn::Split"][0]))
        return None

    def number(self, stack: str, value: Any) -> float | None:
        """A count or size: literal, a parameter's default, or the larger branch of Fn::If (the running one)."""
        if isinstance(value, bool):
            return float(value)
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return None
        if isinstance(value, dict) and "Fn::If" in value:
            branches = [self.number(stack, v) for v in value["Fn::If"][1:]]
            known = [b for b in branches if b is not None]
            return max(known) if known else None
        if isinstance(value, dict) and "Ref" in value:
            param = self.templates.get(stack, {}).get("Parameters", {}).get(value["Ref"], {})
            return self.number(stack, param.get("Default"))
        return None

    # -- writing the estimate

    def add(
        self,
        name: str,
        quantity: float,
        unit: str,
        unit_price: float,
        *,
        on_demand_unit_price: float | None = None,
        commit_class: str = "",
        free_tier: str = "",
    ) -> None:
        on_demand = None if on_demand_unit_price is None else quantity * on_demand_unit_price
        self.items.append(
            LineItem(
                name,
                quantity,
                unit,
                unit_price,
                quantity * unit_price,
                on_demand,
                commit_class=commit_class,
                free_tier=free_tier,
            )
        )

    def assume(self, text: str) -> None:
        if text not in self.assumptions:
            self.assumptions.append(text)


def _ref(value: Any) -> str | None:
    """The logical id a Ref or Fn::GetAtt points at; of an Fn::If, its first branch's (the estimate prices
    the server running: ServicesEnabled=true, e.g. the one task's whole task definition)."""
    if isinstance(value, dict) and isinstance(value.get("Fn::If"), list) and len(value["Fn::If"]) == 3:
        return _ref(value["Fn::If"][1])
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            att = value["Fn::GetAtt"]
            return str(att[0] if isinstance(att, list) else att.split(".")[0])
    return None


def _money(x: float) -> str:
    return f"${x:,.2f}"


# ---------------------------------------------------------------------------------------- Fargate


@dataclass(frozen=True)
class _TaskSize:
    vcpu: float
    gb: float
    arch: str
    extra_storage_gb: float
    public_ip: bool

    def hourly(self, p: Prices, spot: bool) -> float:
        on_demand = (
            self.vcpu * p.fargate_vcpu_hour[self.arch]
            + self.gb * p.fargate_gb_hour[self.arch]
            + self.extra_storage_gb * p.fargate_ephemeral_gb_hour
        )
        return on_demand * (1 - p.fargate_spot_discount) if spot else on_demand

    def describe(self) -> str:
        return f"{self.vcpu:g} vCPU, {self.gb:g} GB, {self.arch}"


def _task_size(w: _Walk, stack: str, td_ref: Any, network: dict[str, Any]) -> _TaskSize:
    td = w.resource(stack, _ref(td_ref)).get("Properties", {})
    if not td:
        raise MastofargateError(
            f"cannot price a task: task definition {td_ref!r} is not in the {stack} template",
            why="the estimate reads CPU and memory from the task definition a service or schedule refers to",
            fix="refer to task definitions of the same template with Ref",
        )
    arch = td.get("RuntimePlatform", {}).get("CpuArchitecture", "X86_64")
    storage = w.number(stack, td.get("EphemeralStorage", {}).get("SizeInGiB")) or 20
    return _TaskSize(
        vcpu=(w.number(stack, td.get("Cpu")) or 0) / 1024,
        gb=(w.number(stack, td.get("Memory")) or 0) / 1024,
        arch=arch,
        extra_storage_gb=max(0.0, storage - 20),
        public_ip=network.get("AwsvpcConfiguration", {}).get("AssignPublicIp") == "ENABLED",
    )


def split_capacity(tasks: float, strategy: list[dict[str, Any]] | None) -> dict[str, float]:
    """Tasks per capacity provider, as ECS places them: each provider's Base first, the rest by Weight."""
    if not strategy:
        return {"FARGATE": tasks}
    out: dict[str, float] = defaultdict(float)
    left = tasks
    for item in strategy:
        base = min(float(item.get("Base", 0)), left)
        out[item["CapacityProvider"]] += base
        left -= base
    weights = sum(float(item.get("Weight", 0)) for item in strategy)
    if left > 0:
        for item in strategy:
            if weights:
                out[item["CapacityProvider"]] += left * float(item.get("Weight", 0)) / weights
        if not weights:
            out[strategy[0]["CapacityProvider"]] += left
    return {k: v for k, v in out.items() if v > 0}


def _services(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    p = w.prices
    public_tasks = 0.0
    spot_arm = False
    for stack, rid, props in found:
        name = props.get("ServiceName", rid)
        tasks = w.number(stack, props.get("DesiredCount", 1))
        tasks = 1.0 if tasks is None else tasks
        size = _task_size(w, stack, props.get("TaskDefinition"), props.get("NetworkConfiguration", {}))
        strategy = props.get("CapacityProviderStrategy")
        if not strategy and props.get("LaunchType") not in (None, "FARGATE"):
            raise MastofargateError(f"cannot price service {name}: launch type {props['LaunchType']}")
        for provider, count in sorted(split_capacity(tasks, strategy).items()):
            spot = provider == "FARGATE_SPOT"
            spot_arm = spot_arm or (spot and size.arch == "ARM64")
            label = "Fargate Spot" if spot else "Fargate"
            w.add(
                f"{label}: {name} ({size.describe()})",
                count,
                "task-month",
                p.monthly(size.hourly(p, spot)),
                on_demand_unit_price=p.monthly(size.hourly(p, False)) if spot else None,
                commit_class="" if spot else "fargate",
            )
        if size.public_ip:
            public_tasks += tasks
        _autoscaling_note(w, stack, rid, name, tasks, size)
    if public_tasks:
        w.add("Public IPv4: one per service task", public_tasks, "address-month", p.monthly(p.public_ipv4_hour))
    w.assume(
        "Services run at their desired counts with ServicesEnabled=true; every task with AssignPublicIp "
        f"gets a public IPv4 address ({_money(p.monthly(p.public_ipv4_hour))}/month each)."
    )
    if any(i.name.startswith("Fargate Spot") for i in w.items):
        w.assume(
            f"Fargate Spot is priced {p.fargate_spot_discount:.1%} below on-demand in {p.region} (the Spot price "
            "floats). When Spot has no capacity the Spot fallback runs the service on on-demand Fargate: each Spot "
            "line shows that price too."
            + (
                " ARM64 on Spot: the ECS API reference allows it on platform 1.4.0+, older guide pages say "
                "otherwise; treated as allowed."
                if spot_arm
                else ""
            )
        )


def _autoscaling_note(w: _Walk, stack: str, service_id: str, name: str, tasks: float, size: _TaskSize) -> None:
    for _, _, props in w.of_type("AWS::ApplicationAutoScaling::ScalableTarget"):
        if f'"{service_id}"' not in json.dumps(props.get("ResourceId")):
            continue
        most = w.number(stack, props.get("MaxCapacity"))
        if most and most > tasks:
            extra = size.hourly(w.prices, False) + (w.prices.public_ipv4_hour if size.public_ip else 0)
            w.assume(
                f"{name} autoscales up to {most:g} tasks on CPU; priced at {tasks:g}. Each extra task adds up to "
                f"{_money(w.prices.monthly(extra))}/month on-demand (incl. its IPv4) while it runs"
                + ("; the direct edge's DNS sends it clients." if w.config.deployment.edge == "direct" else ".")
            )


def _schedules(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    p = w.prices
    for stack, rid, props in found:
        target = props.get("Target", {})
        ecs = target.get("EcsParameters")
        if not ecs:
            continue  # a schedule invoking something other than ECS: Scheduler itself is in its free tier
        runs = runs_per_month(props.get("ScheduleExpression", ""))
        size = _task_size(w, stack, ecs.get("TaskDefinitionArn"), ecs.get("NetworkConfiguration", {}))
        count = w.number(stack, ecs.get("TaskCount", 1)) or 1
        minutes = _backup_minutes(w, json.dumps(target.get("Input", ""))) or w.usage.job_minutes
        hours = runs * count * minutes / 60
        split = split_capacity(1, ecs.get("CapacityProviderStrategy"))
        spot_share = split.get("FARGATE_SPOT", 0.0)
        hourly = spot_share * size.hourly(p, True) + (1 - spot_share) * size.hourly(p, False)
        hourly += p.public_ipv4_hour if size.public_ip else 0
        w.add(
            f"Scheduled task {rid.removesuffix('Schedule')} ({runs:.1f} runs x {minutes:g} min, "
            f"{size.describe()}{', Spot' if spot_share else ''})",
            hours,
            "task-hour",
            hourly,
            commit_class="" if spot_share else "fargate",
        )
    w.assume(
        f"Scheduled maintenance tasks run {w.usage.job_minutes:g} minutes each (Rails boot + cleanup), with a "
        "public IPv4 while they run; Scheduler invocations are within its 14 million/month free tier. "
        "Migrations run only during deploys (minutes a month) and are not priced."
    )


# The backup task (stack/backup_tasks.py): start-up (image pull, ENI) [ASSUME] plus minutes per GB of Postgres
# data. bench/backup.py on a 0.52 GB Mastodon-shaped database, one local core: dump 36 s, drill (checksum,
# scratch cluster, restore, checks) 48 s, i.e. 1.2 and 1.5 min/GB; doubled for the personal profile's half
# vCPU and the S3 transfer [MEASURED + ASSUME].
BACKUP_START_MINUTES = 2.0
DUMP_MINUTES_PER_GB = 2.0
DRILL_MINUTES_PER_GB = 3.0


def _backup_minutes(w: _Walk, command: str) -> float | None:
    """Run time of a scheduled backup task (a pgtask.py dump or verify), None for anything else."""
    if "pgtask.py" not in command:
        return None
    per_gb = DUMP_MINUTES_PER_GB if re.search(r"pgtask\.py\W+dump\b", command) else DRILL_MINUTES_PER_GB
    minutes = round(BACKUP_START_MINUTES + w.usage.db_data_gb * per_gb, 1)
    w.assume(
        f"Backup task runs: {BACKUP_START_MINUTES:g} min to start plus {per_gb:g} min per GB of the "
        f"{w.usage.db_data_gb:g} GB database ({'dump' if per_gb == DUMP_MINUTES_PER_GB else 'restore drill'})."
    )
    return minutes


def runs_per_month(expression: str) -> float:
    """How often an EventBridge Scheduler expression fires in an average month (the config is checked with
    the same parser, mastofargate.schedule, so a template that reaches here parses)."""
    from mastofargate.schedule import runs_per_month as parse

    return parse(expression)


def _cluster(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    for _, _, props in found:
        insights = {s.get("Name"): s.get("Value") for s in props.get("ClusterSettings", [])}.get("containerInsights")
        if insights not in ("enabled", "enhanced"):
            continue
        services = sum(1 for _ in w.of_type("AWS::ECS::Service"))
        metrics = 8 + 11 * services  # [ASSUME] ~8 cluster-level and ~11 service-level Container Insights metrics
        w.add(
            f"Container Insights ({metrics} metrics)",
            metrics,
            "metric-month",
            w.prices.custom_metric_month,
            free_tier="cloudwatch_metrics",
        )
        w.assume(
            "Container Insights is on: priced as ~8 cluster and ~11 per-service custom metrics; its performance "
            "log events are counted in the CloudWatch Logs volume."
        )


# ---------------------------------------------------------------------------------------- network


def _load_balancers(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    p = w.prices
    for _, rid, props in found:
        kind = props.get("Type", "application")
        if kind != "application":
            raise MastofargateError(f"cannot price load balancer {rid}: type {kind} is not priced yet")
        w.add("Application Load Balancer" + (f" {rid}" if len(found) > 1 else ""), 1, "month", p.monthly(p.alb_hour))
        lcu_hours = w.usage.alb_lcu * HOURS_PER_MONTH
        w.add(f"ALB capacity units (assumed {w.usage.alb_lcu:g} LCU on average)", lcu_hours, "LCU-hour", p.alb_lcu_hour)
        subnets = w.list_length(props.get("Subnets"))
        if subnets is None:
            subnets = len(props.get("SubnetMappings", [])) or 2
            w.assume(f"Load balancer {rid}: its subnets could not be counted from the template; assumed {subnets}.")
        if props.get("Scheme", "internet-facing") == "internet-facing":
            w.add(
                f"Public IPv4: load balancer ({subnets} AZs, one address each)",
                subnets,
                "address-month",
                p.monthly(p.public_ipv4_hour),
            )
    w.assume(
        f"The load balancer averages {w.usage.alb_lcu:g} LCU (a {w.config.deployment.profile} server's "
        "federation traffic; 1 LCU = 25 new connections/s, 3,000 active connections/min or 1 GB/h)."
    )


def _nat_gateways(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    p = w.prices
    w.add("NAT gateways", len(found), "gateway-month", p.monthly(p.nat_hour))
    w.add("NAT gateway data processed (assumed = internet traffic)", w.usage.internet_out_gb_month, "GB", p.nat_gb)
    w.add("Public IPv4: NAT gateways", len(found), "address-month", p.monthly(p.public_ipv4_hour))


def _internet_gateways(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    p = w.prices
    out = w.usage.internet_out_gb_month
    w.add(
        f"Data transfer out to the internet (assumed {out:g} GB/month)",
        out,
        "GB",
        p.data_transfer_out_gb,
        free_tier="data_transfer_out",
    )
    w.assume(
        f"Tasks and the load balancer send ~{out:g} GB/month to the internet (federation deliveries, API "
        "responses). Inbound traffic is free; cross-AZ traffic between tasks and the database (~$0.01/GB each "
        "way) is not priced."
    )


# ---------------------------------------------------------------------------------------- data stores


def _rds(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    p = w.prices
    for stack, rid, props in found:
        cls = props.get("DBInstanceClass", "")
        if cls not in p.rds_instance_hour:
            raise MastofargateError(
                f"cannot price RDS instance {rid}: class {cls!r} is not in the price table",
                fix="add it to mastofargate/prices.py (rds_instance_hour)",
            )
        multi = 2 if props.get("MultiAZ") in (True, "true", "True") else 1
        az = " Multi-AZ" if multi == 2 else ""
        w.add(
            f"RDS PostgreSQL {cls}{az}",
            multi,
            "instance-month",
            p.monthly(p.rds_instance_hour[cls]),
            commit_class="rds",
        )
        storage = w.number(stack, props.get("AllocatedStorage")) or 20
        kind = props.get("StorageType", "gp2")
        w.add(f"RDS {kind} storage ({storage:g} GB allocated{az})", storage * multi, "GB-month", p.rds_gp3_gb_month)
        if kind not in ("gp3", "gp2"):
            w.assume(f"RDS storage type {kind} priced as gp3 (without provisioned IOPS).")
        w.assume(
            f"RDS storage is billed as allocated ({storage:g} GB), not used; storage autoscaling may raise it. "
            "Automated backups (7 days) stay within RDS's free backup storage (= allocated storage)."
        )
        if props.get("EnableCloudwatchLogsExports"):
            w.assume(
                "RDS exports its PostgreSQL log (slow statements and errors) to CloudWatch; counted in the log volume."
            )


def _caches(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    p = w.prices
    for stack, rid, props in found:
        node = props.get("CacheNodeType", "")
        if node not in p.cache_node_hour:
            raise MastofargateError(
                f"cannot price ElastiCache {rid}: node type {node!r} is not in the price table",
                fix="add it to mastofargate/prices.py (cache_node_hour)",
            )
        if "NumCacheClusters" in props:
            nodes = w.number(stack, props["NumCacheClusters"]) or 1
        else:
            groups = w.number(stack, props.get("NumNodeGroups", 1)) or 1
            nodes = groups * ((w.number(stack, props.get("ReplicasPerNodeGroup", 0)) or 0) + 1)
        engine = str(props.get("Engine", "redis")).lower()
        hourly = p.cache_node_hour[node] * ((1 - p.valkey_discount) if engine == "valkey" else 1)
        w.add(f"ElastiCache {engine} {node}", nodes, "node-month", p.monthly(hourly))
        if engine == "valkey":
            w.assume(f"ElastiCache for Valkey nodes cost {p.valkey_discount:.0%} less than Redis OSS nodes.")
        if (w.number(stack, props.get("SnapshotRetentionLimit", 0)) or 0) > 1:
            w.assume(
                "ElastiCache keeps one snapshot per cluster free; the extra daily snapshots of a "
                f"~{w.usage.redis_rdb_gb * 1000:g} MB dataset cost under $0.01/month (not itemised)."
            )


def _efs_users(w: _Walk, fs_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(role, container) of the ECS services whose task definition mounts this file system."""
    users = []
    for stack, _, svc in w.of_type("AWS::ECS::Service"):
        td = w.resource(stack, _ref(svc.get("TaskDefinition"))).get("Properties", {})
        mounts = json.dumps(td.get("Volumes", []))
        export = f"{w.config.aws.name}-data:FileSystemId"
        if f'"{fs_id}"' in mounts or export in mounts:
            for container in td.get("ContainerDefinitions", []):
                users.append((container.get("Name", ""), container))
    return users


def redis_saves_per_month(command: str, changes_per_s: float) -> tuple[float, str]:
    """RDB snapshots a month under `--save SECONDS CHANGES` rules: the shortest interval whose change
    threshold the assumed change rate reaches fires (Redis saves when any rule is met)."""
    rules = [(int(a), int(b)) for a, b in re.findall(r"--save\s+(\d+)\s+(\d+)", command)]
    met = [secs for secs, changes in rules if secs * changes_per_s >= changes]
    if not met:
        return 0.0, "no --save rule fires"
    interval = min(met)
    return HOURS_PER_MONTH * 3600 / interval, f"every {interval} s"


# Bytes one Redis change adds to the append-only file: Sidekiq's pushes carry ~300-1000 byte JSON jobs,
# home-feed ZADDs ~60 bytes; most changes are feed inserts, so ~300 bytes on average (an assumption).
AOF_BYTES_PER_CHANGE = 300
AOF_REWRITE_MIN_GB = 64 / 1024  # Redis rewrites the AOF when it doubled AND exceeds 64 MB (redis.conf defaults)


def redis_aof_writes_gb(changes_per_s: float, dataset_gb: float) -> tuple[float, str]:
    """GB a month written to an append-only file: every change appended, plus the rewrites that compact it
    (each writes the whole data set once the file has grown by max(data set, 64 MB))."""
    appended = changes_per_s * AOF_BYTES_PER_CHANGE * HOURS_PER_MONTH * 3600 / 1e9
    rewrites = appended / max(dataset_gb, AOF_REWRITE_MIN_GB)
    total = appended + rewrites * dataset_gb
    return total, (
        f"~{changes_per_s:g} changes/s x ~{AOF_BYTES_PER_CHANGE} B appended ({appended:,.1f} GB) plus "
        f"{rewrites:,.0f} rewrites of the ~{dataset_gb * 1000:g} MB data set: {total:,.1f} GB written a month"
    )


def _file_systems(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    p = w.prices
    u = w.usage
    for stack, rid, props in found:
        users = _efs_users(w, rid)
        gb = 0.0
        reads = writes = 0.0
        notes = []
        for role, container in users:
            if role == "postgres":
                gb += u.db_data_gb
                reads += u.postgres_efs_read_gb
                writes += u.postgres_efs_write_gb
                notes.append(
                    f"Postgres on EFS: {u.db_data_gb:g} GB of data, ~{u.postgres_efs_write_gb:g} GB metered "
                    f"writes (WAL, checkpoints) and ~{u.postgres_efs_read_gb:g} GB reads a month"
                )
            elif role == "redis" and "appendfsync everysec" in " ".join(container.get("EntryPoint", [])):
                aof_gb, how = redis_aof_writes_gb(u.redis_changes_per_s, u.redis_rdb_gb)
                gb += u.redis_rdb_gb
                writes += aof_gb
                notes.append(f"Redis on EFS keeps an append-only file: {how}")
            elif role == "redis":
                command = " ".join(container.get("Command", []))
                saves, how = redis_saves_per_month(command, u.redis_changes_per_s)
                gb += u.redis_rdb_gb
                writes += saves * u.redis_rdb_gb
                notes.append(
                    f"Redis on EFS rewrites its whole ~{u.redis_rdb_gb * 1000:g} MB RDB snapshot {how} (its "
                    f"--save rules at ~{u.redis_changes_per_s:g} key changes/s): {saves:,.0f} saves, "
                    f"{saves * u.redis_rdb_gb:,.0f} GB written a month"
                )
        gb = gb or 0.1
        w.add(f"EFS Standard storage {rid} (assumed {gb:g} GB)", gb, "GB-month", p.efs_standard_gb_month)
        mode = props.get("ThroughputMode", "bursting")
        if mode == "elastic":
            if writes:
                w.add(f"EFS Elastic Throughput writes {rid}", writes, "GB", p.efs_elastic_write_gb)
            if reads:
                w.add(f"EFS Elastic Throughput reads {rid}", reads, "GB", p.efs_elastic_read_gb)
        elif mode == "provisioned":
            mibps = w.number(stack, props.get("ProvisionedThroughputInMibps")) or 1
            w.add(f"EFS Provisioned Throughput {rid}", mibps, "MiB/s-month", p.efs_provisioned_mibps_month)
        else:
            notes.append("bursting throughput has no per-GB charge (assumed within its baseline)")
        w.assume(f"EFS {rid}: " + "; ".join(notes or ["no task mounts it: 0.1 GB assumed"]) + ".")


def _backup_plans(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    p = w.prices
    u = w.usage
    for stack, rid, props in found:
        rules = props.get("BackupPlan", {}).get("BackupPlanRule", [])
        keep = max((w.number(stack, r.get("Lifecycle", {}).get("DeleteAfterDays")) or 35 for r in rules), default=35)
        factor = 1 + u.db_daily_change * keep
        covered = []
        for _, _, sel in w.of_type("AWS::Backup::BackupSelection"):
            if _ref(sel.get("BackupPlanId")) != rid:
                continue
            covered += sel.get("BackupSelection", {}).get("Resources", [])
        for res in covered:
            text = json.dumps(res)
            if ":rds:" in text:
                gb = u.db_data_gb * factor
                w.add(f"AWS Backup: RDS snapshots (assumed {gb:.1f} GB)", gb, "GB-month", p.rds_snapshot_gb_month)
            elif "FileSystem" in text or ":elasticfilesystem:" in text:
                fs_gb = (
                    sum(
                        u.db_data_gb if role == "postgres" else u.redis_rdb_gb if role == "redis" else 0
                        for _, fs_id, _ in w.of_type("AWS::EFS::FileSystem")
                        for role, _ in _efs_users(w, fs_id)
                    )
                    or 0.1
                )
                gb = fs_gb * factor
                w.add(f"AWS Backup: EFS backups (assumed {gb:.2g} GB)", gb, "GB-month", p.efs_backup_gb_month)
        w.assume(
            f"Backups are incremental: stored ~ data x (1 + {u.db_daily_change:.0%} changed a day x {keep:g} days "
            f"kept), with {u.db_data_gb:g} GB of Postgres data; RDS snapshots may partly fit RDS's free backup "
            "allowance, which is not subtracted."
        )


# ---------------------------------------------------------------------------------------- media, images


def _media_bucket_ids(w: _Walk) -> set[str]:
    """Buckets a CloudFront distribution serves from (the media bucket)."""
    ids = set()
    for _, _, props in w.of_type("AWS::CloudFront::Distribution"):
        for origin in props.get("DistributionConfig", {}).get("Origins", []):
            rid = _ref(origin.get("DomainName"))
            if rid:
                ids.add(rid)
    return ids


def _cleanup_days(w: _Walk) -> float | None:
    for _, _, props in w.of_type("AWS::Scheduler::Schedule"):
        text = str(props.get("Target", {}).get("Input", ""))
        m = re.search(r"\bmedia\W+remove\W+--days\W+(\d+)", text)  # an argv list or a `sh -c` line
        if m:
            return float(m.group(1))
    return None


def _buckets(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    p = w.prices
    u = w.usage
    media = _media_bucket_ids(w)
    for _, rid, props in found:
        if _expiry_days(props, DUMP_PREFIX) is not None:
            _backup_bucket(w, rid, props)
            continue
        if rid not in media:
            w.assume(f"S3 bucket {rid} holds only deploy artifacts (templates, a few MB): under $0.01/month.")
            continue
        days = _cleanup_days(w)
        if days is None:
            days = 7.0
            w.assume("No media cleanup schedule found: remote media assumed kept 7 days.")
        cached = u.media_inflow_gb_day * days
        current = w.media_gb if w.media_gb is not None else u.media_local_gb + cached
        w.add(f"S3 media storage (assumed {current:g} GB)", current, "GB-month", p.s3_standard_gb_month)
        if w.media_gb is None:
            w.assume(
                f"Media: {u.media_local_gb:g} GB of local uploads and assets plus {u.media_inflow_gb_day:g} GB/day of "
                f"remote media kept {days:g} days by the cleanup task = {current:g} GB (set --media-gb to change)."
            )
        else:
            w.assume(f"Media: {current:g} GB stored in S3 (--media-gb).")
        versioning = props.get("VersioningConfiguration", {}).get("Status") == "Enabled"
        keep = 0.0
        for rule in props.get("LifecycleConfiguration", {}).get("Rules", []):
            keep = max(keep, float(rule.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays", 0)))
        if versioning:
            old = u.media_inflow_gb_day * keep if keep else u.media_inflow_gb_day * 365
            w.add(f"S3 noncurrent media versions (assumed {old:g} GB)", old, "GB-month", p.s3_standard_gb_month)
            w.assume(
                f"Versioning keeps every cleaned-up media object {keep:g} more days as a noncurrent version: "
                f"{u.media_inflow_gb_day:g} GB/day x {keep:g} days = {old:g} GB billed on top."
            )
        w.add(
            f"S3 PUT requests (assumed {u.s3_puts_month:,.0f})",
            u.s3_puts_month / 1000,
            "1,000 requests",
            p.s3_put_per_1000,
        )
        w.add(
            f"S3 GET requests (assumed {u.s3_gets_month:,.0f})",
            u.s3_gets_month / 1000,
            "1,000 requests",
            p.s3_get_per_1000,
        )


# A pg_dump -Fc is the table data without indexes, zlib-compressed: about a quarter of the database's size on
# disk (bench/backup.py: 134 MB from 0.52 GB); pgBackRest's lz4-compressed full backup keeps the indexes:
# about half [ASSUME].
DUMP_RATIO = 0.25
PGBACKREST_FULL_RATIO = 0.5


def _expiry_days(props: dict[str, Any], prefix: str) -> float | None:
    for rule in props.get("LifecycleConfiguration", {}).get("Rules", []):
        if rule.get("Prefix") == prefix and rule.get("ExpirationInDays"):
            return float(rule["ExpirationInDays"])
    return None


def _backup_bucket(w: _Walk, rid: str, props: dict[str, Any]) -> None:
    """The backup bucket: nightly dumps kept their lifecycle's days (and the noncurrent days after they
    expire), and with the Postgres task pgBackRest's full backups plus the WAL between them."""
    p, u = w.prices, w.usage
    keep = (_expiry_days(props, DUMP_PREFIX) or 35) + max(
        (
            float(r.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays", 0))
            for r in props.get("LifecycleConfiguration", {}).get("Rules", [])
        ),
        default=0.0,
    )
    dumps = keep * u.db_data_gb * DUMP_RATIO
    w.add(f"S3 backup storage: dumps (assumed {dumps:.1f} GB)", dumps, "GB-month", p.s3_standard_gb_month)
    text = f"Backups: a nightly dump of {DUMP_RATIO:.0%} of the {u.db_data_gb:g} GB database, kept {keep:g} days"
    if w.config.deployment.database == "task":
        from mastofargate.stack.pgbackrest import RETENTION_FULL

        wal = u.postgres_efs_write_gb / 2 * 14 / 30 * PGBACKREST_FULL_RATIO  # two weeks of the WAL half of writes
        gb = RETENTION_FULL * u.db_data_gb * PGBACKREST_FULL_RATIO + wal
        w.add(f"S3 backup storage: pgBackRest (assumed {gb:.1f} GB)", gb, "GB-month", p.s3_standard_gb_month)
        text += (
            f"; pgBackRest keeps {RETENTION_FULL} weekly full backups ({PGBACKREST_FULL_RATIO:.0%} of the database, "
            "lz4) and the WAL since the older one (half of the EFS writes, compressed alike)"
        )
    w.assume(text + "; requests are a few thousand a month (cents).")


def _distributions(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    p = w.prices
    gb = w.usage.cloudfront_gb_month
    requests = w.usage.cloudfront_requests_month
    for _, rid, _ in found:
        w.add(f"CloudFront {rid} (assumed {gb:g} GB/month out)", gb, "GB", p.cloudfront_gb, free_tier="cloudfront_out")
        w.add(
            f"CloudFront {rid} HTTPS requests (assumed {requests:,.0f}/month)",
            requests / 10_000,
            "10,000 requests",
            p.cloudfront_https_per_10k,
            free_tier="cloudfront_requests",
        )
    w.assume(
        f"CloudFront serves ~{gb:g} GB/month (field notes: ~25 GB for a personal server) in ~{requests:,.0f} "
        f"requests (~{gb * 1e6 / max(requests, 1):,.0f} KB each: avatars, previews, thumbnails and assets), all "
        "priced at North America/Europe rates."
    )


def _images_kept(policy: Any) -> int:
    """How many images an ECR lifecycle policy keeps (its imageCountMoreThan rule); 30 without one."""
    try:
        rules = json.loads(policy)["rules"] if isinstance(policy, str) else []
    except (ValueError, KeyError, TypeError):
        rules = []
    counts = [
        int(r["selection"]["countNumber"])
        for r in rules
        if r.get("selection", {}).get("countType") == "imageCountMoreThan"
    ]
    return min(counts) if counts else 30


def _repositories(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    total = 0.0
    parts = []
    for _, rid, props in found:
        name = str(props.get("RepositoryName", rid)).rsplit("/", 1)[-1]
        first, per_release = IMAGE_GB.get(name, DEFAULT_IMAGE_GB)
        kept = _images_kept(props.get("LifecyclePolicy", {}).get("LifecyclePolicyText"))
        gb = first + per_release * (kept - 1)
        total += gb
        parts.append(f"{name}: {kept} images kept, {first:g} GB + {per_release:g} GB per release")
    w.add(f"ECR image storage (assumed {total:.2f} GB)", total, "GB-month", w.prices.ecr_gb_month)
    w.assume("ECR: " + "; ".join(parts) + " (layers shared between releases); same-region pulls are free.")


# ---------------------------------------------------------------------------------------- everything else


def _kms_keys(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    p = w.prices
    w.add("KMS customer-managed keys", len(found), "key-month", p.kms_key_month)
    req = w.usage.kms_requests_month
    w.add(
        f"KMS requests (assumed {req:,.0f}/month)",
        req / 10_000,
        "10,000 requests",
        p.kms_requests_per_10k,
        free_tier="kms_requests",
    )
    if any(props.get("EnableKeyRotation") for _, _, props in found):
        w.assume("Key rotation: each of a key's first two yearly rotations adds $1/month (so $2, then $3 from year 3).")


def _log_groups(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    p = w.prices
    gb = w.usage.logs_gb_month
    days = max((w.number(s, props.get("RetentionInDays")) or 3653 for s, _, props in found), default=30)
    stored = gb / DAYS_PER_MONTH * days * LOG_COMPRESSION
    w.add(
        f"CloudWatch Logs ingestion (assumed {gb:g} GB/month, {len(found)} groups)",
        gb,
        "GB",
        p.logs_ingest_gb,
        free_tier="logs_ingest",
    )
    w.add(
        f"CloudWatch Logs storage ({days:g}-day retention)",
        stored,
        "GB-month",
        p.logs_storage_gb_month,
        free_tier="logs_storage",
    )
    w.assume(
        f"Logs: ~{gb:g} GB/month ingested across services and jobs ({w.config.deployment.profile} profile), kept "
        f"{days:g} days, stored compressed ~{1 / LOG_COMPRESSION:.0f}:1."
    )


def _alarms(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    from mastofargate.stack import queue_metrics

    p = w.prices
    fast = sum(1 for s, _, props in found if (w.number(s, props.get("Period")) or 300) < 60)
    if len(found) - fast:
        w.add("CloudWatch alarms", len(found) - fast, "alarm-month", p.alarm_month, free_tier="cloudwatch_alarms")
    if fast:
        w.add("CloudWatch high-resolution alarms", fast, "alarm-month", p.alarm_high_resolution_month)
    from mastofargate.stack import backups

    if any(props.get("Namespace") == backups.METRIC_NAMESPACE for _, _, props in found):
        names = {
            *backups.METRICS,
            *(a.get("MetricName") for _, _, a in found if a.get("Namespace") == backups.METRIC_NAMESPACE),
        }
        w.add(
            f"CloudWatch custom metrics (backups, {len(names)})",
            len(names),
            "metric-month",
            p.custom_metric_month,
            free_tier="cloudwatch_metrics",
        )
    if any(props.get("Namespace") == queue_metrics.NAMESPACE for _, _, props in found):
        w.add(
            "CloudWatch custom metrics (Sidekiq backlog, EMF)",
            len(queue_metrics.METRICS),
            "metric-month",
            p.custom_metric_month,
            free_tier="cloudwatch_metrics",
        )
        w.assume("The Sidekiq backlog metrics come from log lines (embedded metric format): a few KB of logs a day.")


# CloudWatch's always-free dashboards hold up to 50 metrics each [PAGE: CloudWatch pricing, free tier].
FREE_DASHBOARD_METRICS = 50


def dashboard_metrics(body: Any) -> int:
    """How many metrics a dashboard's widgets graph (its DashboardBody, plain or inside Fn::Sub)."""
    if isinstance(body, dict) and "Fn::Sub" in body:
        sub = body["Fn::Sub"]
        body = sub[0] if isinstance(sub, list) else sub
    try:
        widgets = json.loads(body).get("widgets", []) if isinstance(body, str) else []
    except ValueError:
        return 0
    return sum(len(wd.get("properties", {}).get("metrics", [])) for wd in widgets if isinstance(wd, dict))


def _dashboards(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    for _, rid, props in found:
        metrics = dashboard_metrics(props.get("DashboardBody"))
        small = metrics <= FREE_DASHBOARD_METRICS
        w.add(
            f"CloudWatch dashboard {props.get('DashboardName', rid)} ({metrics} metrics)",
            1,
            "dashboard-month",
            w.prices.dashboard_month,
            free_tier="cloudwatch_dashboards" if small else "",
        )
        if not small:
            w.assume(
                f"Dashboard {rid} graphs {metrics} metrics: more than the {FREE_DASHBOARD_METRICS} a free dashboard "
                "may hold, so it is never free."
            )


# [ASSUME] Mail Mastodon sends per month: sign-ups, password resets, moderation notices and the notification
# mails users leave on (mentions, follows); a personal server sends almost none (field notes).
EMAILS_MONTH = {"personal": 300, "community": 10_000, "large": 100_000}


def _mail_identities(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    emails = EMAILS_MONTH.get(w.config.deployment.profile, EMAILS_MONTH["community"])
    w.add("SES outbound mail", emails / 1000, "1,000 emails", w.prices.ses_per_1000)
    w.assume(
        f"Mail: ~{emails:,} emails/month through SES ({w.config.deployment.profile} profile: sign-ups, password "
        "resets, moderation and notification mails); an identity costs nothing by itself."
    )


def _record_sets(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    zones = {str(props.get("HostedZoneId") or props.get("HostedZoneName")) for _, _, props in found}
    zones.discard("None")
    zones |= _followed_zones(w)
    if not zones:
        return
    p = w.prices
    w.add("Route 53 hosted zone (created outside the templates)", len(zones), "zone-month", p.hosted_zone_month)
    domain = w.config.server.domain.rstrip(".") + "."
    alias = any(
        str(props.get("Name", "")).rstrip(".") + "." == domain and "AliasTarget" in props for _, _, props in found
    )
    queries = w.usage.dns_queries_month
    if alias:
        w.assume(
            "The Route 53 zone (aws.hosted_zone_id) lives outside the templates but is billed for this server; "
            f"queries for {domain} go to an alias record of the load balancer, which Route 53 answers for free. "
            "The mail records (DKIM, SPF) see a few thousand queries a month: under $0.01."
        )
        return
    w.add(
        f"Route 53 queries for {domain} (assumed {queries:,.0f}/month)",
        queries / 1e6,
        "million queries",
        p.route53_queries_per_million,
    )
    w.assume(
        f"The Route 53 zone (aws.hosted_zone_id) lives outside the templates but is billed for this server. "
        f"{domain} is a plain A/AAAA record (no load balancer to alias), so its queries are billed: "
        f"~{queries:,.0f} a month ({w.config.deployment.profile} profile: resolvers of the servers you federate "
        "with re-ask at most once per TTL)."
    )


def _followed_zones(w: _Walk) -> set[str]:
    """Zones in which a Lambda keeps the site's record (the direct edge's DNS follower)."""
    return {
        str(variables["HOSTED_ZONE_ID"])
        for _, _, props in w.of_type("AWS::Lambda::Function")
        if "HOSTED_ZONE_ID" in (variables := (props.get("Environment") or {}).get("Variables") or {})
    }


def _lambdas(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    p = w.prices
    if _followed_zones(w) and not any(True for _ in w.of_type("AWS::Route53::RecordSet")):
        _record_sets(w, [])  # the zone and the billed queries of the record the follower keeps
    for stack, rid, props in found:
        runs = float(LAMBDA_EVENTS_MONTH)
        for _, _, rule in w.of_type("AWS::Events::Rule"):
            targets = json.dumps(rule.get("Targets", []))
            if f'"{rid}"' in targets and rule.get("ScheduleExpression"):
                runs += runs_per_month(str(rule["ScheduleExpression"]))
        gb = (w.number(stack, props.get("MemorySize")) or 128) / 1024
        name = str(props.get("FunctionName", rid))
        w.add(
            f"Lambda {name} requests (~{runs:,.0f}/month)",
            runs / 1e6,
            "million requests",
            p.lambda_requests_per_million,
            free_tier="lambda_requests",
        )
        w.add(
            f"Lambda {name} duration (~{LAMBDA_SECONDS:g} s x {gb * 1024:g} MB each)",
            runs * LAMBDA_SECONDS * gb,
            "GB-second",
            p.lambda_gb_second,
            free_tier="lambda_gb_seconds",
        )
    w.assume(
        f"Lambda functions run ~{LAMBDA_SECONDS:g} s per invocation (a few AWS API calls), on their schedules plus "
        f"~{LAMBDA_EVENTS_MONTH} events a month."
    )


# [ASSUME] Lambda invocations by events (task state changes, placement failures) per month, and run time each.
LAMBDA_EVENTS_MONTH = 100
LAMBDA_SECONDS = 1.0


def _namespaces(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    w.add(
        "Cloud Map private DNS namespace (a Route 53 private zone)",
        len(found),
        "zone-month",
        w.prices.hosted_zone_month,
    )


def _discovery_services(w: _Walk, found: list[tuple[str, str, dict[str, Any]]]) -> None:
    instances = 0.0
    for _, rid, _ in found:
        for stack, _, svc in w.of_type("AWS::ECS::Service"):
            if any(_ref(r.get("RegistryArn")) == rid for r in svc.get("ServiceRegistries", [])):
                instances += w.number(stack, svc.get("DesiredCount", 1)) or 1
    w.add("Cloud Map registered task instances", instances, "instance-month", w.prices.cloud_map_instance_month)
    w.assume(
        "Cloud Map: the Postgres/Redis tasks' names are registered instances ($0.10/month each, priced "
        "conservatively for ECS-registered tasks); DNS lookups from inside the VPC cost nothing."
    )


def _secrets(w: _Walk) -> None:
    p = w.prices
    names = sorted(  # a set: the data stack names the database secret too (its setup task reads it)
        {name for tpl in w.templates.values() for name in tpl.get("Parameters", {}) if name.endswith("SecretArn")}
    )
    if not names:
        return
    w.add(f"Secrets Manager secrets ({', '.join(names)})", len(names), "secret-month", p.secret_month)
    calls = w.usage.secret_calls_month
    w.add(
        f"Secrets Manager API calls (assumed {calls:,.0f}/month)", calls / 10_000, "10,000 calls", p.secret_api_per_10k
    )
    w.assume(
        f"Secrets: the deploy's bootstrap creates them outside CloudFormation; counted from the app template's "
        f"{len(names)} *SecretArn parameters. Tasks read them at start (~{calls:,.0f} calls a month)."
    )


PRICED: dict[str, Any] = {
    "AWS::ECS::Service": _services,
    "AWS::Scheduler::Schedule": _schedules,
    "AWS::ECS::Cluster": _cluster,
    "AWS::ElasticLoadBalancingV2::LoadBalancer": _load_balancers,
    "AWS::EC2::NatGateway": _nat_gateways,
    "AWS::EC2::InternetGateway": _internet_gateways,
    "AWS::RDS::DBInstance": _rds,
    "AWS::ElastiCache::ReplicationGroup": _caches,
    "AWS::EFS::FileSystem": _file_systems,
    "AWS::Backup::BackupPlan": _backup_plans,
    "AWS::S3::Bucket": _buckets,
    "AWS::CloudFront::Distribution": _distributions,
    "AWS::ECR::Repository": _repositories,
    "AWS::KMS::Key": _kms_keys,
    "AWS::Logs::LogGroup": _log_groups,
    "AWS::CloudWatch::Alarm": _alarms,
    "AWS::CloudWatch::Dashboard": _dashboards,
    "AWS::Route53::RecordSet": _record_sets,
    "AWS::Lambda::Function": _lambdas,
    "AWS::SES::EmailIdentity": _mail_identities,
    "AWS::ServiceDiscovery::PrivateDnsNamespace": _namespaces,
    "AWS::ServiceDiscovery::Service": _discovery_services,
}


# ---------------------------------------------------------------------------------------- always-free tiers


class FreeTierError(MastofargateError):
    """A credit line would not offset what it claims to (a bug in the estimate, never in the user's input)."""


def _apply_free_tier(w: _Walk) -> None:
    """One credit line per always-free allowance some charge line draws on: the allowance, up to what the
    lines use, at their own unit prices (the first lines first), so a credit never exceeds the gross lines it
    offsets and never makes a total negative."""
    applied = []
    for allowance in ALWAYS_FREE:
        lines = [i for i in w.items if i.kind == CHARGE and i.free_tier == allowance.key]
        for i in lines:
            # A credit is priced once, at the line's own price: a line whose price changes under a commitment
            # or on the Spot fallback would leave the committed or on-demand total wrong.
            if i.unit != allowance.unit or i.commit_class or i.on_demand_usd_month is not None:
                raise FreeTierError(
                    f"cannot take the always-free {allowance.label} off line {i.name!r}",
                    why=f"an allowance counts {allowance.unit} of lines priced one way (no commitment, no Spot); "
                    f"this line is in {i.unit}"
                    + (f", under a {i.commit_class} commitment" if i.commit_class else "")
                    + (", on Spot" if i.on_demand_usd_month is not None else ""),
                    fix="tag only lines of the allowance's unit, priced one way, in mastofargate/cost.py",
                )
        used = sum(i.quantity for i in lines)
        left = allowance.quantity
        usd = 0.0
        for i in lines:
            take = min(left, i.quantity)
            usd += take * i.unit_price
            left -= take
        free = allowance.quantity - left
        if free <= 0:
            continue
        n, unit = allowance.per_unit, allowance.count_unit or allowance.unit
        everything = math.isclose(free, used, rel_tol=1e-9)
        used_unit = (
            unit.removesuffix("s")
            if _count(used * n) == "1" and unit.endswith(("metrics", "alarms", "boards"))
            else unit
        )
        share = f"all {_count(used * n)}" if everything else f"{_count(free * n)} of {_count(used * n)}"
        w.items.append(
            LineItem(
                f"Always-free tier: {allowance.label} ({share} {used_unit}; {_count(allowance.quantity * n)} {unit} "
                "free a month)",
                -free,
                allowance.unit,
                usd / free,
                -usd,
                free_tier=allowance.key,
                kind=FREE_TIER_CREDIT,
                offsets=tuple(i.name for i in lines),
            )
        )
        applied.append(allowance.label)
    if applied:
        w.assume(
            f"Always-free tiers taken off as credit lines ({', '.join(applied)}): AWS grants each once per account, "
            "or once per organization with consolidated billing, summed over all regions. The estimate assumes "
            "nothing else billed to this account uses them; if other workloads (or a second server) share it, run "
            "'mastofargate cost --no-free-tier' for the gross bill. S3's, ECR's, EFS's and SES's free tiers are "
            "not always free (12 months, or credits for accounts opened from 2025-07-15) and are not subtracted."
        )


def _count(x: float) -> str:
    """A count for a line's name: 20, 0.07671, 1,239, 400,000."""
    return f"{x:,.0f}" if x >= 1000 else f"{x:,.4g}"


def _no_free_tier(w: _Walk) -> None:
    w.assume(
        "Without the always-free tiers (--no-free-tier or [cost] free_tier = false): every line is gross, as on an "
        "account whose other workloads already use AWS's always-free "
        "allowances (100 GB out, CloudFront's 1 TB and 10 million requests, CloudWatch's 10 metrics, 10 alarms, 3 "
        "dashboards and 5 GB of logs, Lambda's 1 million requests, KMS's 20,000 requests). SNS, SQS and Scheduler "
        "usage stays unpriced: under a cent a month at list price."
    )


# ---------------------------------------------------------------------------------------- the API


def _as_dicts(templates: Mapping[str, Template | dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: t if isinstance(t, dict) else t.to_dict() for k, t in templates.items()}


def unpriced_types(templates: Mapping[str, Template | dict[str, Any]]) -> list[str]:
    """Resource types in the templates that are neither priced nor listed as free."""
    seen = {r.get("Type", "") for t in _as_dicts(templates).values() for r in t.get("Resources", {}).values()}
    return sorted(seen - set(PRICED) - set(FREE))


def estimate(
    config: Config,
    templates: Mapping[str, Template | dict[str, Any]] | None = None,
    *,
    media_gb: float | None = None,
    prices: Prices | None = None,
    commit: str | None = None,
    free_tier: bool | None = None,
) -> Estimate:
    """The monthly bill of `templates` (default: what `synth` generates for `config`), line by line; with
    `commit` ("1y" | "3y") each line a Savings Plan or reservation covers carries its committed price too.

    Every charge line is gross; with `free_tier` (the default) AWS's always-free allowances follow as credit
    lines (negative), one per allowance, so the total is what a dedicated account pays and the reader sees
    what was taken off. `free_tier=False` (`--no-free-tier`): no credit line, the gross bill of a shared
    account. None: the config's `[cost] free_tier` (true unless set)."""
    if templates is None:
        from mastofargate.stack import build

        templates = build(config)
    dicts = _as_dicts(templates)
    unknown = unpriced_types(dicts)
    if unknown:
        raise UnpricedResourceError(
            f"the templates hold resource types the cost estimate does not know: {', '.join(unknown)}",
            why="every resource type must be priced or listed as free, so no billable resource goes unpriced",
            fix="add a pricing function to PRICED in mastofargate/cost.py, or the type and the reason it is free "
            "to FREE",
        )
    p = prices or for_region(config.aws.region)
    free_tier = config.cost.free_tier if free_tier is None else free_tier
    w = _Walk(dicts, config, p, USAGE[config.deployment.profile], media_gb)
    grouped: dict[str, list[tuple[str, str, dict[str, Any]]]] = defaultdict(list)
    for stack, tpl in dicts.items():
        for rid, res in tpl.get("Resources", {}).items():
            grouped[res["Type"]].append((stack, rid, res.get("Properties", {})))
    for rtype, handler in PRICED.items():
        if grouped.get(rtype):
            handler(w, grouped[rtype])
        if rtype == "AWS::KMS::Key":
            _secrets(w)  # not a template resource: the bootstrap creates the secrets
    _apply_free_tier(w) if free_tier else _no_free_tier(w)
    w.assumptions.extend(p.notes)
    w.assume(f"Prices: {p.source}, {p.region}; a month is {HOURS_PER_MONTH} hours.")
    total = sum(i.usd_month for i in w.items)
    if commit is None:
        return Estimate(total, w.items, w.assumptions, p.as_of, p.region, free_tier=free_tier)
    if commit not in COMMITMENTS:
        raise MastofargateError(
            f"commitment term {commit!r} is not priced",
            why="the price table holds Savings Plan and reservation discounts for these terms only",
            fix=f"use one of: {', '.join(COMMITMENTS)}",
        )
    c = COMMITMENTS[commit]
    off = {"fargate": c.fargate_savings_plan, "rds": c.rds_reserved}
    items = [
        replace(i, committed_usd_month=i.usd_month * (1 - off[i.commit_class])) if i.commit_class in off else i
        for i in w.items
    ]
    w.assume(
        f"--commit {commit}: {c.note}. Savings Plans never apply to Spot; the commitment is billed every hour "
        "for the whole term, used or not. Approximate discounts: check the Savings Plans and RDS pricing pages."
    )
    return Estimate(total, items, w.assumptions, p.as_of, p.region, commitment=c, free_tier=free_tier)


def summary_line(est: Estimate, config: Config) -> str:
    d = config.deployment
    basis = "after AWS's always-free tiers" if est.free_tier else "gross, no free tier"
    return (
        f"Estimated cost: {_money(est.total_usd_month)}/month ({d.profile}, {d.arch}, "
        f"{'Spot' if d.spot else 'on-demand'}, {basis}; run 'mastofargate cost' for the breakdown)"
    )


def synth_summary(config: Config, templates: Mapping[str, Template]) -> str:
    """The one line `synth` prints; never fails synth (an unpriced type is reported, not raised)."""
    try:
        return summary_line(estimate(config, templates), config)
    except MastofargateError as e:
        return f"Estimated cost: unavailable ({e.what})"


# ---------------------------------------------------------------------------------------- --compare


@dataclass(frozen=True)
class Combination:
    profile: str
    database: str
    cache: str
    spot: bool
    estimate: Estimate | None
    error: str = ""

    def categories(self) -> dict[str, float]:
        """The bill in a few columns: what each part costs (a free-tier credit in the column of the lines it
        offsets, so the columns add up to the total)."""
        out = {"fargate": 0.0, "ipv4": 0.0, "alb": 0.0, "data": 0.0, "other": 0.0}
        for i in self.estimate.items if self.estimate else []:
            out[_category(i.offsets[0] if i.offsets else i.name)] += i.usd_month
        return out


def _category(name: str) -> str:
    if name.startswith("Public IPv4"):
        return "ipv4"
    if name.startswith(("Fargate", "Scheduled task")):
        return "fargate"
    if name.startswith(("Application Load Balancer", "ALB ")):
        return "alb"
    if name.startswith(("RDS", "ElastiCache", "EFS")):
        return "data"
    return "other"


@dataclass(frozen=True)
class Reference:
    name: str
    usd_month: float
    note: str


# Sizing overrides that belong to one profile: --compare shows every profile's documented defaults.
_PROFILE_SPECIFIC = {"services": None, "sidekiq": None}
_PROFILE_SPECIFIC_RDS = ("instance_class", "storage_gb", "max_storage_gb")


def combination_configs(config: Config) -> Iterator[tuple[tuple[str, str, str, bool], Config | str]]:
    """A config per profile x database x cache x spot for the same server (or why it is invalid)."""
    from mastofargate.config import parse_config
    from mastofargate.errors import UsageError

    base = config.model_dump(mode="json", exclude_none=True)
    for key in _PROFILE_SPECIFIC:
        base.pop(key, None)
    for key in _PROFILE_SPECIFIC_RDS:
        base.get("rds", {}).pop(key, None)
    base.get("elasticache", {}).pop("node_type", None)
    for profile in ("personal", "community", "large"):
        for database in ("rds", "task"):
            for cache in ("elasticache", "task"):
                for spot in (True, False):
                    data = json.loads(json.dumps(base))
                    data["deployment"] = {
                        **data.get("deployment", {}),
                        "profile": profile,
                        "database": database,
                        "cache": cache,
                        "spot": spot,
                    }
                    if profile != config.deployment.profile:
                        # the layout is the profile's own (the one task is sized for a personal server only)
                        data["deployment"].pop("layout", None)
                    try:
                        yield (profile, database, cache, spot), parse_config(data, source="--compare")
                    except UsageError as e:
                        yield (profile, database, cache, spot), e.what


def compare(
    config: Config, *, media_gb: float | None = None, prices: Prices | None = None, free_tier: bool | None = None
) -> list[Combination]:
    """Every combination priced on the same basis: net of the always-free tiers, or gross (`free_tier=False`);
    None: the config's `[cost] free_tier`."""
    free_tier = config.cost.free_tier if free_tier is None else free_tier
    out = []
    for (profile, database, cache, spot), cfg in combination_configs(config):
        if isinstance(cfg, str):
            out.append(Combination(profile, database, cache, spot, None, cfg))
            continue
        try:
            est = estimate(cfg, media_gb=media_gb, prices=prices, free_tier=free_tier)
        except MastofargateError as e:
            out.append(Combination(profile, database, cache, spot, None, e.what))
            continue
        out.append(Combination(profile, database, cache, spot, est))
    return out


def references(prices: Prices | None = None) -> list[Reference]:
    """The public reference points, with the Fargate template's missing IPv4 charge added back."""
    p = prices or for_region("us-east-1")
    ipv4 = FARGATE_TEMPLATE_IPV4 * p.monthly(p.public_ipv4_hour)
    ec2_ipv4 = EC2_REFERENCE_IPV4 * p.monthly(p.public_ipv4_hour)
    return [
        Reference(
            "EC2 setup (blog), as counted",
            EC2_REFERENCE_USD,
            "t4g.small + t4g.micro + 25 GB gp3 each: $18 compute + $4 EBS; no public IPv4 counted",
        ),
        Reference(
            "EC2 setup (blog) + public IPv4",
            EC2_REFERENCE_USD + ec2_ipv4,
            f"the same plus the Mastodon box's public IPv4 ({_money(ec2_ipv4)}, billed since 2024-02); a public "
            "address on the Postgres box too would add as much again",
        ),
        Reference(
            "Fargate template (widdix), as claimed",
            FARGATE_TEMPLATE_USD,
            "1-50 users: 3 Spot tasks, RDS t4g.micro, ElastiCache t4g.micro, ALB; no public IPv4",
        ),
        Reference(
            "Fargate template (widdix) + public IPv4",
            FARGATE_TEMPLATE_USD + ipv4,
            f"the same plus {FARGATE_TEMPLATE_IPV4} public IPv4 addresses (3 tasks + 2 ALB) x "
            f"{_money(p.monthly(p.public_ipv4_hour))}",
        ),
    ]


def cheapest(rows: list[Combination]) -> dict[str, Combination]:
    """The cheapest valid combination of each profile."""
    best: dict[str, Combination] = {}
    for row in rows:
        if row.estimate is None:
            continue
        cur = best.get(row.profile)
        if cur is None or (cur.estimate and row.estimate.total_usd_month < cur.estimate.total_usd_month):
            best[row.profile] = row
    return best


def instance_types(templates: Mapping[str, Template | dict[str, Any]]) -> tuple[set[str], set[tuple[str, str]]]:
    """RDS classes and (ElastiCache node type, engine) pairs in the templates: what --live asks prices for."""
    rds: set[str] = set()
    cache: set[tuple[str, str]] = set()
    for tpl in _as_dicts(templates).values():
        for res in tpl.get("Resources", {}).values():
            props = res.get("Properties", {})
            if res.get("Type") == "AWS::RDS::DBInstance":
                rds.add(str(props.get("DBInstanceClass")))
            elif res.get("Type") == "AWS::ElastiCache::ReplicationGroup":
                cache.add((str(props.get("CacheNodeType")), str(props.get("Engine", "redis")).lower()))
    return rds, cache
