"""The bundled, dated price table `mastofargate cost` multiplies the generated resources by.

Prices change and differ by region, so every number carries its source (or says it is an assumption),
the table carries its date, and `--live` can replace the main ones with the AWS Price List API's current
figures. Sources:
  [AWS.md]  ../shared/reference/aws.md price table (us-east-1, 2026 list prices).
  [PAGE]    the service's public AWS pricing page, us-east-1, on-demand, as read for this table (2026-11);
            approximate to the cent: `--live` fetches the exact figure where the Price List API has it.
  [ASSUME]  an assumption, not a list price; printed with every estimate that uses it.
  [FN]      ../shared/reference/field-notes.md (operator field notes).

Regions other than us-east-1 use us-east-1's prices times a per-category multiplier (below); a region
not in that table falls back to us-east-1's prices, and the estimate says so. AWS's always-free allowances
(ALWAYS_FREE) are not regional: one allowance per payer, summed over every region.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

PRICES_AS_OF = "2026-11-21"
HOURS_PER_MONTH = 730  # AWS's own convention for monthly figures (8,760 h / 12) [PAGE]
BASE_REGION = "us-east-1"


@dataclass(frozen=True)
class FreeAllowance:
    """One of AWS's always-free monthly allowances, in the unit of the estimate lines it offsets.

    Only offers AWS marks *Always Free* are listed: they are part of every account on any plan (legacy,
    and the Free and Paid plans of accounts opened from 2025-07-15, whose 12-month offers became credits),
    and never expire. Each is one allowance per payer, not per server: usage is summed over all regions
    (the Free Tier API names them "Global-..."), and AWS Organizations' consolidated billing treats all
    accounts of an organization as one account for billing [PAGE: AWS Billing, "Effective billing date,
    account activity, and volume discounts"; AWS Billing Conductor, "Billing groups": each consolidated
    billing family has one Always Free Tier offering]. So the estimate subtracts them only for an account
    (or organization) that runs nothing else using them; `cost --no-free-tier` prices everything gross.
    """

    key: str  # the lines a gross line offers to this allowance carry this key (LineItem.free_tier)
    label: str  # what the credit line calls it
    quantity: float  # free per month, in `unit`
    unit: str  # the unit of the lines it offsets
    source: str
    count_unit: str = ""  # how the credit line counts it for a reader ("GB", "requests", "GB-s"; "" = unit)
    per_unit: float = 1.0  # count_units per `unit` (10,000 requests per "10,000 requests")


@dataclass(frozen=True)
class Prices:
    """Unit prices for one region, in USD. Hourly prices are per hour; monthly ones per 730-hour month."""

    region: str
    as_of: str
    source: str
    fargate_vcpu_hour: Mapping[str, float]  # by CpuArchitecture: X86_64 | ARM64
    fargate_gb_hour: Mapping[str, float]
    fargate_spot_discount: float  # the region's Spot discount (SPOT_DISCOUNTS below)
    fargate_ephemeral_gb_hour: float  # storage above the 20 GiB every task gets free
    public_ipv4_hour: float
    alb_hour: float
    alb_lcu_hour: float
    nat_hour: float
    nat_gb: float
    rds_instance_hour: Mapping[str, float]  # PostgreSQL, Single-AZ (Multi-AZ = 2x)
    rds_gp3_gb_month: float  # Single-AZ (Multi-AZ = 2x)
    rds_snapshot_gb_month: float  # AWS Backup snapshot storage of an RDS database
    cache_node_hour: Mapping[str, float]  # ElastiCache Redis OSS node-based
    valkey_discount: float  # Valkey nodes cost this fraction less than Redis OSS nodes
    efs_standard_gb_month: float
    efs_elastic_read_gb: float
    efs_elastic_write_gb: float
    efs_provisioned_mibps_month: float
    efs_backup_gb_month: float
    s3_standard_gb_month: float
    s3_put_per_1000: float
    s3_get_per_1000: float
    cloudfront_gb: float  # North America/Europe edge (its always-free 1 TB is a credit line: ALWAYS_FREE)
    data_transfer_out_gb: float  # the first 10 TB tier (the always-free 100 GB is a credit line: ALWAYS_FREE)
    secret_month: float
    secret_api_per_10k: float
    kms_key_month: float
    kms_requests_per_10k: float
    logs_ingest_gb: float
    logs_storage_gb_month: float
    alarm_month: float
    alarm_high_resolution_month: float
    custom_metric_month: float
    ecr_gb_month: float
    hosted_zone_month: float
    cloud_map_instance_month: float
    notes: tuple[str, ...] = field(default=())  # how this table was derived (region fallback, live fetch)
    ses_per_1000: float = 0.10  # [PAGE] Amazon SES outbound email, per 1,000 messages (SMTP or API)
    route53_queries_per_million: float = 0.40  # [AWS.md] Route 53 standard queries, first billion a month
    lambda_requests_per_million: float = 0.20  # [PAGE] AWS Lambda requests, per million
    lambda_gb_second: float = 0.0000133334  # [PAGE] AWS Lambda duration, Arm, per GB-second (first 6 billion)
    cloudfront_https_per_10k: float = 0.01  # [PAGE] CloudFront HTTPS requests, United States/Europe, per 10,000
    dashboard_month: float = 3.00  # [PAGE] CloudWatch dashboard per month

    def monthly(self, hourly: float) -> float:
        return hourly * HOURS_PER_MONTH


# ------------------------------------------------------------------------------------------- us-east-1

US_EAST_1 = Prices(
    region=BASE_REGION,
    as_of=PRICES_AS_OF,
    source=f"bundled price table of {PRICES_AS_OF}",
    fargate_vcpu_hour={
        "X86_64": 0.04048,  # [AWS.md] Fargate Linux/x86 per vCPU-hour
        "ARM64": 0.03238,  # [AWS.md] Fargate Linux/ARM (Graviton) per vCPU-hour
    },
    fargate_gb_hour={
        "X86_64": 0.004445,  # [AWS.md] Fargate Linux/x86 per GB-hour
        "ARM64": 0.00356,  # [AWS.md] Fargate Linux/ARM per GB-hour
    },
    fargate_spot_discount=0.682,  # [AWS.md] Fargate Spot 68.2 % below on-demand in us-east-1, ARM and x86 (2026-09)
    fargate_ephemeral_gb_hour=0.000111,  # [PAGE] Fargate ephemeral storage above 20 GiB, per GB-hour
    public_ipv4_hour=0.005,  # [AWS.md] every public IPv4 address, in use or idle, per hour
    alb_hour=0.0225,  # [AWS.md] Application Load Balancer per hour
    alb_lcu_hour=0.008,  # [AWS.md] per LCU-hour
    nat_hour=0.045,  # [AWS.md] NAT gateway per hour
    nat_gb=0.045,  # [AWS.md] NAT gateway per GB processed
    rds_instance_hour={
        # [PAGE] RDS for PostgreSQL, Single-AZ, on-demand; db.t4g.micro also [AWS.md].
        "db.t4g.micro": 0.016,
        "db.t4g.small": 0.032,
        "db.t4g.medium": 0.065,
        "db.t4g.large": 0.129,
        "db.t4g.xlarge": 0.258,
        "db.m7g.large": 0.176,
        "db.m7g.xlarge": 0.352,
        "db.r7g.large": 0.239,
        "db.t3.micro": 0.018,
        "db.t3.small": 0.036,
        "db.t3.medium": 0.072,
        "db.t3.large": 0.145,
        "db.m6i.large": 0.178,
        "db.m6g.large": 0.159,
    },
    rds_gp3_gb_month=0.115,  # [AWS.md] RDS gp3 storage, Single-AZ (3,000 IOPS / 125 MB/s included)
    rds_snapshot_gb_month=0.095,  # [PAGE] AWS Backup / RDS snapshot storage per GB-month
    cache_node_hour={
        # [PAGE] ElastiCache node-based, Redis OSS engine, on-demand; cache.t4g.micro also [AWS.md].
        "cache.t4g.micro": 0.016,
        "cache.t4g.small": 0.032,
        "cache.t4g.medium": 0.065,
        "cache.t3.micro": 0.017,
        "cache.t3.small": 0.034,
        "cache.t3.medium": 0.068,
        "cache.m7g.large": 0.158,
        "cache.r7g.large": 0.219,
    },
    valkey_discount=0.20,  # [PAGE] ElastiCache for Valkey node-based clusters are priced 20 % below Redis OSS
    efs_standard_gb_month=0.30,  # [AWS.md] EFS Standard storage
    efs_elastic_read_gb=0.03,  # [PAGE] EFS Elastic Throughput, per GB read
    efs_elastic_write_gb=0.06,  # [PAGE] EFS Elastic Throughput, per GB written
    efs_provisioned_mibps_month=6.00,  # [PAGE] EFS Provisioned Throughput, per MiB/s-month
    efs_backup_gb_month=0.05,  # [PAGE] AWS Backup, EFS warm backup storage per GB-month
    s3_standard_gb_month=0.023,  # [AWS.md] S3 Standard, first 50 TB
    s3_put_per_1000=0.005,  # [PAGE] S3 Standard PUT/COPY/POST/LIST per 1,000 requests
    s3_get_per_1000=0.0004,  # [PAGE] S3 Standard GET per 1,000 requests
    cloudfront_gb=0.085,  # [PAGE] CloudFront data out, first 10 TB, North America/Europe
    data_transfer_out_gb=0.09,  # [PAGE] EC2/Fargate data transfer out to the internet, next 10 TB
    secret_month=0.40,  # [AWS.md] Secrets Manager per secret-month
    secret_api_per_10k=0.05,  # [PAGE] Secrets Manager per 10,000 API calls
    kms_key_month=1.00,  # [PAGE] KMS customer-managed key per month (each of its first two rotations adds $1)
    kms_requests_per_10k=0.03,  # [PAGE] KMS symmetric requests per 10,000
    logs_ingest_gb=0.50,  # [AWS.md] CloudWatch Logs ingestion (standard class)
    logs_storage_gb_month=0.03,  # [PAGE] CloudWatch Logs archived storage, per GB (compressed)
    alarm_month=0.10,  # [PAGE] CloudWatch standard-resolution alarm per month
    alarm_high_resolution_month=0.30,  # [PAGE] high-resolution (period < 60 s) alarm per month
    custom_metric_month=0.30,  # [PAGE] CloudWatch custom metric (first 10,000), e.g. Container Insights
    ecr_gb_month=0.10,  # [PAGE] ECR storage per GB-month (same-region pulls are free)
    hosted_zone_month=0.50,  # [AWS.md] Route 53 hosted zone (public or private), first 25
    cloud_map_instance_month=0.10,  # [PAGE] AWS Cloud Map per registered instance-month
)

# ------------------------------------------------------------------------------------------- regions

# Approximate ratio of each region's on-demand list price to us-east-1's, by category. [PAGE] each
# service's pricing page with that region selected, rounded to 2 digits; an estimate, not a quote —
# `--live` replaces the main prices with exact ones. Categories not listed cost the same everywhere
# (public IPv4, Secrets Manager, KMS, Route 53, ECR, CloudWatch alarms, CloudFront).
REGION_MULTIPLIERS: dict[str, dict[str, float]] = {
    "us-east-1": {},
    "us-east-2": {},  # Ohio: same list prices as N. Virginia for these services
    "us-west-2": {},  # Oregon: likewise
    "eu-west-1": {"fargate": 1.00, "alb": 1.12, "rds": 1.12, "cache": 1.10, "efs": 1.10, "logs": 1.14, "nat": 1.07},
    "eu-central-1": {
        "fargate": 1.15,
        "alb": 1.20,
        "rds": 1.19,
        "cache": 1.19,
        "efs": 1.20,
        "s3": 1.07,
        "logs": 1.26,
        "nat": 1.16,
    },
    "eu-west-2": {
        "fargate": 1.15,
        "alb": 1.17,
        "rds": 1.16,
        "cache": 1.16,
        "efs": 1.10,
        "s3": 1.04,
        "logs": 1.16,
        "nat": 1.11,
    },
    "ap-northeast-1": {
        "fargate": 1.25,
        "alb": 1.08,
        "rds": 1.30,
        "cache": 1.30,
        "efs": 1.20,
        "s3": 1.09,
        "logs": 1.52,
        "nat": 1.38,
    },
    "ap-southeast-1": {
        "fargate": 1.25,
        "alb": 1.12,
        "rds": 1.40,
        "cache": 1.40,
        "efs": 1.20,
        "s3": 1.09,
        "logs": 1.40,
        "nat": 1.31,
    },
    "ap-southeast-2": {
        "fargate": 1.20,
        "alb": 1.12,
        "rds": 1.40,
        "cache": 1.40,
        "efs": 1.20,
        "s3": 1.09,
        "logs": 1.52,
        "nat": 1.31,
    },
    "ca-central-1": {
        "fargate": 1.10,
        "alb": 1.10,
        "rds": 1.10,
        "cache": 1.10,
        "efs": 1.10,
        "s3": 1.09,
        "logs": 1.10,
        "nat": 1.10,
    },
}

# The Fargate Spot discount of each region: Spot prices float, per region, with supply and demand. Only
# regions with a sourced figure are listed; any other region uses us-east-1's with a note saying so, and
# `--live` asks the Price List API for the region's SpotUsage-Fargate prices.
SPOT_DISCOUNTS: dict[str, float] = {
    "us-east-1": 0.682,  # [AWS.md] 68.2 % below on-demand, ARM and x86 alike (2026-09)
    "eu-west-1": 0.698,  # [AWS.md] ~69.8 % below on-demand in eu-west-1 (2026-09)
}

# Data transfer out to the internet, per GB after the free 100 GB, by region (the first 10 TB tier). Regions
# not listed here charge us-east-1's $0.09.
DATA_TRANSFER_OUT_GB: dict[str, float] = {
    "ap-northeast-1": 0.114,  # [PAGE] EC2 on-demand pricing, data transfer out, Tokyo
    "ap-southeast-1": 0.12,  # [PAGE] EC2 on-demand pricing, data transfer out, Singapore
    "ap-southeast-2": 0.114,  # [PAGE] EC2 on-demand pricing, data transfer out, Sydney
}


@dataclass(frozen=True)
class Commitment:
    """What a 1- or 3-year commitment takes off on-demand prices, no upfront payment."""

    term: str
    fargate_savings_plan: float  # Compute Savings Plan discount on on-demand Fargate (not Spot: SPs skip it)
    rds_reserved: float  # RDS reserved instance discount on the instance hours (storage is not reserved)
    note: str


COMMITMENTS: dict[str, Commitment] = {
    "1y": Commitment(
        "1y",
        fargate_savings_plan=0.20,  # [ASSUME] Compute Savings Plan, Fargate, 1y No Upfront: ~20 % (AWS: "up to 50 %")
        rds_reserved=0.31,  # [ASSUME] RDS for PostgreSQL reserved t4g/m7g, 1 year No Upfront: ~31 % below on-demand
        note="1-year Compute Savings Plan (Fargate, ~20 % off) and RDS reserved instances (~31 % off), no upfront",
    ),
    "3y": Commitment(
        "3y",
        fargate_savings_plan=0.45,  # [ASSUME] Compute Savings Plan, Fargate, 3 years No Upfront: ~45 %
        rds_reserved=0.48,  # [ASSUME] RDS reserved, 3 years (Partial Upfront, amortised: RDS sells no 3y No Upfront)
        note="3-year Compute Savings Plan (Fargate, ~45 % off, no upfront) and RDS reserved instances (~48 % off, "
        "partial upfront amortised: RDS offers no 3-year term without upfront)",
    ),
}


# Always free, per month [PAGE] as read for this table (2026-11); the quantity is in the unit of the estimate
# line it offsets. Not here because they are not always free (12 months on legacy accounts, credits on new
# ones, or a trial): S3's 5 GB, ECR's 500 MB, EFS's 5 GB, SES's 3,000 messages, Secrets Manager's 30 days.
# SNS (1,000 emails), SQS (1 million requests) and EventBridge Scheduler (14 million invocations) are always
# free too; the stack's use of them is priced as free (cost.FREE), being cents even without the tier.
ALWAYS_FREE: tuple[FreeAllowance, ...] = (
    FreeAllowance(
        "data_transfer_out",
        "data transfer out to the internet",
        100.0,  # [PAGE] 100 GB/month, aggregated over all services and regions but China and GovCloud
        "GB",
        "EC2 on-demand pricing, data transfer; AWS Global Network FAQs (data transfer out)",
        "GB",
    ),
    FreeAllowance(
        "cloudfront_out",
        "CloudFront data transfer out",
        1024.0,  # [PAGE] CloudFront pricing, "Included in Always Free Tier": 1 TB out to the internet a month
        "GB",
        "CloudFront pricing, Always Free Tier",
        "GB",
    ),
    FreeAllowance(
        "cloudfront_requests",
        "CloudFront requests",
        1000.0,  # [PAGE] 10,000,000 HTTP or HTTPS requests a month = 1,000 x 10,000
        "10,000 requests",
        "CloudFront pricing, Always Free Tier",
        "requests",
        10_000,
    ),
    FreeAllowance(
        "cloudwatch_metrics",
        "CloudWatch metrics",
        10.0,  # [PAGE] 10 metrics (custom or detailed monitoring: one billing dimension, CW:MetricMonitorUsage)
        "metric-month",
        "CloudWatch pricing, free tier (Metrics)",
        "metrics",
    ),
    FreeAllowance(
        "cloudwatch_alarms",
        "CloudWatch alarms",
        10.0,  # [PAGE] 10 alarm metrics, standard resolution only (high-resolution alarms are never free)
        "alarm-month",
        "CloudWatch pricing, free tier (Alarms)",
        "alarms",
    ),
    FreeAllowance(
        "cloudwatch_dashboards",
        "CloudWatch dashboards",
        3.0,  # [PAGE] 3 dashboards of up to 50 metrics each a month
        "dashboard-month",
        "CloudWatch pricing, free tier (Dashboard)",
        "dashboards",
    ),
    FreeAllowance(
        "logs_ingest",
        "CloudWatch Logs ingestion",
        5.0,  # [PAGE] 5 GB of log data ingested a month (the bill: "First 5GB per month of log data ingested")
        "GB",
        "CloudWatch pricing, free tier (Logs)",
        "GB",
    ),
    FreeAllowance(
        "logs_storage",
        "CloudWatch Logs storage",
        5.0,  # [PAGE] 5 GB-month of archived logs (the bill: "First 5GB-mo per month of logs storage is free")
        "GB-month",
        "CloudWatch pricing, free tier (Logs)",
        "GB stored",
    ),
    FreeAllowance(
        "lambda_requests",
        "Lambda requests",
        1.0,  # [PAGE] 1 million requests a month, x86 and Arm together
        "million requests",
        "AWS Lambda pricing, free tier",
        "requests",
        1_000_000,
    ),
    FreeAllowance(
        "lambda_gb_seconds",
        "Lambda duration",
        400_000.0,  # [PAGE] 400,000 GB-seconds of compute a month, x86 and Arm together
        "GB-second",
        "AWS Lambda pricing, free tier",
        "GB-s",
    ),
    FreeAllowance(
        "kms_requests",
        "KMS requests",
        2.0,  # [PAGE] 20,000 requests a month across all regions = 2 x 10,000 (keys themselves are never free)
        "10,000 requests",
        "AWS KMS pricing, free tier",
        "requests",
        10_000,
    ),
)


# Which Prices fields each category scales.
_CATEGORY_FIELDS: dict[str, tuple[str, ...]] = {
    "fargate": ("fargate_vcpu_hour", "fargate_gb_hour", "fargate_ephemeral_gb_hour"),
    "alb": ("alb_hour", "alb_lcu_hour"),
    "rds": ("rds_instance_hour", "rds_gp3_gb_month", "rds_snapshot_gb_month"),
    "cache": ("cache_node_hour",),
    "efs": (
        "efs_standard_gb_month",
        "efs_elastic_read_gb",
        "efs_elastic_write_gb",
        "efs_provisioned_mibps_month",
        "efs_backup_gb_month",
    ),
    "s3": ("s3_standard_gb_month", "s3_put_per_1000", "s3_get_per_1000"),
    "logs": ("logs_ingest_gb", "logs_storage_gb_month"),
    "nat": ("nat_hour", "nat_gb"),
}


def _scaled(value: float | Mapping[str, float], factor: float) -> float | dict[str, float]:
    if isinstance(value, Mapping):
        return {k: round(v * factor, 6) for k, v in value.items()}
    return round(value * factor, 6)


def _regional(region: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The Spot discount and internet egress price of `region`, and a note when they are us-east-1's."""
    changes: dict[str, Any] = {}
    notes: tuple[str, ...] = ()
    if region in SPOT_DISCOUNTS:
        changes["fargate_spot_discount"] = SPOT_DISCOUNTS[region]
    else:
        notes = (
            f"The Fargate Spot discount of {region} is not in the bundled table: us-east-1's "
            f"{SPOT_DISCOUNTS[BASE_REGION]:.1%} is used (Spot prices float and differ by region); --live asks the "
            "AWS Price List API for this region's Spot prices.",
        )
    if region in DATA_TRANSFER_OUT_GB:
        changes["data_transfer_out_gb"] = DATA_TRANSFER_OUT_GB[region]
    return changes, notes


