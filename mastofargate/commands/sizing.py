"""`mastofargate sizing`: the documented sizing the config resolves to, with everything derived from it."""

from __future__ import annotations

from typing import Annotated

import typer

from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption


def profiles_markdown() -> str:
    """The README's profile table, generated from sizing.PROFILES (a test keeps the README in sync)."""
    from mastofargate.sizing import ALL_QUEUES, PROFILES, Profile, ServiceSize

    def size(s: ServiceSize) -> str:
        return f"{s.cpu / 1024:g} vCPU / {s.memory / 1024:g} GiB"

    def counts(s: ServiceSize) -> str:
        return f"{s.desired} task" if s.min == s.max else f"{s.min}-{s.max} tasks"

    def packed(p: Profile) -> str:
        out = []
        for layout, packings in p.packings.items():
            for k in packings:
                members = "+".join(k.limits)
                out.append(
                    f"{layout}: `{k.name}` ({members}) {k.cpu / 1024:g} vCPU / {k.memory / 1024:g} GiB, "
                    + (f"{k.counts[0]} task" if k.counts[1] == k.counts[2] else f"{k.counts[1]}-{k.counts[2]} tasks")
                )
        return "; ".join(out) or "none (a task per process)"

    rows = [
        "| profile | for | web | streaming | sidekiq | Postgres (RDS) | ElastiCache node | packed tasks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in PROFILES.values():
        web = p.service("web")
        puma = "single mode" if web.web_concurrency == 0 else f"{web.web_concurrency} workers"
        streaming = p.service("streaming")
        sidekiq = "; ".join(
            f"{s.name}: {size(s)}, {s.sidekiq_concurrency} threads, "
            + ("all queues" if s.queues == ALL_QUEUES else "+".join(s.queue_names))
            for s in p.services
            if s.role == "sidekiq"
        )
        rows.append(
            f"| `{p.name}` | {p.summary.split(':')[0]} | {size(web)}, Puma {puma} x {web.max_threads} threads, "
            f"{counts(web)} | {size(streaming)}, {counts(streaming)} | {sidekiq} | {p.rds_instance_class}, "
            f"{p.rds_storage_gb} GB | {p.cache_node_type} | {packed(p)} |"
        )
    return "\n".join(rows)


def sizing(
    config: ConfigOption = DEFAULT_CONFIG,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print every profile as a Markdown table.")] = False,
) -> None:
    """Show the sizing this config resolves to: task sizes, derived env vars, the Postgres connection budget."""
    if markdown:
        typer.echo(profiles_markdown())
        return
    from mastofargate.config import load_config
    from mastofargate.sizing import connection_budget
    from mastofargate.ui import say

    cfg = load_config(config)
    say(f"{cfg.deployment.profile} profile ({cfg.profile.summary})")
    for t in cfg.tasks:
        if t.packed:
            say(
                f"  {t.name:20} {t.cpu:>5} CPU {t.memory:>6} MiB, tasks {t.min}-{t.max}"
                f"{' singleton' if t.singleton else ''}: {len(t.containers)} containers, hard limits "
                f"{t.limits_total} MiB, reserved {t.reserved_total} MiB"
            )
        for s in t.containers:
            env = " ".join(f"{k}={v}" for k, v in s.env().items())
            extra = (
                f" -c {s.sidekiq_concurrency} {' '.join('-q ' + q for q in s.queues)}" if s.role == "sidekiq" else ""
            )
            where = (
                f"    {s.name:18} container {s.container_memory} MiB (reserved {s.container_reservation} MiB)"
                if t.packed
                else f"  {s.name:20} {s.cpu:>5} CPU {s.memory:>6} MiB (container {s.container_memory} MiB), "
                f"tasks {s.min}-{s.max}{' singleton' if t.singleton else ''}"
            )
            say(f"{where}  {env}{extra}")
    budget = connection_budget(cfg.tasks, cfg.job)
    say(
        f"Postgres connections at peak: {sum(budget.values())} of {cfg.max_connections} "
        f"({', '.join(f'{k} {v}' for k, v in budget.items())})"
    )


def register(app: typer.Typer) -> None:
    app.command("sizing")(sizing)
