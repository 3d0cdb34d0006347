"""Honest prices (issue 12 item 7): every price sourced and dated, the Spot discount and internet egress per
region, Route 53 queries, the EC2 reference with its public IPv4, `--commit 1y|3y`, Spot lines shown with
their on-demand price, and JSON that stays JSON. Hand arithmetic uses the bundled table's literals."""

from __future__ import annotations

import ast
import inspect
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mastofargate import prices
from mastofargate.cli import app
from mastofargate.cost import EC2_REFERENCE_USD, estimate, references
from mastofargate.prices import COMMITMENTS, PRICES_AS_OF, SPOT_DISCOUNTS, for_region
from tests.conftest import make_config

H = 730
TAGS = ("[AWS.md]", "[PAGE]", "[ASSUME]", "[FN]")


def test_every_price_carries_a_source_and_the_table_a_date() -> None:
    """Each number of the price table (the Prices defaults, us-east-1, the regional tables, the commitments)
    has a source tag on its line, or in the comment that opens the dict it belongs to."""
    source = inspect.getsource(prices)
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines, 1) if line.startswith("class Prices"))
    end = next(i for i, line in enumerate(lines, 1) if line.startswith("def _scaled"))
    tree = ast.parse(source)
    dicts = [n for n in ast.walk(tree) if isinstance(n, ast.Dict)]
    checked = 0
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and type(node.value) in (int, float) and start <= node.lineno <= end):
            continue
        if any(t in lines[node.lineno - 1] for t in TAGS):
            checked += 1
            continue
        inside = [d for d in dicts if d.lineno <= node.lineno <= (d.end_lineno or 0)]
        opener = min(d.lineno for d in inside) if inside else node.lineno  # the outermost dict's comment
        window = "\n".join(lines[max(0, opener - 5) : node.lineno])
        assert any(t in window for t in TAGS), f"prices.py:{node.lineno} has no source tag"
        checked += 1
    assert checked >= 60
    assert PRICES_AS_OF.count("-") == 2 and f"bundled price table of {PRICES_AS_OF}" in prices.US_EAST_1.source


def test_the_spot_discount_is_the_regions_own() -> None:
    assert for_region("us-east-1").fargate_spot_discount == 0.682
    assert for_region("eu-west-1").fargate_spot_discount == 0.698
    other = for_region("eu-central-1")  # no sourced figure: us-east-1's, and the estimate says so
    assert other.fargate_spot_discount == SPOT_DISCOUNTS["us-east-1"]
    assert any("Spot discount of eu-central-1 is not in the bundled table" in n for n in other.notes)
    unknown = for_region("sa-east-1")
    assert unknown.fargate_spot_discount == 0.682 and len(unknown.notes) == 2
    cfg = make_config(profile="personal", spot=True)
    est = estimate(cfg, prices=for_region("eu-west-1"))
    web = next(i for i in est.items if i.name.startswith("Fargate Spot: web"))
    assert web.unit_price == pytest.approx(web.on_demand_usd_month / web.quantity * (1 - 0.698))  # type: ignore[operator]
    assert any("69.8% below on-demand in eu-west-1" in a for a in est.assumptions)


def test_internet_egress_is_priced_per_region() -> None:
    assert for_region("us-east-1").data_transfer_out_gb == 0.09
    assert for_region("ap-southeast-1").data_transfer_out_gb == 0.12
    assert for_region("ap-northeast-1").data_transfer_out_gb == 0.114
    cfg = make_config(profile="large")  # 400 GB out: 300 GB billed after the free 100 GB
    for region, per_gb in (("us-east-1", 0.09), ("ap-southeast-1", 0.12)):
        est = estimate(cfg, prices=for_region(region))
        line = next(i for i in est.items if i.name.startswith("Data transfer out"))
        assert line.quantity == 400 and line.usd_month == pytest.approx(400 * per_gb)  # gross
        free = next(i for i in est.credits if i.name.startswith("Always-free tier: data transfer out"))
        assert free.quantity == -100 and free.usd_month == pytest.approx(-100 * per_gb)  # the region's own price


