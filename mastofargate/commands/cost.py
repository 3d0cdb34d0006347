"""`mastofargate cost`: the monthly bill of what `synth` would generate, before it exists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption

if TYPE_CHECKING:
    from mastofargate.config import Config
    from mastofargate.cost import Combination, Estimate, Reference
    from mastofargate.prices import Prices


MAX_MEDIA_GB = 1_000_000.0  # a petabyte: far beyond any server this tool sizes, and keeps every total finite


def _media_gb(value: float | None) -> float | None:
    """--media-gb must be a finite, non-negative number: 'inf' printed '$ inf' and 'nan' made --json emit
    NaN/Infinity, which is not JSON."""
    import math

    if value is not None and not (math.isfinite(value) and 0 <= value <= MAX_MEDIA_GB):
        raise typer.BadParameter(f"{value!r} is not a size in GB; allowed: a number from 0 to {MAX_MEDIA_GB:,.0f}")
    return value


def _commit(value: str | None) -> str | None:
    """--commit names a term the price table prices (prices.COMMITMENTS)."""
    from mastofargate.prices import COMMITMENTS

    if value is not None and value not in COMMITMENTS:
        raise typer.BadParameter(f"{value!r} is not a commitment term; allowed: {', '.join(COMMITMENTS)}")
    return value


def cost(
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="Print the estimate as JSON.")] = False,
    compare_all: Annotated[
        bool,
        typer.Option("--compare", help="Every profile x database x cache x spot choice, with reference points."),
    ] = False,
    media_gb: Annotated[
        float | None,
        typer.Option("--media-gb", callback=_media_gb, help="Media stored in S3, GB (default: the profile's)."),
    ] = None,
    live: Annotated[
        bool, typer.Option("--live", help="Current prices from the AWS Price List API (needs AWS credentials).")
    ] = False,
    diff_ref: Annotated[
        str | None,
        typer.Option("--diff", metavar="REF", help="Compare with the templates committed at git REF (changed lines)."),
    ] = None,
    commit: Annotated[
        str | None,
        typer.Option(
            "--commit",
            metavar="1y|3y",
            callback=_commit,
            help="Also price a Compute Savings Plan (Fargate) and RDS reservations, no upfront, for 1 or 3 years.",
        ),
    ] = None,
    free_tier: Annotated[
        bool | None,
        typer.Option(
            "--free-tier/--no-free-tier",
            show_default=False,
            help="Take AWS's always-free allowances (100 GB out, CloudFront, CloudWatch, Lambda, KMS) off as credit "
            "lines: right for an account that runs only this server. --no-free-tier prices every line gross, for an "
            "account or organization other workloads share. Default: the config's [cost] free_tier (true).",
        ),
    ] = None,
) -> None:
    """Estimate the monthly AWS bill, line by line, from the generated templates (no AWS calls unless --live)."""
    if diff_ref is not None:
        from mastofargate.errors import UsageError

        if compare_all or live or commit:
            raise UsageError(
                "--diff cannot be combined with --compare, --live or --commit", fix="pass --diff REF alone"
            )
        _print_diff(config, diff_ref, media_gb, as_json, free_tier)
        return
    from mastofargate.config import load_config
    from mastofargate.cost import compare, estimate
    from mastofargate.prices import for_region
    from mastofargate.stack import build_all as build

    if compare_all and commit:
        from mastofargate.errors import UsageError

        raise UsageError(
            "--commit cannot be combined with --compare",
            fix="run 'mastofargate cost --commit 1y' for one configuration",
        )
    cfg = load_config(config)
    free_tier = cfg.cost.free_tier if free_tier is None else free_tier
    prices = for_region(cfg.aws.region)
    templates = None if compare_all else build(cfg)
    if live:
        prices = _live(cfg, prices, templates)
    if compare_all:
        rows = compare(cfg, media_gb=media_gb, prices=prices, free_tier=free_tier)
        _print_compare(cfg, rows, prices, as_json, free_tier)
        return
    est = estimate(cfg, templates, media_gb=media_gb, prices=prices, commit=commit, free_tier=free_tier)
    if as_json:
        typer.echo(json.dumps(est.to_json(), indent=2))
    else:
        _print_estimate(cfg, est)


def _live(cfg: Config, prices: Prices, templates: object) -> Prices:
    """Bundled prices replaced by the Price List API's where it answers; a message either way (stderr)."""
    from mastofargate.cost import combination_configs, instance_types
    from mastofargate.prices import fetch_live
    from mastofargate.ui import err_console, warn

    if templates is not None:
        rds, cache = instance_types(templates)  # type: ignore[arg-type]
    else:  # --compare: every profile's classes
        configs = [c for _, c in combination_configs(cfg) if not isinstance(c, str)]
        rds = {c.rds_instance_class for c in configs if c.deployment.database == "rds"}
        cache = {(c.cache_node_type, c.elasticache.engine) for c in configs if c.deployment.cache == "elasticache"}
    live_prices, message = fetch_live(prices, rds, cache)
    if live_prices is prices:
        warn(message)
    else:
        err_console().print(message, markup=False, highlight=False)
    return live_prices