def for_region(region: str) -> Prices:
    """The bundled table for `region`: us-east-1 prices scaled by the region's multipliers, with the region's
    own Spot discount and internet egress price where the table has them."""
    regional, regional_notes = _regional(region)
    if region not in REGION_MULTIPLIERS:
        return replace(
            US_EAST_1,
            region=region,
            notes=(
                f"Region {region} is not in the bundled price table: us-east-1 prices are used (most regions "
                "cost the same or up to ~50 % more); run with --live for this region's prices.",
                *regional_notes,
            ),
            **regional,
        )
    changes: dict[str, Any] = {}
    for category, factor in REGION_MULTIPLIERS[region].items():
        for name in _CATEGORY_FIELDS[category]:
            changes[name] = _scaled(getattr(US_EAST_1, name), factor)
    notes = (
        ()
        if region == BASE_REGION or not REGION_MULTIPLIERS[region]
        else (
            f"{region} prices are us-east-1's times approximate regional multipliers "
            f"({', '.join(f'{k} x{v:g}' for k, v in REGION_MULTIPLIERS[region].items())}); run with --live "
            "for exact figures.",
        )
    )
    return replace(US_EAST_1, region=region, notes=(*notes, *regional_notes), **{**changes, **regional})


# ------------------------------------------------------------------------------------------- --live