def test_spot_lines_show_their_on_demand_price_and_the_totals_both() -> None:
    est = estimate(make_config(profile="personal", spot=True))
    spot = [i for i in est.items if i.name.startswith("Fargate Spot")]
    assert spot and all(i.on_demand_usd_month is not None for i in spot)
    web = next(i for i in spot if ": web " in i.name)
    assert web.on_demand_usd_month == pytest.approx((0.25 * 0.03238 + 1 * 0.00356) * H)
    assert web.usd_month == pytest.approx((0.25 * 0.03238 + 1 * 0.00356) * H * (1 - 0.682))
    extra = sum(i.on_demand_usd_month - i.usd_month for i in spot)  # type: ignore[operator]
    assert est.total_on_demand_usd_month == pytest.approx(est.total_usd_month + extra)
    on_demand = estimate(make_config(profile="personal", spot=False))
    assert not on_demand.has_spot and on_demand.total_on_demand_usd_month == on_demand.total_usd_month


@pytest.mark.parametrize("term", ["1y", "3y"])
def test_commit_prices_savings_plans_and_rds_reservations_next_to_on_demand(term: str) -> None:
    c = COMMITMENTS[term]
    cfg = make_config(profile="community", spot=False)  # on-demand Fargate: Savings Plans apply
    est = estimate(cfg, commit=term)
    web = next(i for i in est.items if i.name.startswith("Fargate: front"))  # Puma + streaming
    assert web.committed_usd_month == pytest.approx(web.usd_month * (1 - c.fargate_savings_plan))
    rds = next(i for i in est.items if i.name.startswith("RDS PostgreSQL"))
    assert rds.committed_usd_month == pytest.approx(rds.usd_month * (1 - c.rds_reserved))
    storage = next(i for i in est.items if i.name.startswith("RDS gp3 storage"))
    assert storage.committed_usd_month is None  # storage is never reserved
    saved = web.usd_month - web.committed_usd_month  # type: ignore[operator]
    assert est.total_committed_usd_month is not None and est.total_committed_usd_month < est.total_usd_month - saved
    assert est.total_usd_month == pytest.approx(estimate(cfg).total_usd_month)  # on-demand total unchanged
    spot = estimate(make_config(profile="community", spot=True), commit=term)
    assert all(i.committed_usd_month is None for i in spot.items if i.name.startswith("Fargate Spot"))


def test_route53_queries_are_billed_only_without_an_alias_record() -> None:
    cfg = make_config(profile="personal")
    est = estimate(cfg)  # the ALB edge: an alias record, whose queries are free
    assert not any(i.name.startswith("Route 53 queries") for i in est.items)
    assert any("alias record" in a for a in est.assumptions)
    templates = {k: t.to_dict() for k, t in __import__("mastofargate.stack", fromlist=["build"]).build(cfg).items()}
    for res in templates["data"]["Resources"].values():  # the same server with a plain A record (direct edge)
        props = res.get("Properties", {})
        if res["Type"] == "AWS::Route53::RecordSet" and "AliasTarget" in props:
            props.pop("AliasTarget")
            props["ResourceRecords"] = ["192.0.2.1"]
            props["TTL"] = "60"
    for res in templates["app"]["Resources"].values():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::Route53::RecordSet" and "AliasTarget" in props:
            props.pop("AliasTarget")
            props["ResourceRecords"] = ["192.0.2.1"]
    direct = estimate(cfg, templates)
    line = next(i for i in direct.items if i.name.startswith("Route 53 queries"))
    assert line.quantity == 1.0 and line.unit_price == 0.40 and line.usd_month == pytest.approx(0.40)


def test_the_ec2_reference_counts_its_public_ipv4() -> None:
    refs = {r.name: r.usd_month for r in references()}
    assert refs["EC2 setup (blog), as counted"] == EC2_REFERENCE_USD == 22.0
    assert refs["EC2 setup (blog) + public IPv4"] == pytest.approx(22.0 + 0.005 * H)


