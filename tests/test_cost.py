"""`mastofargate cost`: every price line against hand arithmetic, coverage of every resource type, the JSON
shape, --compare, --live (Price List API stubbed) and the fallbacks, and synth's one-line total.

Hand arithmetic uses literal prices from the bundled table (us-east-1, 730 h/month, Spot 68.2 % off), so a
price change in mastofargate/prices.py fails here on purpose: update both together.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mastofargate import aws
from mastofargate.cli import app
from mastofargate.cost import (
    FREE,
    PRICED,
    Estimate,
    LineItem,
    UnpricedResourceError,
    compare,
    estimate,
    runs_per_month,
    split_capacity,
    summary_line,
    synth_summary,
)
from mastofargate.prices import PRICES_AS_OF, for_region, live_queries
from mastofargate.stack import build
from tests.conftest import CACHES, DATABASES, PROFILES, make_config

H = 730  # hours in a month
SPOT = 1 - 0.682  # what Spot leaves of the on-demand price (us-east-1)
IPV4 = 0.005 * H  # one public IPv4 address for a month
TOML = """\
[server]
domain = "social.example.org"
admin_email = "admin@example.org"

[aws]
name = "social"
region = "us-east-1"
hosted_zone_id = "Z0123456789EXAMPLE"

[deployment]
profile = "{profile}"
"""


def line(est: Estimate, prefix: str) -> LineItem:
    found = [i for i in est.items if i.name.startswith(prefix)]
    assert len(found) == 1, f"{prefix!r} matches {[i.name for i in found]}"
    return found[0]


def usd(est: Estimate, prefix: str) -> float:
    return line(est, prefix).usd_month


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "mastofargate.toml"
    path.write_text(TOML.format(profile="personal"))
    return path


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mastofargate", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "CI": "1", **(env or {})},
    )


# ------------------------------------------------------------------------------------------- price lines


def test_personal_default_lines_match_hand_arithmetic() -> None:
    """personal with a Redis task on EFS: RDS Postgres, arm64, Spot (EFS in Elastic throughput mode here, to
    price its writes; the Bursting default has no I/O charge: test_cost_honest.py)."""
    est = estimate(make_config({"efs": {"throughput": "elastic"}}, profile="personal", cache="task"))
    # web: 0.25 vCPU and 1 GB on ARM, Spot
    assert usd(est, "Fargate Spot: web") == pytest.approx((0.25 * 0.03238 + 1 * 0.00356) * H * SPOT)
    assert usd(est, "Fargate Spot: streaming") == pytest.approx((0.25 * 0.03238 + 0.5 * 0.00356) * H * SPOT)
    assert usd(est, "Fargate Spot: sidekiq") == pytest.approx((0.25 * 0.03238 + 1 * 0.00356) * H * SPOT)
    assert usd(est, "Fargate Spot: redis") == pytest.approx((0.25 * 0.03238 + 0.5 * 0.00356) * H * SPOT)
    # web, streaming, sidekiq and redis each have a public address; the ALB one per subnet (2 AZs)
    assert usd(est, "Public IPv4: one per service task") == pytest.approx(4 * IPV4)
    assert usd(est, "Public IPv4: load balancer") == pytest.approx(2 * IPV4)
    assert usd(est, "Application Load Balancer") == pytest.approx(0.0225 * H)
    assert usd(est, "ALB capacity units") == pytest.approx(0.1 * H * 0.008)
    assert usd(est, "RDS PostgreSQL db.t4g.micro") == pytest.approx(0.016 * H)
    assert usd(est, "RDS gp3 storage") == pytest.approx(20 * 0.115)
    # MediaCleanup: daily cron = 730/24 runs x 10 min on the tootctl task (0.5 vCPU, 2 GB), Spot, + its IPv4
    runs = H / 24
    assert usd(est, "Scheduled task MediaCleanup") == pytest.approx(
        runs * 10 / 60 * ((0.5 * 0.03238 + 2 * 0.00356) * SPOT + 0.005)
    )
    # PreviewCardCleanup: every Sunday = 730/24/7 runs
    assert usd(est, "Scheduled task PreviewCardCleanup") == pytest.approx(
        H / 24 / 7 * 10 / 60 * ((0.5 * 0.03238 + 2 * 0.00356) * SPOT + 0.005)
    )
    # Redis appends 5 changes/s x 300 B to its AOF and rewrites the 0.02 GB data set each time the file has
    # grown 64 MB; EFS Elastic writes are $0.06/GB
    appended = 5 * 300 * H * 3600 / 1e9
    assert usd(est, "EFS Elastic Throughput writes") == pytest.approx((appended + appended / (64 / 1024) * 0.02) * 0.06)
    assert usd(est, "EFS Standard storage") == pytest.approx(0.02 * 0.30)
    assert usd(est, "Secrets Manager secrets") == pytest.approx(1 * 0.40)  # one secret per server (issue 12)
    # one key: ECS Exec sessions use the data key under a scoped grant (stack/keys.py)
    assert usd(est, "KMS customer-managed keys") == pytest.approx(1.00)
    # BackupDump: nightly = 730/24 runs x (2 min start + 2 min/GB x 3 GB) on the backup task (0.5 vCPU, 1 GB,
    # 30 GiB ephemeral = 10 GiB above the free 20), on-demand, + its IPv4
    backup_hourly = 0.5 * 0.03238 + 1 * 0.00356 + 10 * 0.000111 + 0.005
    assert usd(est, "Scheduled task BackupDump") == pytest.approx(runs * 8 / 60 * backup_hourly)
    # RestoreDrill: monthly (12/year = 1 a month) x (2 + 3 min/GB x 3 GB)
    assert usd(est, "Scheduled task RestoreDrill") == pytest.approx(1 * 11 / 60 * backup_hourly)
    # BackupSucceeded, DrillSucceeded, BackupAgeSeconds at $0.30
    assert usd(est, "CloudWatch custom metrics (backups, 3)") == pytest.approx(3 * 0.30)
    # dumps: a quarter of 3 GB a night, kept 35 days + 7 noncurrent days, at $0.023
    assert usd(est, "S3 backup storage: dumps") == pytest.approx(42 * 3 * 0.25 * 0.023)
    # memory alarms for web, streaming, sidekiq, redis + 5xx + unhealthy web + RDS free storage + dead letters
    # + Sidekiq backlog + the Spot fallback's dead letters + backup missing + drill failed
    assert usd(est, "CloudWatch alarms") == pytest.approx(12 * 0.10)
    # the backlog's four EMF metrics at $0.30, and ~300 mails a month through SES at $0.10 per 1,000
    assert usd(est, "CloudWatch custom metrics (Sidekiq backlog, EMF)") == pytest.approx(4 * 0.30)
    assert usd(est, "SES outbound mail") == pytest.approx(0.3 * 0.10)
    assert usd(est, "Route 53 hosted zone") == pytest.approx(0.50)
    assert usd(est, "Cloud Map private DNS namespace") == pytest.approx(0.50)
    assert usd(est, "Cloud Map registered task instances") == pytest.approx(1 * 0.10)
    assert usd(est, "CloudWatch Logs ingestion") == pytest.approx(1 * 0.50)
    # media: 5 GB local + 0.5 GB/day x 7 cleanup days; versioning keeps 0.5 GB/day x 7 days more
    assert usd(est, "S3 media storage") == pytest.approx((5 + 0.5 * 7) * 0.023)
    assert usd(est, "S3 noncurrent media versions") == pytest.approx(0.5 * 7 * 0.023)
    # gross lines: 25 GB/month and ~500,000 HTTPS requests through CloudFront, 20 GB/month out of the tasks
    assert usd(est, "CloudFront MediaDistribution (") == pytest.approx(25 * 0.085)
    assert usd(est, "CloudFront MediaDistribution HTTPS requests") == pytest.approx(50 * 0.01)
    assert usd(est, "Data transfer out") == pytest.approx(20 * 0.09)
    # ... each taken off again by its always-free allowance (1 TB, 10 million requests, 100 GB), all of it
    assert usd(est, "Always-free tier: CloudFront data transfer out") == pytest.approx(-25 * 0.085)
    assert usd(est, "Always-free tier: CloudFront requests") == pytest.approx(-50 * 0.01)
    assert usd(est, "Always-free tier: data transfer out") == pytest.approx(-20 * 0.09)
    # 12 alarms, 10 free; 3 + 4 custom metrics, all within the 10 free; 1 GB of logs within 5 GB; 20,000 of the
    # 30,000 KMS requests
    assert usd(est, "Always-free tier: CloudWatch alarms (10 of 12 alarms") == pytest.approx(-10 * 0.10)
    assert usd(est, "Always-free tier: CloudWatch metrics (all 7 metrics") == pytest.approx(-7 * 0.30)
    assert usd(est, "Always-free tier: CloudWatch Logs ingestion") == pytest.approx(-1 * 0.50)
    assert usd(est, "Always-free tier: KMS requests (20,000 of 30,000") == pytest.approx(-2 * 0.03)
    # ECR: 15 images kept per repository: 0.45 + 14 x 0.20 GB, 0.08 + 14 x 0.03 GB and 0.19 + 14 x 0.02 GB at $0.10
    assert usd(est, "ECR image storage") == pytest.approx(
        (0.45 + 14 * 0.20 + 0.08 + 14 * 0.03 + 0.19 + 14 * 0.02) * 0.10
    )
    # RDS snapshots: 3 GB x (1 + 1 % x 91 days kept) at $0.095
    assert usd(est, "AWS Backup: RDS snapshots") == pytest.approx(3 * (1 + 0.01 * 91) * 0.095)
    assert est.total_usd_month == pytest.approx(sum(i.usd_month for i in est.items))
    assert est.total_without_free_tier_usd_month == pytest.approx(est.total_usd_month - est.free_tier_usd_month)
    assert [c.name.split(" (")[0].removeprefix("Always-free tier: ") for c in est.credits] == [
        "data transfer out to the internet",
        "CloudFront data transfer out",
        "CloudFront requests",
        "CloudWatch metrics",
        "CloudWatch alarms",
        "CloudWatch dashboards",
        "CloudWatch Logs ingestion",
        "CloudWatch Logs storage",
        "Lambda requests",
        "Lambda duration",
        "KMS requests",
    ]  # in the order of prices.ALWAYS_FREE, after every charge line
    assert est.items[-len(est.credits) :] == est.credits
    assert not any(i.name.startswith("ElastiCache") for i in est.items)


def test_community_x86_on_demand_multi_az_and_valkey() -> None:
    cfg = make_config({"rds": {"multi_az": True}}, profile="community", arch="x86_64", spot=False)
    est = estimate(cfg)
    assert usd(est, "Fargate: front") == pytest.approx((1 * 0.04048 + 2 * 0.004445) * H)  # Puma + streaming
    assert usd(est, "Fargate: sidekiq") == pytest.approx((0.5 * 0.04048 + 2 * 0.004445) * H)
    assert usd(est, "RDS PostgreSQL db.t4g.small Multi-AZ") == pytest.approx(2 * 0.032 * H)
    assert usd(est, "RDS gp3 storage") == pytest.approx(40 * 2 * 0.115)
    # Valkey is 20 % below the Redis OSS node price
    assert usd(est, "ElastiCache valkey cache.t4g.micro") == pytest.approx(0.016 * 0.8 * H)
    assert usd(est, "Public IPv4: one per service task") == pytest.approx(2 * IPV4)
    assert usd(est, "ALB capacity units") == pytest.approx(0.5 * H * 0.008)
    assert not any("Spot" in i.name for i in est.items)
    assert any("autoscales up to 3 tasks" in a for a in est.assumptions)


def test_redis_engine_pays_full_node_price() -> None:
    est = estimate(make_config({"elasticache": {"engine": "redis", "engine_version": "7.1"}}, cache="elasticache"))
    assert usd(est, "ElastiCache redis cache.t4g.micro") == pytest.approx(0.016 * H)


def test_spot_service_with_two_tasks_keeps_one_on_demand() -> None:
    """large, Spot: web runs 2 tasks with Base 1 on FARGATE and the rest on FARGATE_SPOT."""
    est = estimate(make_config(profile="large", spot=True))
    web = (2 * 0.03238 + 4 * 0.00356) * H
    assert line(est, "Fargate: web").quantity == 1
    assert usd(est, "Fargate: web") == pytest.approx(web)
    assert usd(est, "Fargate Spot: web") == pytest.approx(web * SPOT)
    assert line(est, "Fargate Spot: sidekiq-scheduler").quantity == 1
    # 2 web + 2 streaming + 2 sidekiq-default + 1 federation + 1 scheduler tasks, each with an address
    assert usd(est, "Public IPv4: one per service task") == pytest.approx(8 * IPV4)


def test_postgres_task_never_on_spot_and_efs_io_adds_up() -> None:
    est = estimate(make_config({"efs": {"throughput": "elastic"}}, database="task", cache="task"))
    assert usd(est, "Fargate: postgres") == pytest.approx((0.25 * 0.03238 + 1 * 0.00356) * H)
    assert not any(i.name.startswith("Fargate Spot: postgres") for i in est.items)
    # Postgres 40 GB writes (assumed) + Redis AOF (5 changes/s x 300 B, rewrites of 0.02 GB per 64 MB);
    # Postgres 20 GB reads
    appended = 5 * 300 * H * 3600 / 1e9
    writes = 40 + appended + appended / (64 / 1024) * 0.02
    assert usd(est, "EFS Elastic Throughput writes") == pytest.approx(writes * 0.06)
    assert usd(est, "EFS Elastic Throughput reads") == pytest.approx(20 * 0.03)
    assert usd(est, "EFS Standard storage") == pytest.approx((3 + 0.02) * 0.30)
    assert usd(est, "Cloud Map registered task instances") == pytest.approx(2 * 0.10)
    assert usd(est, "Public IPv4: one per service task") == pytest.approx(5 * IPV4)
    assert not any(i.name.startswith("RDS") for i in est.items)


def test_the_one_task_server_is_priced_as_one_task_with_its_data_stores_on_efs() -> None:
    """The one task (its task definition behind Fn::If: the estimate prices the server switched on) on Spot,
    one public IPv4 for the whole server; its Postgres and Redis containers are found on EFS."""
    est = estimate(make_config(layout="one-task", database="task", cache="task"))
    size = 0.5 * 0.03238 + 3 * 0.00356
    assert usd(est, "Fargate Spot: server (0.5 vCPU, 3 GB, ARM64)") == pytest.approx(size * H * SPOT)
    assert not any(i.name.startswith(("Fargate: ", "Fargate Spot: web", "Fargate Spot: postgres")) for i in est.items)
    assert usd(est, "Public IPv4: one per service task") == pytest.approx(1 * IPV4)
    assert usd(est, "EFS Standard storage") > 0  # Postgres' data and Redis' append-only file found in the task
    assert any("Postgres on EFS" in a for a in est.assumptions) and any("append-only" in a for a in est.assumptions)
    assert usd(est, "Cloud Map registered task instances") == pytest.approx(0.10)
    on_demand = estimate(make_config(layout="one-task", database="task", cache="task", spot=False))
    assert usd(on_demand, "Fargate: server (0.5 vCPU, 3 GB, ARM64)") == pytest.approx(size * H)
    rds = estimate(make_config(layout="one-task", spot=True))
    assert any(i.name.startswith("RDS") for i in rds.items) and not any("EFS" in i.name for i in rds.items)


def test_community_front_task_is_one_service_with_one_address() -> None:
    est = estimate(make_config(profile="community"))
    assert usd(est, "Fargate Spot: front (1 vCPU, 2 GB, ARM64)") > 0
    assert not any(i.name.startswith(("Fargate Spot: web", "Fargate Spot: streaming")) for i in est.items)
    assert usd(est, "Public IPv4: one per service task") == pytest.approx(2 * IPV4)  # front and sidekiq


def test_media_gb_overrides_the_assumed_media_size() -> None:
    est = estimate(make_config(), media_gb=100)
    assert usd(est, "S3 media storage") == pytest.approx(100 * 0.023)
    assert any("100 GB stored in S3 (--media-gb)" in a for a in est.assumptions)


def test_without_hosted_zone_no_zone_is_billed() -> None:
    cert = "arn:aws:acm:us-east-1:123456789012:certificate/12345678-1234-1234-1234-123456789012"
    cfg = make_config({"aws": {"hosted_zone_id": None, "certificate_arn": cert}})
    assert not any(i.name.startswith("Route 53") for i in estimate(cfg).items)


def test_regions_scale_or_fall_back_with_a_stated_assumption() -> None:
    frankfurt = estimate(make_config({"aws": {"region": "eu-central-1"}, "media": {"domain": "cloudfront"}}))
    assert usd(frankfurt, "Fargate Spot: web") == pytest.approx((0.25 * 0.03238 + 1 * 0.00356) * 1.15 * H * SPOT)
    assert usd(frankfurt, "Public IPv4: load balancer") == pytest.approx(2 * IPV4)  # same price everywhere
    assert frankfurt.region == "eu-central-1"
    assert any("eu-central-1 prices are us-east-1's times" in a for a in frankfurt.assumptions)
    bahrain = estimate(make_config({"aws": {"region": "me-south-1"}, "media": {"domain": "cloudfront"}}))
    assert usd(bahrain, "Fargate Spot: web") == pytest.approx((0.25 * 0.03238 + 1 * 0.00356) * H * SPOT)
    assert any("me-south-1 is not in the bundled price table" in a for a in bahrain.assumptions)


def test_schedule_expressions_and_capacity_split() -> None:
    assert runs_per_month("cron(0 4 * * ? *)") == pytest.approx(730 / 24)
    assert runs_per_month("cron(30 4 ? * SUN *)") == pytest.approx(730 / 24 / 7)
    assert runs_per_month("cron(0/15 * * * ? *)") == pytest.approx(4 * 24 * 730 / 24)
    assert runs_per_month("cron(0 4 ? * MON-FRI *)") == pytest.approx(5 * 730 / 24 / 7)
    assert runs_per_month("cron(0 4 1 * ? *)") == pytest.approx(1)
    assert runs_per_month("rate(1 hour)") == pytest.approx(730)
    assert runs_per_month("rate(30 minutes)") == pytest.approx(1460)
    strategy = [
        {"CapacityProvider": "FARGATE", "Base": 1, "Weight": 0},
        {"CapacityProvider": "FARGATE_SPOT", "Weight": 1},
    ]
    assert split_capacity(3, strategy) == {"FARGATE": 1, "FARGATE_SPOT": 2}
    assert split_capacity(1, strategy) == {"FARGATE": 1}
    assert split_capacity(2, None) == {"FARGATE": 2}


def test_summary_line() -> None:
    cfg = make_config(profile="personal")
    est = estimate(cfg)
    assert summary_line(est, cfg) == (
        f"Estimated cost: ${est.total_usd_month:,.2f}/month (personal, arm64, Spot, after AWS's always-free tiers; "
        "run 'mastofargate cost' for the breakdown)"
    )
    gross = estimate(cfg, free_tier=False)
    assert summary_line(gross, cfg) == (
        f"Estimated cost: ${gross.total_usd_month:,.2f}/month (personal, arm64, Spot, gross, no free tier; "
        "run 'mastofargate cost' for the breakdown)"
    )


# ------------------------------------------------------------------------------------------- coverage


def test_priced_and_free_sets_are_disjoint() -> None:
    assert not set(PRICED) & set(FREE)


@pytest.mark.parametrize(
    ("profile", "database", "cache"), list(itertools.product(PROFILES, DATABASES, CACHES)), ids="-".join
)
def test_every_generated_resource_type_is_priced_or_free(profile: str, database: str, cache: str) -> None:
    cfg = make_config(profile=profile, database=database, cache=cache)
    templates = build(cfg)
    types = {r["Type"] for t in templates.values() for r in t.to_dict()["Resources"].values()}
    assert types <= set(PRICED) | set(FREE), sorted(types - set(PRICED) - set(FREE))
    est = estimate(cfg, templates)
    assert est.total_usd_month > 0
    assert est.charges and all(i.usd_month >= 0 for i in est.charges)
    assert est.credits and all(i.usd_month <= 0 for i in est.credits)


def test_an_unknown_billable_type_makes_the_estimate_fail() -> None:
    cfg = make_config()
    templates: dict[str, Any] = {k: t.to_dict() for k, t in build(cfg).items()}
    templates["data"]["Resources"]["StaticAddress"] = {"Type": "AWS::EC2::EIP", "Properties": {"Domain": "vpc"}}
    with pytest.raises(UnpricedResourceError, match=r"AWS::EC2::EIP"):
        estimate(cfg, templates)
    # synth keeps working and says why the total is missing
    assert synth_summary(cfg, templates).startswith("Estimated cost: unavailable (")


# ------------------------------------------------------------------------------------------- the CLI


def test_json_shape_via_the_cli(config_file: Path) -> None:
    result = run_cli("cost", "--json", "-c", str(config_file))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {
        "total_usd_month",
        "total_on_demand_usd_month",
        "total_without_free_tier_usd_month",
        "total_on_demand_without_free_tier_usd_month",
        "free_tier",
        "items",
        "assumptions",
        "prices_as_of",
        "region",
    }
    assert data["prices_as_of"] == PRICES_AS_OF and data["region"] == "us-east-1"
    assert data["items"] and all({"name", "quantity", "unit_price", "usd_month"} <= set(i) for i in data["items"])
    assert all(isinstance(i[k], int | float) for i in data["items"] for k in ("quantity", "unit_price", "usd_month"))
    assert data["total_usd_month"] == pytest.approx(sum(i["usd_month"] for i in data["items"]), abs=0.05)
    assert data["assumptions"] and all(isinstance(a, str) for a in data["assumptions"])
    assert data["total_usd_month"] == round(estimate(make_config(profile="personal")).total_usd_month, 2)


def test_plain_output_lists_lines_assumptions_and_date(config_file: Path) -> None:
    result = run_cli("cost", "-c", str(config_file), "--media-gb", "55")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Fargate Spot: web" in out and "Total per month" in out
    assert "Assumptions:" in out and "55 GB stored in S3 (--media-gb)" in out
    assert f"Prices as of {PRICES_AS_OF}" in out


def test_compare_prints_every_combination_and_the_reference_points(config_file: Path) -> None:
    result = CliRunner().invoke(app, ["cost", "--compare", "-c", str(config_file)], env={"CI": "1"})
    assert result.exit_code == 0, result.output
    rows = [ln.split() for ln in result.output.splitlines()]
    for profile, database, cache in itertools.product(PROFILES, DATABASES, CACHES):
        for capacity in ("Spot", "on-demand"):
            assert [profile, database, cache, capacity] in [r[:4] for r in rows], (profile, database, cache, capacity)
    assert "$   22.00  EC2 setup (blog)" in result.output
    assert "$   52.97  Fargate template (widdix), as claimed" in result.output
    # 52.97 + 5 addresses (3 tasks + 2 ALB) x 0.005 x 730
    assert f"$ {52.97 + 5 * IPV4:7.2f}  Fargate template (widdix) + public IPv4" in result.output
    for profile in PROFILES:
        assert f"cheapest {profile}" in result.output


def test_compare_json_marks_one_cheapest_per_profile(config_file: Path) -> None:
    result = CliRunner().invoke(app, ["cost", "--compare", "--json", "-c", str(config_file)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len(data["combinations"]) == 3 * 2 * 2 * 2
    for profile in PROFILES:
        rows = [r for r in data["combinations"] if r["profile"] == profile]
        best = [r for r in rows if r["cheapest_for_profile"]]
        assert len(best) == 1 and best[0]["total_usd_month"] == min(r["total_usd_month"] for r in rows)
    assert [r["usd_month"] for r in data["reference_points"]] == [
        22.0,
        round(22 + IPV4, 2),
        52.97,
        round(52.97 + 5 * IPV4, 2),
    ]
    cfg = make_config(profile="community", database="rds", cache="elasticache", spot=True)
    row = next(
        r
        for r in data["combinations"]
        if r["profile"] == "community" and r["cache"] == "elasticache" and r["database"] == "rds" and r["spot"]
    )
    assert row["total_usd_month"] == round(estimate(cfg).total_usd_month, 2)
    assert len(compare(make_config())) == 24


def test_synth_prints_the_total_of_what_it_wrote(config_file: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["synth", "-c", str(config_file), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    total = estimate(make_config(profile="personal")).total_usd_month
    assert f"Estimated cost: ${total:,.2f}/month (personal, arm64, Spot, after AWS's always-free tiers;" in (
        result.output
    )


# ------------------------------------------------------------------------------------------- --live


def _product(usage_type: str, usd: float, family: str = "Compute", **attrs: str) -> str:
    return json.dumps(
        {
            "product": {"productFamily": family, "attributes": {"usagetype": usage_type, **attrs}, "sku": "SKU1"},
            "terms": {
                "OnDemand": {
                    "SKU1.TERM": {
                        "priceDimensions": {"SKU1.TERM.RATE": {"unit": "Hrs", "pricePerUnit": {"USD": f"{usd:.10f}"}}}
                    }
                }
            },
        }
    )


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    aws.reset_clients()
    yield
    aws.reset_clients()


def test_live_prices_from_a_stubbed_price_list(config_file: Path, fake_credentials: None) -> None:
    """Fakes the AWS Price List API with botocore's Stubber on the real pricing client: moto cannot serve
    the Price List API (it has no `pricing` backend), and this machine has no AWS account. The stub returns
    products shaped like the API's (JSON strings with product attributes and OnDemand terms); the test
    checks the exact queries made, that the returned prices reach the estimate, and that prices the API
    did not return come from the bundled table with a note saying so."""
    from botocore.stub import Stubber

    config_file.write_text(TOML.format(profile="personal") + 'cache = "task"\n')  # no ElastiCache query

    pricing = aws.client("pricing", "us-east-1")
    answers = {
        "fargate_vcpu_hour:X86_64": [_product("USE1-Fargate-vCPU-Hours:perCPU", 0.05)],
        "fargate_gb_hour:X86_64": [_product("USE1-Fargate-GB-Hours", 0.005)],
        # ARM vCPU: a Windows product first (must be skipped), then the Linux/ARM one
        "fargate_vcpu_hour:ARM64": [
            _product("USE1-Fargate-Windows-vCPU-Hours:perCPU", 0.09),
            _product("USE1-Fargate-ARM-vCPU-Hours:perCPU", 0.04),
        ],
        "fargate_gb_hour:ARM64": [],  # not returned: the bundled price stays
        "spot:fargate_vcpu_hour:X86_64": [],  # no x86 Spot price: the discount comes from the ARM one alone
        "spot:fargate_vcpu_hour:ARM64": [_product("USE1-SpotUsage-Fargate-ARM-vCPU-Hours:perCPU", 0.012)],
        "public_ipv4_hour": [_product("USE1-PublicIPv4:InUseAddress", 0.006, family="IP Address")],
        "alb_hour": [_product("USE1-LoadBalancerUsage", 0.03, family="Load Balancer-Application")],
        "rds_instance_hour:db.t4g.micro": [
            _product("USE1-InstanceUsage:db.t4g.micro", 0.02, family="Database Instance")
        ],
    }
    queries = live_queries("us-east-1", {"db.t4g.micro"}, set())
    assert [q.key for q in queries] == list(answers)
    with Stubber(pricing) as stub:
        for q in queries:
            stub.add_response(
                "get_products",
                {"PriceList": answers[q.key], "FormatVersion": "aws_v1"},
                {
                    "ServiceCode": q.service,
                    "Filters": [{"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in q.filters],
                    "FormatVersion": "aws_v1",
                    "MaxResults": 100,
                },
            )
        result = CliRunner().invoke(app, ["cost", "--live", "--json", "-c", str(config_file)])
        stub.assert_no_pending_responses()
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    items = {i["name"]: i for i in data["items"]}
    assert data["prices_as_of"] == datetime.now(UTC).strftime("%Y-%m-%d")
    # ARM vCPU from the API (0.04), ARM GB from the bundled table (0.00356); the Spot discount derived from the
    # API's ARM Spot vCPU price: 1 - 0.012 / 0.04 = 70 %
    web = items["Fargate Spot: web (0.25 vCPU, 1 GB, ARM64)"]
    assert web["unit_price"] == pytest.approx(round((0.25 * 0.04 + 1 * 0.00356) * H * 0.30, 6))
    assert web["on_demand_usd_month"] == pytest.approx((0.25 * 0.04 + 1 * 0.00356) * H, abs=0.01)
    assert items["Public IPv4: one per service task"]["unit_price"] == pytest.approx(0.006 * H)
    assert items["Application Load Balancer"]["unit_price"] == pytest.approx(0.03 * H)
    assert items["RDS PostgreSQL db.t4g.micro"]["unit_price"] == pytest.approx(0.02 * H)
    note = next(a for a in data["assumptions"] if a.startswith("Prices from the AWS Price List API"))
    assert "fargate_gb_hour:ARM64" in note.split("Not found there")[1]
    assert "Fargate Spot discount derived from its Spot prices: 70.0%" in note


def test_live_falls_back_when_the_price_list_refuses(config_file: Path, fake_credentials: None) -> None:
    """Stubber again (see above): an AccessDeniedException from the Price List API, as a role without
    pricing:GetProducts gets, must fall back to the bundled table with a message, not fail."""
    from botocore.stub import Stubber

    pricing = aws.client("pricing", "us-east-1")
    with Stubber(pricing) as stub:
        stub.add_client_error("get_products", "AccessDeniedException", "not allowed", 400)
        result = CliRunner().invoke(app, ["cost", "--live", "--json", "-c", str(config_file)])
    assert result.exit_code == 0, result.output
    assert "AccessDeniedException" in result.stderr and "bundled prices" in result.stderr
    assert json.loads(result.stdout)["prices_as_of"] == PRICES_AS_OF


def test_live_without_credentials_uses_the_bundled_table(config_file: Path, tmp_path: Path) -> None:
    """Real botocore credential resolution with nothing to find (no keys, files or metadata service)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "CI": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "mastofargate", "cost", "--live", "--json", "-c", str(config_file)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "no AWS credentials" in result.stderr and f"bundled prices of {PRICES_AS_OF}" in result.stderr
    assert json.loads(result.stdout)["prices_as_of"] == PRICES_AS_OF