@dataclass(frozen=True)
class _Query:
    """One Price List query: service code, filters, and how to recognise the product we want."""

    service: str
    filters: tuple[tuple[str, str], ...]
    key: str  # what the price is for (Prices field, or "field:class")
    usage_suffix: str = ""  # the usagetype without its region prefix, when that identifies the product
    product_family: str = ""


def _region_prefix_stripped(usage_type: str) -> str:
    """'USE1-Fargate-GB-Hours' -> 'Fargate-GB-Hours'; 'EU-...' likewise; unprefixed types stay."""
    return re.sub(r"^[A-Z]{2,4}\d?-", "", usage_type)


def live_queries(region: str, rds_classes: Iterable[str], cache_nodes: Iterable[tuple[str, str]]) -> list[_Query]:
    """The Price List queries `--live` makes, in order (tests stub exactly these)."""
    r = ("regionCode", region)
    queries = [
        _Query("AmazonECS", (r,), "fargate_vcpu_hour:X86_64", usage_suffix="Fargate-vCPU-Hours:perCPU"),
        _Query("AmazonECS", (r,), "fargate_gb_hour:X86_64", usage_suffix="Fargate-GB-Hours"),
        _Query("AmazonECS", (r,), "fargate_vcpu_hour:ARM64", usage_suffix="Fargate-ARM-vCPU-Hours:perCPU"),
        _Query("AmazonECS", (r,), "fargate_gb_hour:ARM64", usage_suffix="Fargate-ARM-GB-Hours"),
        # Fargate Spot's current prices, where the Price List API carries them: the discount is derived.
        _Query("AmazonECS", (r,), "spot:fargate_vcpu_hour:X86_64", usage_suffix="SpotUsage-Fargate-vCPU-Hours:perCPU"),
        _Query(
            "AmazonECS", (r,), "spot:fargate_vcpu_hour:ARM64", usage_suffix="SpotUsage-Fargate-ARM-vCPU-Hours:perCPU"
        ),
        _Query("AmazonVPC", (r,), "public_ipv4_hour", usage_suffix="PublicIPv4:InUseAddress"),
        _Query(
            "AWSELB",
            (r, ("productFamily", "Load Balancer-Application")),
            "alb_hour",
            usage_suffix="LoadBalancerUsage",
            product_family="Load Balancer-Application",
        ),
    ]
    for cls in sorted(set(rds_classes)):
        queries.append(
            _Query(
                "AmazonRDS",
                (r, ("instanceType", cls), ("databaseEngine", "PostgreSQL"), ("deploymentOption", "Single-AZ")),
                f"rds_instance_hour:{cls}",
                product_family="Database Instance",
            )
        )
    for node, engine in sorted(set(cache_nodes)):
        queries.append(
            _Query(
                "AmazonElastiCache",
                (r, ("instanceType", node), ("cacheEngine", "Valkey" if engine == "valkey" else "Redis")),
                f"cache_node_hour:{node}:{engine}",
                product_family="Cache Instance",
            )
        )
    return queries