def _finite(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


@pytest.mark.parametrize("args", [[], ["--commit", "1y"], ["--commit", "3y"], ["--media-gb", "0"]])
def test_json_stays_json(tmp_path: Path, args: list[str]) -> None:
    cfg = tmp_path / "mastofargate.toml"
    cfg.write_text(
        '[server]\ndomain = "social.example.org"\nadmin_email = "a@example.org"\n\n[aws]\nname = "social"\n'
        'region = "ap-southeast-1"\nhosted_zone_id = "Z0123456789EXAMPLE"\n\n[media]\ndomain = "cloudfront"\n'
    )
    result = CliRunner().invoke(app, ["cost", "--json", "-c", str(cfg), *args])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    assert _finite(data) and data["region"] == "ap-southeast-1"
    if args[:1] == ["--commit"]:
        assert data["commitment"]["term"] == args[1]
        assert data["commitment"]["total_usd_month"] < data["total_usd_month"]
        assert any("committed_usd_month" in i for i in data["items"])
    else:
        assert "commitment" not in data


def test_commit_display_and_bad_terms(tmp_path: Path) -> None:
    cfg = tmp_path / "mastofargate.toml"
    cfg.write_text(
        '[server]\ndomain = "social.example.org"\nadmin_email = "a@example.org"\n\n[aws]\nname = "social"\n'
        'region = "us-east-1"\nhosted_zone_id = "Z0123456789EXAMPLE"\n'
    )
    result = CliRunner().invoke(app, ["cost", "--commit", "3y", "-c", str(cfg)], env={"CI": "1"})
    assert result.exit_code == 0, result.output
    assert "[on-demand $" in result.output and "[3y commitment $" in result.output
    assert "Total with every Spot task on on-demand Fargate" in result.output
    assert "Total with a 3y commitment" in result.output
    for bad in (["--commit", "5y"], ["--commit", "1y", "--compare"], ["--commit", "1y", "--diff", "HEAD"]):
        done = subprocess.run(
            [sys.executable, "-m", "mastofargate", "cost", *bad, "-c", str(cfg)], capture_output=True, text=True
        )
        assert done.returncode == 2, (bad, done.stderr)
        assert "Traceback" not in done.stderr and "--commit" in done.stderr
    assert "'5y' is not a commitment term; allowed: 1y, 3y" in CliRunner().invoke(
        app, ["cost", "--commit", "5y", "-c", str(cfg)]
    ).output.replace("\n", " ").replace("  ", " ")


# ------------------------------------------------------------------------------------------- community cheaper


def test_elasticache_defaults_to_valkey_at_its_price() -> None:
    cfg = make_config(profile="community")
    assert cfg.elasticache.engine == "valkey"
    line = next(i for i in estimate(cfg).items if i.name.startswith("ElastiCache"))
    assert line.name == "ElastiCache valkey cache.t4g.micro"
    assert line.unit_price == pytest.approx(0.016 * (1 - 0.20) * H)  # 20 % below Redis OSS's $0.016/h


@pytest.mark.parametrize("throughput", ["bursting", "elastic"])
def test_efs_throughput_mode_its_alarm_and_its_price(throughput: str) -> None:
    from mastofargate.stack import build

    cfg = make_config({"efs": {"throughput": throughput}}, profile="community", database="task", cache="task")
    templates = {k: t.to_dict() for k, t in build(cfg).items()}
    fs = templates["data"]["Resources"]["FileSystem"]["Properties"]
    assert fs["ThroughputMode"] == throughput
    alarm = templates["app"]["Resources"].get("EfsBurstCreditAlarm")
    items = [i.name for i in estimate(cfg, templates).items]
    if throughput == "bursting":
        assert alarm is not None
        props = alarm["Properties"]
        assert props["MetricName"] == "BurstCreditBalance" and props["Namespace"] == "AWS/EFS"
        assert props["Threshold"] == 1024**4 and props["ComparisonOperator"] == "LessThanThreshold"
        assert props["Dimensions"] == [
            {"Name": "FileSystemId", "Value": {"Fn::ImportValue": "social-data:FileSystemId"}}
        ]
        assert 'throughput = "elastic"' in props["AlarmDescription"]
        assert not any("Elastic Throughput" in n for n in items)  # no per-GB I/O charge
    else:
        assert alarm is None
        assert any(n.startswith("EFS Elastic Throughput writes") for n in items)


def test_no_efs_alarm_without_a_file_system() -> None:
    from mastofargate.stack import build

    app = build(make_config(profile="community", database="rds", cache="elasticache"))["app"].to_dict()
    assert "EfsBurstCreditAlarm" not in app["Resources"]
