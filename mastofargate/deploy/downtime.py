"""What a rollout costs in availability, said before the user confirms (issue 12 item 4).

A task that must never run twice (the one-task server: Postgres' data directory and the scheduler queue are
in it) rolls out with minimumHealthyPercent 0: ECS stops the old task before the new one starts, so the
server is offline until the new task is healthy — a few minutes (image pulls, Postgres' lock, Puma's boot).
Split services and the community front roll with 100 %/200 % and stay online, behind either edge: with
the direct edge the DNS follower publishes every healthy task, so the new task takes clients once healthy,
and the old one, dropped from the record when ECS stops it, keeps serving for the record's TTL while it
drains (stack/direct_edge.py DRAIN_SECONDS) — no downtime to announce. The deploy history records how long each rollout
took (deploy/history.py `seconds`); the newest such figure is the best estimate of the next one.
"""

from __future__ import annotations

from mastofargate.deploy import history, rollout, stacks
from mastofargate.errors import MastofargateError
from mastofargate.target import Target


def offline_services(target: Target, app: stacks.Plan) -> list[str]:
    """The serving singletons (a task holding web that never runs twice) this plan rolls out. A plan made
    before the data stack's update (deferred) does not know its changes yet: every such task counts."""
    singletons = [t.name for t in target.config.tasks if t.singleton and t.has("web")]
    if app.deferred:
        return singletons
    touched = set(rollout.touched_services(app))
    return [name for name in singletons if name in touched]


def last_rollout_seconds(target: Target) -> float | None:
    """How long the newest recorded rollout took, or None when none is recorded (or it cannot be read)."""
    try:
        entries = history.read_history(target)
    except MastofargateError:
        return None
    for entry in entries:
        try:
            return float(entry["seconds"])
        except (KeyError, TypeError, ValueError):
            continue
    return None


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def warning(target: Target, app: stacks.Plan, *, installing: bool) -> str | None:
    """The sentence `plan` and `deploy` print before the confirmation, or None when the server stays up."""
    if installing:
        return None
    services = offline_services(target, app)
    if not services:
        return None
    last = last_rollout_seconds(target)
    how_long = f"the last rollout took {duration(last)}" if last is not None else "no earlier rollout is recorded"
    return (
        f"This rollout takes the server OFFLINE for a few minutes ({how_long}): {', '.join(services)} runs as "
        "one task that never runs twice, so ECS stops the old task before the new one starts. Deploy when a "
        "short outage is acceptable (other servers retry their deliveries)."
    )
