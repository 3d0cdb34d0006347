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
# Every profile x database x cache x arch x spot combination the issue asks to validate (layout "split"),
# and selected one-task shapes (personal only; arch changes nothing a split shape does not cover already):
# the data stores in the task on Spot and on demand, RDS with a Redis container, and nothing but Mastodon.
SPLIT_COMBINATIONS = [(*c, "split") for c in itertools.product(PROFILES, DATABASES, CACHES, ARCHES, SPOTS)]
ONE_TASK_COMBINATIONS = [
    ("personal", "task", "task", "arm64", True, "one-task"),
    ("personal", "task", "task", "arm64", False, "one-task"),
    ("personal", "rds", "task", "arm64", True, "one-task"),
    ("personal", "rds", "elasticache", "x86_64", True, "one-task"),
]
COMBINATIONS = SPLIT_COMBINATIONS + ONE_TASK_COMBINATIONS


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
    """`profile-database-cache-arch-spot[-layout]`; a combination without a layout is a split one."""
    profile, database, cache, arch, spot, layout = (*combo, "split")[:6]
    suffix = "" if layout == "split" else f"-{layout}"
    return f"{profile}-{database}-{cache}-{arch}-{'spot' if spot else 'ondemand'}{suffix}"


def combo_config(combo: tuple[Any, ...]) -> Config:
    profile, database, cache, arch, spot, layout = (*combo, "split")[:6]
    return make_config(profile=profile, database=database, cache=cache, arch=arch, spot=spot, layout=layout)


def plain_run(config: Config, interval: float = 0.05) -> Any:
    """A deploy Run for tests: plain output (one line per event, as in CI) and a short poll interval."""
    from mastofargate.deploy.context import Run
    from mastofargate.deploy.polling import Poller, SystemClock
    from mastofargate.ui import Output

    return Run.for_config(config, Output(live=False), Poller(SystemClock(), interval))