def _on_demand_usd(item: dict[str, Any]) -> float | None:
    for term in item.get("terms", {}).get("OnDemand", {}).values():
        for dim in term.get("priceDimensions", {}).values():
            usd = dim.get("pricePerUnit", {}).get("USD")
            if usd is not None and float(usd) > 0:
                return float(usd)
    return None


def _match(query: _Query, item: dict[str, Any]) -> bool:
    product = item.get("product", {})
    attrs = product.get("attributes", {})
    if query.usage_suffix and _region_prefix_stripped(attrs.get("usagetype", "")) != query.usage_suffix:
        return False
    family = product.get("productFamily") or attrs.get("productFamily", "")
    return not (query.product_family and family != query.product_family)


def run_query(pricing: Any, query: _Query) -> float | None:
    """The first on-demand USD price of a product matching the query (paging through results)."""
    kwargs: dict[str, Any] = {
        "ServiceCode": query.service,
        "Filters": [{"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in query.filters],
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
    }
    while True:
        page = pricing.get_products(**kwargs)
        for raw in page.get("PriceList", []):
            item = json.loads(raw) if isinstance(raw, str) else raw
            if _match(query, item):
                price = _on_demand_usd(item)
                if price is not None:
                    return price
        token = page.get("NextToken")
        if not token:
            return None
        kwargs["NextToken"] = token


def with_live(base: Prices, found: Mapping[str, float], missing: list[str]) -> Prices:
    """`base` with the prices the Price List API returned; says which came from where."""
    changes: dict[str, Any] = {}
    spot = {k.removeprefix("spot:"): v for k, v in found.items() if k.startswith("spot:")}
    for key, price in found.items():
        if key.startswith("spot:"):
            continue
        name, _, rest = key.partition(":")
        if name == "cache_node_hour":
            node, _, engine = rest.partition(":")
            # The table holds Redis OSS prices; a Valkey price is turned back into one.
            price = price / (1 - base.valkey_discount) if engine == "valkey" else price
            rest = node
        if rest:
            merged = dict(changes.get(name, getattr(base, name)))
            merged[rest] = price
            changes[name] = merged
        else:
            changes[name] = price
    discounts = []
    for key, spot_price in sorted(spot.items()):  # "fargate_vcpu_hour:ARM64"
        name, _, arch = key.partition(":")
        on_demand = changes.get(name, getattr(base, name)).get(arch)
        if on_demand and 0 < spot_price < on_demand:
            discounts.append(1 - spot_price / on_demand)
    if discounts:
        changes["fargate_spot_discount"] = round(sum(discounts) / len(discounts), 4)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    note = f"Prices from the AWS Price List API ({today}): {', '.join(sorted(found)) or 'none'}."
    if discounts:
        note += f" Fargate Spot discount derived from its Spot prices: {changes['fargate_spot_discount']:.1%}."
    if missing:
        note += f" Not found there, so from the bundled table of {base.as_of}: {', '.join(sorted(missing))}."
    return replace(
        base,
        as_of=today,
        source=f"AWS Price List API ({today}) over the bundled table of {base.as_of}",
        notes=(*base.notes, note),
        **changes,
    )


def fetch_live(base: Prices, rds_classes: Iterable[str], cache_nodes: Iterable[tuple[str, str]]) -> tuple[Prices, str]:
    """Current prices from the AWS Price List API over `base`, and a message for the user.

    Falls back to `base` (the bundled table) with a message saying why when there are no credentials or
    any call fails: an estimate with dated prices beats no estimate.
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from mastofargate.aws import aws_errors, client
    from mastofargate.errors import MastofargateError

    fallback = f"using the bundled prices of {base.as_of} instead."
    if boto3.session.Session().get_credentials() is None:
        return base, f"--live: no AWS credentials, so the AWS Price List API cannot be asked; {fallback}"
    found: dict[str, float] = {}
    missing: list[str] = []
    try:
        pricing = client("pricing", "us-east-1")  # the Price List API answers in us-east-1 for every region
        with aws_errors("reading prices from the AWS Price List API"):
            for query in live_queries(base.region, rds_classes, cache_nodes):
                price = run_query(pricing, query)
                if price is None:
                    missing.append(query.key)
                else:
                    found[query.key] = price
    except MastofargateError as e:
        why = f" {e.why.rstrip('.')}." if e.why else ""
        return base, f"--live: {e.what}{why} {fallback[0].upper()}{fallback[1:]}"
    except (BotoCoreError, ClientError, ValueError, KeyError) as e:
        return base, f"--live: the AWS Price List API call failed ({type(e).__name__}: {e}); {fallback}"
    if not found:
        return base, f"--live: the AWS Price List API returned none of the prices asked for; {fallback}"
    return with_live(base, found, missing), f"--live: {len(found)} prices from the AWS Price List API."