# ---------------------------------------------------------------------------------------- one estimate


def _headline(cfg: Config, est: Estimate) -> str:
    d = cfg.deployment
    basis = "after AWS's always-free tiers" if est.free_tier else "gross, without the always-free tiers"
    return (
        f"Monthly cost estimate for {cfg.server.domain} ({d.profile}, {d.database} Postgres, {d.cache} Redis, "
        f"{d.arch}, {'Spot' if d.spot else 'on-demand'}) in {est.region}, {basis}"
    )


def _totals(est: Estimate) -> list[str]:
    """The closing lines: the total, the same without the free-tier credits (what a shared account pays), the
    same on on-demand when Spot is used, and the committed total."""
    lines = [f"  ${est.total_usd_month:8.2f}  Total per month"]
    if est.credits:
        lines.append(
            f"  ${est.total_without_free_tier_usd_month:8.2f}  Total without the always-free tiers (an account other "
            "workloads share: --no-free-tier)"
        )
    if est.has_spot:
        lines.append(
            f"  ${est.total_on_demand_usd_month:8.2f}  Total with every Spot task on on-demand Fargate (what the Spot "
            "fallback costs while Spot has no capacity)"
        )
    committed = est.total_committed_usd_month
    if est.commitment is not None and committed is not None:
        lines.append(
            f"  ${committed:8.2f}  Total with a {est.commitment.term} commitment ({est.commitment.note}): "
            f"saves ${est.total_usd_month - committed:,.2f}/month"
        )
    return lines


def _print_estimate(cfg: Config, est: Estimate) -> None:
    from mastofargate.ui import console, is_ci

    term = est.commitment.term if est.commitment else ""
    if is_ci():
        lines = [_headline(cfg, est)]
        for i in est.items:
            extra = ""
            if i.on_demand_usd_month is not None:
                extra += f" [on-demand ${i.on_demand_usd_month:,.2f}]"
            if i.committed_usd_month is not None:
                extra += f" [{term} commitment ${i.committed_usd_month:,.2f}]"
            lines.append(
                f"  ${i.usd_month:8.2f}  {i.name}  ({i.quantity:,.4g} {i.unit} x ${i.unit_price:,.4f}){extra}".rstrip()
            )
        lines += _totals(est)
    else:
        from rich.table import Table

        table = Table(title=_headline(cfg, est), title_justify="left", show_footer=True)
        table.add_column("Item", footer="Total per month")
        table.add_column("Quantity", justify="right")
        table.add_column("Unit price", justify="right")
        table.add_column("$/month", justify="right", footer=f"{est.total_usd_month:,.2f}")
        if est.has_spot:
            table.add_column("On-demand", justify="right", footer=f"{est.total_on_demand_usd_month:,.2f}")
        committed = est.total_committed_usd_month
        if committed is not None:
            table.add_column(f"{term} commitment", justify="right", footer=f"{committed:,.2f}")
        for i in est.items:
            if est.credits and i is est.credits[0]:
                table.add_section()  # the gross lines above, the always-free credits below
            row = [i.name, f"{i.quantity:,.4g} {i.unit}", f"${i.unit_price:,.4f}", f"{i.usd_month:,.2f}"]
            if est.has_spot:
                row.append("" if i.on_demand_usd_month is None else f"{i.on_demand_usd_month:,.2f}")
            if committed is not None:
                row.append("" if i.committed_usd_month is None else f"{i.committed_usd_month:,.2f}")
            table.add_row(*row)
        console().print(table)
        lines = _totals(est)[1:]
    lines.append("Assumptions:")
    lines += [f"  {n}. {a}" for n, a in enumerate(est.assumptions, 1)]
    lines.append(f"Prices as of {est.prices_as_of} ({est.region}). An estimate, not a quote: check the AWS bill.")
    for line in lines:
        console().print(line, markup=False, highlight=False)


# ---------------------------------------------------------------------------------------- --diff


def _print_diff(config: Path, ref: str, media_gb: float | None, as_json: bool, free_tier: bool | None) -> None:
    from mastofargate.costdiff import diff
    from mastofargate.ui import console

    d = diff(config, ref, media_gb=media_gb, free_tier=free_tier)
    if as_json:
        typer.echo(json.dumps(d.to_json(), indent=2))
        return

    def money(x: float | None) -> str:
        return "-" if x is None else f"${x:,.2f}"

    def signed(x: float) -> str:
        return f"{'+' if x >= 0 else '-'}${abs(x):,.2f}"

    rows = []
    for ln in d.lines:
        if ln.base_name:
            rows.append((f"{ln.base_name} ->", "", "", ""))
        rows.append((ln.name, money(ln.base_usd_month), money(ln.head_usd_month), signed(ln.delta)))
    rows.append(("Total per month", money(d.base_total), money(d.head_total), signed(d.delta)))
    head = ("Line", ref, "working tree", "change")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    basis = "after AWS's always-free tiers" if d.free_tier else "gross, without the always-free tiers"
    out = [f"Monthly cost: {ref} -> working tree (prices as of {d.prices_as_of}, {basis})"]
    if not d.lines:
        out.append("  no line of the estimate changes")
    for r in [head, *rows]:
        out.append(
            "  " + r[0].ljust(widths[0]) + "  " + "  ".join(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))
        )
    for line in out:
        console().print(line, markup=False, highlight=False)