def test_bundled_table_covers_every_class_the_config_offers() -> None:
    from mastofargate.sizing import CACHE_NODE_TYPES, RDS_INSTANCE_MEMORY_GIB

    prices = for_region("us-east-1")
    assert set(RDS_INSTANCE_MEMORY_GIB) <= set(prices.rds_instance_hour)
    assert set(CACHE_NODE_TYPES) <= set(prices.cache_node_hour)


def test_the_direct_edge_drops_the_load_balancer_and_prices_what_replaces_it() -> None:
    """edge = "direct": no ALB, its two addresses and LCUs leave the bill; the Lambdas, the zone (no other
    record of the templates is in it once media is on CloudFront's name) and the A record's queries are
    priced; the web task keeps its one public address."""
    alb = estimate(make_config(profile="personal"))
    direct = estimate(make_config(profile="personal", edge="direct"))
    names = [i.name for i in direct.items]
    assert not any(
        n.startswith(("Application Load Balancer", "ALB capacity", "Public IPv4: load balancer")) for n in names
    )
    assert usd(direct, "Route 53 queries for social.example.org.") == pytest.approx(1.0 * 0.40)
    lambdas = [i for i in direct.items if i.name.startswith("Lambda social-")]
    assert {i.name.split()[1] for i in lambdas} == {"social-dns-follower", "social-cert-watch", "social-spot-fallback"}
    # the follower: every 5 minutes (8,640 runs) plus the assumed task events
    assert line(direct, "Lambda social-dns-follower requests").quantity == pytest.approx((8_640 + 100) / 1e6, rel=0.05)
    assert sum(1 for n in names if n.startswith("Route 53 hosted zone")) == 1, "the zone is billed once"
    saved = usd(alb, "Application Load Balancer") + usd(alb, "Public IPv4: load balancer")
    assert alb.total_usd_month - direct.total_usd_month > saved - 2  # what the edge adds is small
    assert any("plain A/AAAA record" in a for a in direct.assumptions)


def test_compare_from_a_one_task_config_prices_every_profile() -> None:
    """The one task is the personal profile's own layout (what init proposes): comparing against the other
    profiles prices them in their own layout instead of calling them invalid."""
    from mastofargate.cost import compare

    rows = compare(make_config(profile="personal", database="task", cache="task", layout="one-task", edge="direct"))
    assert len(rows) == 24
    assert all(r.estimate is not None for r in rows), [r.error for r in rows if r.estimate is None]
    personal = [r for r in rows if r.profile == "personal"]
    assert min(personal, key=lambda r: r.estimate.total_usd_month if r.estimate else 1e9).database == "task"
