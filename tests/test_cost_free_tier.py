"""AWS's always-free tiers in `mastofargate cost`: every gross line stays as it is, each allowance some line
draws on becomes one credit line that never exceeds the lines it offsets (nor makes a total negative), and
`--no-free-tier` prices everything gross, with JSON totals that add up either way. Hand arithmetic uses the
bundled table's literals (us-east-1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from typer.testing import CliRunner

from mastofargate.cli import app
from mastofargate.cost import (
    CHARGE,
    FREE_TIER_CREDIT,
    USAGE,
    FreeTierError,
    LineItem,
    _apply_free_tier,
    _Walk,
    compare,
    dashboard_metrics,
    estimate,
)
from mastofargate.prices import ALWAYS_FREE, for_region
from mastofargate.stack import build
from tests.conftest import COMBINATIONS, combo_config, combo_id, make_config

ALLOWANCES = {a.key: a for a in ALWAYS_FREE}


def _check_credits(est: Any) -> None:
    """Each credit: negative, in its allowance's unit, at most the allowance and at most what its lines cost."""
    by_name = {i.name: i for i in est.charges}
    assert len({i.name for i in est.charges}) == len(est.charges), "charge names are unique (credits name them)"
    for credit in est.credits:
        offsets = [by_name[n] for n in credit.offsets]
        assert offsets, credit.name
        allowance = ALLOWANCES[offsets[0].free_tier]
        assert all(i.free_tier == allowance.key and i.unit == credit.unit == allowance.unit for i in offsets)
        assert credit.usd_month <= 0 and credit.quantity < 0
        assert -credit.quantity <= allowance.quantity + 1e-9
        assert -credit.quantity <= sum(i.quantity for i in offsets) + 1e-9
        assert -credit.usd_month <= sum(i.usd_month for i in offsets) + 1e-9
        assert credit.committed_usd_month is None and credit.on_demand_usd_month is None
        assert not any(i.commit_class for i in offsets), "a credit never offsets a line a commitment discounts"
    # one credit per allowance, and one for every allowance a line draws on
    drawn = {i.free_tier for i in est.charges if i.free_tier and i.quantity > 0}
    assert sorted(by_name[c.offsets[0]].free_tier for c in est.credits) == sorted(drawn)


@pytest.mark.parametrize("combo", COMBINATIONS, ids=combo_id)
def test_credits_never_exceed_what_they_offset_nor_make_a_total_negative(combo: Any) -> None:
    cfg = combo_config(combo)
    templates = build(cfg)
    net = estimate(cfg, templates)
    gross = estimate(cfg, templates, free_tier=False)
    _check_credits(net)
    assert net.credits and not gross.credits
    assert all(i.kind == CHARGE for i in gross.items)
    # the gross lines are the same lines either way: the switch only adds or drops the credits
    assert [(i.name, i.usd_month) for i in net.charges] == [(i.name, i.usd_month) for i in gross.items]
    assert 0 < net.total_usd_month < gross.total_usd_month
    assert net.total_without_free_tier_usd_month == pytest.approx(gross.total_usd_month)
    assert net.total_usd_month == pytest.approx(gross.total_usd_month + net.free_tier_usd_month)
    assert net.total_on_demand_without_free_tier_usd_month == pytest.approx(gross.total_on_demand_usd_month)
    assert 0 < net.total_on_demand_usd_month <= gross.total_on_demand_usd_month
    assert gross.free_tier_usd_month == 0 and gross.total_without_free_tier_usd_month == gross.total_usd_month


def test_a_small_use_is_credited_only_as_far_as_it_goes_and_a_large_one_only_up_to_the_allowance() -> None:
    """Community (5 GB of logs: exactly the allowance, 3 million CloudFront requests) and large (400 GB out,
    16 million CloudFront requests, 500,000 KMS requests, 30 GB of logs): hand arithmetic."""
    community = estimate(make_config(profile="community"))
    logs = next(i for i in community.credits if i.name.startswith("Always-free tier: CloudWatch Logs ingestion"))
    assert logs.usd_month == pytest.approx(-5 * 0.50) and "(all 5 GB; 5 GB free a month)" in logs.name
    requests = next(i for i in community.credits if i.name.startswith("Always-free tier: CloudFront requests"))
    assert requests.usd_month == pytest.approx(-300 * 0.01)
    large = estimate(make_config(profile="large"))

    def credit(prefix: str) -> LineItem:
        return next(i for i in large.credits if i.name.startswith(f"Always-free tier: {prefix}"))

    assert credit("data transfer out").usd_month == pytest.approx(-100 * 0.09)
    assert "(100 of 400 GB; 100 GB free a month)" in credit("data transfer out").name
    assert credit("CloudFront requests").usd_month == pytest.approx(-1000 * 0.01)  # 10 of 16 million
    assert credit("CloudFront data transfer out").usd_month == pytest.approx(-800 * 0.085)  # within 1 TB
    assert credit("KMS requests").usd_month == pytest.approx(-2 * 0.03)
    assert credit("CloudWatch Logs ingestion").usd_month == pytest.approx(-5 * 0.50)
    # the gross lines stay whole
    out = next(i for i in large.charges if i.name.startswith("Data transfer out"))
    assert out.usd_month == pytest.approx(400 * 0.09)