# ---------------------------------------------------------------------------------------- --compare

_COLUMNS = ("profile", "database", "cache", "spot", "total", "fargate", "ipv4", "alb", "data", "other")


def _print_compare(cfg: Config, rows: list[Combination], prices: Prices, as_json: bool, free_tier: bool) -> None:
    from mastofargate.cost import cheapest, references

    refs = references(prices)
    best = cheapest(rows)
    if as_json:
        typer.echo(json.dumps(_compare_json(rows, refs, best, prices, free_tier), indent=2))
        return
    from mastofargate.ui import console, is_ci

    basis = "after AWS's always-free tiers" if free_tier else "gross, without the always-free tiers"
    title = (
        f"Monthly cost of every choice for {cfg.server.domain} ({cfg.deployment.arch}, {prices.region}, "
        f"prices as of {prices.as_of}, {basis})"
    )
    table_rows = []
    for r in rows:
        cats = r.categories()
        total = f"{r.estimate.total_usd_month:,.2f}" if r.estimate else "invalid"
        mark = "cheapest " + r.profile if best.get(r.profile) is r else r.error
        table_rows.append(
            [
                r.profile,
                r.database,
                r.cache,
                "Spot" if r.spot else "on-demand",
                total,
                *(f"{cats[k]:,.2f}" if r.estimate else "" for k in ("fargate", "ipv4", "alb", "data", "other")),
                mark,
            ]
        )
    headers = ["Profile", "Postgres", "Redis", "Capacity", "$/month", "Fargate", "IPv4", "ALB", "Data", "Other", ""]
    if is_ci():
        widths = [max(len(str(x)) for x in col) for col in zip(headers, *table_rows, strict=True)]
        out = [title, "  ".join(h.ljust(wd) for h, wd in zip(headers, widths, strict=True)).rstrip()]
        for row in table_rows:
            out.append("  ".join(str(c).ljust(wd) for c, wd in zip(row, widths, strict=True)).rstrip())
        for line in out:
            console().print(line, markup=False, highlight=False)
    else:
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for h in headers:
            table.add_column(
                h, justify="right" if h in ("$/month", "Fargate", "IPv4", "ALB", "Data", "Other") else "left"
            )
        for row in table_rows:
            table.add_row(*row)
        console().print(table)
    lines = ["Reference points:"]
    lines += [f"  ${ref.usd_month:8.2f}  {ref.name}: {ref.note}" for ref in refs]
    lines.append(
        "Columns: Fargate = service and scheduled tasks; IPv4 = public addresses of tasks and the load balancer; "
        "ALB = load balancer hours and LCUs; Data = RDS, ElastiCache, EFS; Other = S3, backups, logs, alarms, "
        "KMS, secrets, DNS, egress. Run 'mastofargate cost' for one configuration's lines and assumptions."
    )
    from mastofargate.cost import FREE_TIER_BASIS, NO_FREE_TIER_BASIS

    lines.append(
        f"Totals are {FREE_TIER_BASIS if free_tier else NO_FREE_TIER_BASIS}"
        + ("; 'Other' is net of the credits (--no-free-tier: gross)." if free_tier else ".")
        + " The reference points are as their sources count them."
    )
    for line in lines:
        console().print(line, markup=False, highlight=False)


def _compare_json(
    rows: list[Combination], refs: list[Reference], best: dict[str, Combination], prices: Prices, free_tier: bool
) -> dict[str, object]:
    from mastofargate.cost import FREE_TIER_BASIS, NO_FREE_TIER_BASIS

    return {
        "prices_as_of": prices.as_of,
        "region": prices.region,
        "free_tier": {"applied": free_tier, "basis": FREE_TIER_BASIS if free_tier else NO_FREE_TIER_BASIS},
        "combinations": [
            {
                "profile": r.profile,
                "database": r.database,
                "cache": r.cache,
                "spot": r.spot,
                "total_usd_month": round(r.estimate.total_usd_month, 2) if r.estimate else None,
                "total_without_free_tier_usd_month": (
                    round(r.estimate.total_without_free_tier_usd_month, 2) if r.estimate else None
                ),
                "by_category": {k: round(v, 2) for k, v in r.categories().items()} if r.estimate else None,
                "cheapest_for_profile": best.get(r.profile) is r,
                "error": r.error or None,
            }
            for r in rows
        ],
        "reference_points": [{"name": f.name, "usd_month": round(f.usd_month, 2), "note": f.note} for f in refs],
    }


def register(app: typer.Typer) -> None:
    app.command("cost")(cost)
