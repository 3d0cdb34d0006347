"""Shared fixtures: configs built from plain dicts, and every shape the stack can take."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from mastofargate.config import Config, parse_config

PROFILES = ("personal", "community", "large")
DATABASES = ("rds", "task")
CACHES = ("elasticache", "task")
ARCHES = ("arm64", "x86_64")
SPOTS = (True, False)
# Every profile x database x cache x arch x spot combination the issue asks to validate, behind the ALB in the
# split layout; the direct edge (Caddy + DNS following the task) where it changes the shape: every data-store
# choice of the personal server it is meant for, two community servers (init's proposal among them) and one
# large; and selected one-task shapes (personal only): the data stores in the task on Spot and on demand, RDS
# with a Redis container, nothing but Mastodon, and the cheapest server of all (direct edge, everything in one
# task).
# Kept selective: the suite stays fast.
Combo = tuple[str, str, str, str, bool, str, str]  # profile, database, cache, arch, spot, edge, layout
SPLIT_COMBINATIONS: list[Combo] = [
    (*c, "alb", "split") for c in itertools.product(PROFILES, DATABASES, CACHES, ARCHES, SPOTS)
]
DIRECT_COMBINATIONS: list[Combo] = [
    ("personal", "rds", "elasticache", "arm64", True, "direct", "split"),
    ("personal", "rds", "task", "arm64", True, "direct", "split"),
    ("personal", "task", "elasticache", "arm64", True, "direct", "split"),
    ("personal", "task", "task", "arm64", True, "direct", "split"),
    ("personal", "task", "task", "x86_64", False, "direct", "split"),
    ("community", "rds", "elasticache", "arm64", True, "direct", "split"),
    ("community", "rds", "task", "arm64", True, "direct", "split"),  # what init proposes for a community
    ("large", "rds", "elasticache", "x86_64", False, "direct", "split"),
]
ONE_TASK_COMBINATIONS: list[Combo] = [
    ("personal", "task", "task", "arm64", True, "alb", "one-task"),
    ("personal", "task", "task", "arm64", False, "alb", "one-task"),
    ("personal", "rds", "task", "arm64", True, "alb", "one-task"),
    ("personal", "rds", "elasticache", "x86_64", True, "alb", "one-task"),
    ("personal", "task", "task", "arm64", True, "direct", "one-task"),
]
COMBINATIONS: list[Combo] = SPLIT_COMBINATIONS + DIRECT_COMBINATIONS + ONE_TASK_COMBINATIONS


def config_dict(**deployment: Any) -> dict[str, Any]:
    return {
        "server": {"domain": "social.example.org", "admin_email": "admin@example.org"},
        "aws": {"name": "social", "region": "us-east-1", "hosted_zone_id": "Z0123456789EXAMPLE"},
        "deployment": deployment,
    }


def make_config(extra: dict[str, Any] | None = None, **deployment: Any) -> Config:
    data = config_dict(**deployment)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_config(data)


@pytest.fixture
def config_factory() -> Callable[..., Config]:
    return make_config


def combo_id(combo: tuple[Any, ...]) -> str:
    """`profile-database-cache-arch-spot[-direct][-one-task]`."""
    profile, database, cache, arch, spot, edge, layout = combo
    return (
        f"{profile}-{database}-{cache}-{arch}-{'spot' if spot else 'ondemand'}"
        + ("-direct" if edge != "alb" else "")
        + ("" if layout == "split" else f"-{layout}")
    )


def combo_config(combo: tuple[Any, ...]) -> Config:
    """The config of one shape of COMBINATIONS."""
    profile, database, cache, arch, spot, edge, layout = combo
    return make_config(profile=profile, database=database, cache=cache, arch=arch, spot=spot, edge=edge, layout=layout)


def plain_run(config: Config, interval: float = 0.05) -> Any:
    """A deploy Run for tests: plain output (one line per event, as in CI) and a short poll interval."""
    from mastofargate.deploy.context import Run
    from mastofargate.deploy.polling import Poller, SystemClock
    from mastofargate.ui import Output

    return Run.for_config(config, Output(live=False), Poller(SystemClock(), interval))


def interruptible() -> None:
    """`preexec_fn` for a CLI process a test interrupts with SIGINT: SIGINT at its default and unblocked, as
    in a process a terminal started. An ignored or blocked SIGINT is inherited across fork and exec (a suite
    launched in the background by a script ignores it; a worker may have blocked it), and Python then
    installs no KeyboardInterrupt handler, or never sees the signal."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