def test_credits_are_taken_at_each_lines_own_price_in_a_region_that_costs_more() -> None:
    est = estimate(make_config(profile="community"), prices=for_region("ap-northeast-1"))
    logs = next(i for i in est.credits if i.name.startswith("Always-free tier: CloudWatch Logs ingestion"))
    assert logs.usd_month == pytest.approx(-5 * 0.50 * 1.52)  # logs cost x1.52 in Tokyo; the allowance is 5 GB
    assert logs.unit_price == pytest.approx(0.50 * 1.52)


def test_high_resolution_alarms_never_draw_on_the_free_alarms() -> None:
    cfg = make_config(profile="personal")
    templates: dict[str, Any] = {k: t.to_dict() for k, t in build(cfg).items()}
    alarms = [r for r in templates["app"]["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    for alarm in alarms:
        alarm["Properties"]["Period"] = 10
    est = estimate(cfg, templates)
    assert any(i.name.startswith("CloudWatch high-resolution alarms") for i in est.charges)
    standard = sum(i.quantity for i in est.charges if i.name == "CloudWatch alarms")
    credit = [i for i in est.credits if i.name.startswith("Always-free tier: CloudWatch alarms")]
    assert sum(-i.quantity for i in credit) == min(10, standard)  # only the other stacks' standard alarms


def test_a_dashboard_is_free_only_up_to_50_metrics() -> None:
    cfg = make_config(profile="large")
    templates: dict[str, Any] = {k: t.to_dict() for k, t in build(cfg).items()}
    props = templates["app"]["Resources"]["Dashboard"]["Properties"]
    metrics = dashboard_metrics(props["DashboardBody"])
    assert 5 < metrics <= 50  # every service's CPU and memory, errors, the backlog, the database, the cache
    est = estimate(cfg, templates)
    assert usd_of(est, f"CloudWatch dashboard social ({metrics} metrics)") == pytest.approx(3.00)
    assert usd_of(est, "Always-free tier: CloudWatch dashboards (all 1 dashboard;") == pytest.approx(-3.00)
    sub = props["DashboardBody"]["Fn::Sub"]
    body = json.loads(sub[0] if isinstance(sub, list) else sub)
    body["widgets"][0]["properties"]["metrics"] *= 60  # a dashboard of far more than 50 metrics
    if isinstance(sub, list):
        sub[0] = json.dumps(body)
    else:
        props["DashboardBody"]["Fn::Sub"] = json.dumps(body)
    big = estimate(cfg, templates)
    assert not any(i.name.startswith("Always-free tier: CloudWatch dashboards") for i in big.credits)
    assert any("more than the 50 a free dashboard may hold" in a for a in big.assumptions)


def usd_of(est: Any, prefix: str) -> float:
    found = [i for i in est.items if i.name.startswith(prefix)]
    assert len(found) == 1, (prefix, [i.name for i in est.items])
    return float(found[0].usd_month)


def test_a_credit_for_a_line_under_a_commitment_or_in_another_unit_is_refused() -> None:
    """The rule that keeps a Savings Plan from discounting a credit raises (never an assert)."""
    cfg = make_config(profile="personal")
    for bad in (
        LineItem("Fargate: web", 1, "task-month", 10.0, 10.0, commit_class="fargate", free_tier="data_transfer_out"),
        LineItem("Odd egress", 1, "TB", 90.0, 90.0, free_tier="data_transfer_out"),
        LineItem("Spot egress", 1, "GB", 0.03, 0.03, on_demand_usd_month=0.09, free_tier="data_transfer_out"),
    ):
        w = _Walk({}, cfg, for_region("us-east-1"), USAGE["personal"], None, items=[bad])
        with pytest.raises(FreeTierError, match="cannot take the always-free data transfer out"):
            _apply_free_tier(w)


@pytest.mark.parametrize("term", ["1y", "3y"])
def test_a_commitment_discounts_charges_never_credits(term: str) -> None:
    cfg = make_config(profile="community", spot=False)
    est = estimate(cfg, commit=term)
    _check_credits(est)
    committed = est.total_committed_usd_month
    assert committed is not None
    savings = sum(i.usd_month - i.committed_usd_month for i in est.items if i.committed_usd_month is not None)
    assert committed == pytest.approx(est.total_usd_month - savings)
    gross = estimate(cfg, commit=term, free_tier=False)
    assert gross.total_committed_usd_month == pytest.approx(gross.total_usd_month - savings)  # same savings


def _json(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["cost", "--json", *args])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_json_carries_both_totals_and_they_add_up(tmp_path: Any) -> None:
    cfg = tmp_path / "mastofargate.toml"
    cfg.write_text(
        '[server]\ndomain = "social.example.org"\nadmin_email = "a@example.org"\n\n[aws]\nname = "social"\n'
        'region = "us-east-1"\nhosted_zone_id = "Z0123456789EXAMPLE"\n\n[deployment]\nprofile = "personal"\n'
        'database = "task"\ncache = "task"\nedge = "direct"\nlayout = "one-task"\n'
    )
    net = _json("-c", str(cfg))
    gross = _json("-c", str(cfg), "--no-free-tier")
    kinds = {i["kind"] for i in net["items"]}
    assert kinds == {CHARGE, FREE_TIER_CREDIT}
    credits = [i for i in net["items"] if i["kind"] == FREE_TIER_CREDIT]
    charges = [i for i in net["items"] if i["kind"] == CHARGE]
    assert all(i["usd_month"] <= 0 and i["offsets"] for i in credits)
    assert net["free_tier"]["applied"] is True and "always-free" in net["free_tier"]["basis"]
    allowances = net["free_tier"]["allowances"]
    assert len(allowances) == len(credits) and all(a["source"] and a["free_per_month"] > 0 for a in allowances)
    assert {"name": "CloudWatch alarms", "free_per_month": 10.0, "unit": "alarm-month"}.items() <= next(
        a for a in allowances if a["name"] == "CloudWatch alarms"
    ).items()
    # totals add up to the cent-rounding of their lines
    assert net["total_usd_month"] == pytest.approx(sum(i["usd_month"] for i in net["items"]), abs=0.05)
    assert net["total_without_free_tier_usd_month"] == pytest.approx(sum(i["usd_month"] for i in charges), abs=0.05)
    assert net["free_tier"]["usd_month"] == pytest.approx(sum(i["usd_month"] for i in credits), abs=0.05)
    assert net["total_usd_month"] == pytest.approx(
        net["total_without_free_tier_usd_month"] + net["free_tier"]["usd_month"], abs=0.011
    )
    assert net["total_on_demand_usd_month"] == pytest.approx(
        net["total_on_demand_without_free_tier_usd_month"] + net["free_tier"]["usd_month"], abs=0.011
    )
    # the switch: no credit line, every total gross, and the gross totals the default run reported
    assert {i["kind"] for i in gross["items"]} == {CHARGE}
    assert gross["free_tier"] == {
        "applied": False,
        "usd_month": 0,
        "basis": gross["free_tier"]["basis"],
        "allowances": [],
    }
    assert "--no-free-tier" in gross["free_tier"]["basis"]
    assert (
        gross["total_usd_month"]
        == gross["total_without_free_tier_usd_month"]
        == net["total_without_free_tier_usd_month"]
    )
    assert gross["total_on_demand_usd_month"] == net["total_on_demand_without_free_tier_usd_month"]
    assert any("every line is gross" in a for a in gross["assumptions"])
    assert any("once per organization with consolidated billing" in a for a in net["assumptions"])


def test_text_output_shows_the_credits_and_both_totals(tmp_path: Any) -> None:
    cfg = tmp_path / "mastofargate.toml"
    cfg.write_text(
        '[server]\ndomain = "social.example.org"\nadmin_email = "a@example.org"\n\n[aws]\nname = "social"\n'
        'hosted_zone_id = "Z0123456789EXAMPLE"\n'
    )
    out = CliRunner().invoke(app, ["cost", "-c", str(cfg)], env={"CI": "1"}).stdout
    assert "after AWS's always-free tiers" in out.splitlines()[0]
    assert "Always-free tier: CloudWatch alarms (10 of " in out and "Total without the always-free tiers" in out
    gross = CliRunner().invoke(app, ["cost", "-c", str(cfg), "--no-free-tier"], env={"CI": "1"}).stdout
    assert "gross, without the always-free tiers" in gross.splitlines()[0]
    assert "Always-free tier" not in gross and "Total without the always-free tiers" not in gross


def test_compare_states_its_basis_and_honours_the_switch(tmp_path: Any) -> None:
    cfg = tmp_path / "mastofargate.toml"
    cfg.write_text(
        '[server]\ndomain = "social.example.org"\nadmin_email = "a@example.org"\n\n[aws]\nname = "social"\n'
        'hosted_zone_id = "Z0123456789EXAMPLE"\n'
    )
    net = _json("--compare", "-c", str(cfg))
    gross = _json("--compare", "-c", str(cfg), "--no-free-tier")
    assert net["free_tier"]["applied"] is True and gross["free_tier"]["applied"] is False
    for a, b in zip(net["combinations"], gross["combinations"], strict=True):
        assert a["total_usd_month"] < b["total_usd_month"] == b["total_without_free_tier_usd_month"]
        assert a["total_without_free_tier_usd_month"] == b["total_usd_month"]
        assert sum(a["by_category"].values()) == pytest.approx(a["total_usd_month"], abs=0.05)
    text = CliRunner().invoke(app, ["cost", "--compare", "-c", str(cfg)], env={"CI": "1"}).stdout
    assert "after AWS's always-free tiers" in text.splitlines()[0] and "Totals are net of AWS's always-free" in text
    text = CliRunner().invoke(app, ["cost", "--compare", "--no-free-tier", "-c", str(cfg)], env={"CI": "1"}).stdout
    assert "gross, without the always-free tiers" in text.splitlines()[0]
    assert "Totals are gross (--no-free-tier or [cost] free_tier = false)" in text
    rows = compare(make_config(profile="personal"), free_tier=False)
    assert all(r.estimate is None or not r.estimate.credits for r in rows)


def test_every_allowance_is_drawn_on_by_some_shape_and_every_tag_names_one() -> None:
    """No stale row in the table, no line tagged with an allowance that does not exist."""
    drawn: set[str] = set()
    for combo in COMBINATIONS[::7] + [c for c in COMBINATIONS if c[5] == "direct"]:
        est = estimate(combo_config(combo))
        tags = {i.free_tier for i in est.charges if i.free_tier}
        assert tags <= set(ALLOWANCES), tags - set(ALLOWANCES)
        drawn |= tags
    assert drawn == set(ALLOWANCES)


SHARED = (
    '[server]\ndomain = "social.example.org"\nadmin_email = "a@example.org"\n\n[aws]\nname = "social"\n'
    'hosted_zone_id = "Z0123456789EXAMPLE"\n\n[cost]\nfree_tier = {value}\n'
)


def test_a_shared_account_says_so_once_in_the_config(tmp_path: Any) -> None:
    """[cost] free_tier = false: `cost`, `--compare` and synth's one line are gross without the flag, and
    --free-tier still asks for the net bill for one run."""
    cfg = tmp_path / "mastofargate.toml"
    cfg.write_text(SHARED.format(value="false"))
    gross = _json("-c", str(cfg))
    assert gross["free_tier"]["applied"] is False and not any(i["kind"] == FREE_TIER_CREDIT for i in gross["items"])
    net = _json("-c", str(cfg), "--free-tier")
    assert net["free_tier"]["applied"] is True and net["total_without_free_tier_usd_month"] == gross["total_usd_month"]
    assert _json("--compare", "-c", str(cfg))["free_tier"]["applied"] is False
    synth = CliRunner().invoke(app, ["synth", "-c", str(cfg), "-o", str(tmp_path / "out")])
    assert synth.exit_code == 0, synth.output
    assert f"Estimated cost: ${gross['total_usd_month']:,.2f}/month (" in synth.output
    assert "gross, no free tier;" in synth.output


def test_a_bad_free_tier_setting_is_a_usage_error_naming_it(tmp_path: Any) -> None:
    cfg = tmp_path / "mastofargate.toml"
    cfg.write_text(SHARED.format(value='"no"'))
    result = subprocess.run(
        [sys.executable, "-m", "mastofargate", "cost", "-c", str(cfg)],
        capture_output=True,
        text=True,
        env={**os.environ, "CI": "1"},
    )
    assert result.returncode == 2, result.stderr
    assert "cost.free_tier: 'no' is not valid" in result.stderr and "allowed: true or false" in result.stderr
    assert "Traceback" not in result.stderr and not result.stdout
