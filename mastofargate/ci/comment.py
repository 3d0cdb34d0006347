"""The pull-request comment of the review workflow: the plan's summary and the monthly cost difference.

Two plain-data inputs, so the comment can be rendered from files the CI steps wrote:
  - the plan summary, `plan_summary(plans)` of the deploy layer's `stacks.Plan` objects (what
    `mastofargate plan --summary-json FILE` writes);
  - the cost difference, `mastofargate cost --diff REF --json` (mastofargate.costdiff.CostDiff.to_json()).
The first line is an HTML comment naming the server: the workflow finds its earlier comment by it and
edits that one, so a pull request carries one comment however often it is pushed to.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# GitHub refuses comments over 65,536 characters; long change lists are cut well before that.
MAX_CHANGE_ROWS = 200
_SIGN = {"Add": "+", "Modify": "~", "Remove": "-"}


def marker(name: str) -> str:
    return f"<!-- mastofargate:plan {name} -->"


def plan_summary(plans: Iterable[Any], images: str | None = None) -> dict[str, Any]:
    """Plain data of the deploy layer's plans (objects with stack, kind, note, deferred and changes of
    action, logical_id, resource_type, replacement, description, data_kind, loses_data)."""
    return {
        "stacks": [
            {
                "stack": p.stack,
                "kind": p.kind,
                "note": p.note,
                "deferred": bool(p.deferred),
                "changes": [
                    {
                        "action": c.action,
                        "logical_id": c.logical_id,
                        "resource_type": c.resource_type,
                        "replacement": c.replacement,
                        "description": c.description,
                        "data_kind": c.data_kind,
                        "loses_data": bool(c.loses_data),
                    }
                    for c in p.changes
                ],
            }
            for p in plans
        ],
        "images": images,
    }


def _cell(text: object) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def _money(x: float | None) -> str:
    return "—" if x is None else f"${x:,.2f}"


def _delta(x: float) -> str:
    return f"{'+' if x >= 0 else '−'}${abs(x):,.2f}"


def _stack_lines(stack: dict[str, Any]) -> list[str]:
    name, changes = stack["stack"], stack["changes"]
    note = f" ({stack['note']})" if stack.get("note") else ""
    if stack.get("deferred"):
        return [f"**{name}**: planned during the deploy{note}", ""]
    if not changes:
        return [f"**{name}**: no changes{note}", ""]
    n = {a: sum(1 for c in changes if c["action"] == a) for a in ("Add", "Modify", "Remove")}
    new = "new stack, " if stack.get("kind") == "CREATE" else ""
    lines = [f"**{name}**: {new}{n['Add']} added, {n['Modify']} modified, {n['Remove']} removed{note}", ""]
    for c in (c for c in changes if c.get("loses_data")):
        verb = "removed" if c["action"] == "Remove" else "replaced"
        maybe = " (CloudFormation says it may be)" if c.get("replacement") == "Conditional" else ""
        lines.append(
            f"> **⚠️ Data loss: {c['logical_id']} ({_cell(c.get('data_kind') or '')}) would be {verb}{maybe}.**"
        )
    if any(c.get("loses_data") for c in changes):
        lines.append("")
    lines += ["| | Resource | Type | Replacement | What it is |", "|---|---|---|---|---|"]
    for c in changes[:MAX_CHANGE_ROWS]:
        replacement = {"True": "replaced", "Conditional": "may be replaced"}.get(c.get("replacement") or "", "")
        resource = f"`{c['logical_id']}`"
        if c.get("loses_data"):
            resource, replacement = f"**{resource}**", f"**{replacement or 'removed'}**"
        lines.append(
            f"| {_SIGN.get(c['action'], '?')} | {resource} | {_cell(c['resource_type'])} | {replacement} "
            f"| {_cell(c.get('description') or '')} |"
        )
    if len(changes) > MAX_CHANGE_ROWS:
        lines.append(f"| | … and {len(changes) - MAX_CHANGE_ROWS} more | | | |")
    lines.append("")
    return lines


def _cost_lines(cost: dict[str, Any]) -> list[str]:
    total = cost["total"]
    lines = [
        f"**Monthly cost**: {_money(total['base_usd_month'])} → {_money(total['head_usd_month'])} "
        f"(**{_delta(total['delta_usd_month'])}**) against `{_cell(cost['ref'])}`"
        # the basis (costdiff.CostDiff.to_json): older JSON without it was net of the free tiers
        + ("" if cost.get("free_tier", {}).get("applied", True) else ", gross (without AWS's always-free tiers)"),
        "",
    ]
    if not cost["lines"]:
        lines += ["No line of the estimate changes.", ""]
        return lines
    lines += ["| Line | Base | This branch | Change |", "|---|---:|---:|---:|"]
    for row in cost["lines"]:
        name = f"{row['base_name']} → {row['name']}" if row.get("base_name") else row["name"]
        lines.append(
            f"| {_cell(name)} | {_money(row['base_usd_month'])} | {_money(row['head_usd_month'])} "
            f"| {_delta(row['delta_usd_month'])} |"
        )
    lines.append("")
    return lines


def render_comment(name: str, plan: dict[str, Any] | None, cost: dict[str, Any] | None) -> str:
    """The comment's Markdown (first line: the marker the workflow finds it by)."""
    lines = [marker(name), f"### mastofargate plan for `{name}`", ""]
    if plan is None:
        lines += ["The plan did not run (see the workflow's log).", ""]
    else:
        for stack in plan["stacks"]:
            lines += _stack_lines(stack)
        if plan.get("images"):
            lines += [f"Images: {_cell(plan['images'])}", ""]
    if cost is not None:
        lines += _cost_lines(cost)
    lines.append("<sub>Updated on every push by the mastofargate review workflow. An estimate, not a quote.</sub>")
    return "\n".join(lines) + "\n"
