"""Each container's variables against what its Mastodon process reads (tests/mastodon_reads.py).

A misspelled or dead variable (set where nothing reads it) fails here; so does a variable a process needs
and does not get. The recorded lines are checked against Mastodon's source when a copy of it is on this
machine (MASTODON_SOURCE, a git directory holding the tag; the `fetch` tool's mirror by default).
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from mastofargate.stack import build
from tests.conftest import COMBINATIONS, combo_config, combo_id
from tests.mastodon_reads import MASTODON_TAG, READS, RUNTIME_READS

MIRROR = Path(os.environ.get("MASTODON_SOURCE", "/work/.mirror/glitch-soc+mastodon/repo"))
# What each process must get (beyond the shape-dependent Redis/Postgres settings).
REQUIRED = {
    "web": {"LOCAL_DOMAIN", "SECRET_KEY_BASE", "S3_PERMISSION", "CDN_HOST", "WEB_CONCURRENCY", "DB_POOL"},
    "sidekiq": {"LOCAL_DOMAIN", "SECRET_KEY_BASE", "S3_PERMISSION", "CDN_HOST", "DB_POOL"},
    "job": {"LOCAL_DOMAIN", "SECRET_KEY_BASE", "S3_PERMISSION", "DB_POOL"},
    "streaming": {"DB_HOST", "DB_PASS", "DB_POOL"},
}


def kind(container: dict[str, Any]) -> str | None:
    name = container["Name"]
    return {"web": "web", "sidekiq": "sidekiq", "streaming": "streaming", "mastodon": "job"}.get(name)


@cache
def mastodon_containers(combo: tuple) -> list[tuple[str, str, set[str]]]:
    cfg = combo_config(combo)
    out = []
    for tpl in build(cfg).values():
        for title, res in tpl.to_dict()["Resources"].items():
            if res["Type"] != "AWS::ECS::TaskDefinition":
                continue
            for c in res["Properties"]["ContainerDefinitions"]:
                k = kind(c)
                if k:
                    names = {e["Name"] for e in c.get("Environment", [])} | {s["Name"] for s in c.get("Secrets", [])}
                    out.append((title, k, names))
    return out


@pytest.mark.parametrize("combo", COMBINATIONS, ids=[combo_id(c) for c in COMBINATIONS])
def test_every_variable_is_read_by_its_process(combo: tuple) -> None:
    seen = set()
    for title, k, names in mastodon_containers(combo):
        seen.add(k)
        unread = sorted(n for n in names if k not in READS.get(n, {}) and k not in RUNTIME_READS.get(n, {}))
        assert not unread, f"{title} ({k}) sets {unread}, which its Mastodon process never reads"
        missing = sorted(REQUIRED[k] - names)
        assert not missing, f"{title} ({k}) lacks {missing}"
    assert seen == set(REQUIRED)


def test_the_dead_variables_of_issue_9_are_gone() -> None:
    combo = next(c for c in COMBINATIONS if c[2] == "elasticache")
    for title, k, names in mastodon_containers(combo):
        if k == "streaming":
            assert not names & {"LOCAL_DOMAIN", "REDIS_DRIVER", "WEB_DOMAIN"}, title
        if k == "job":
            assert "WEB_CONCURRENCY" not in names, title


def test_the_checker_catches_a_dead_variable() -> None:
    """The rule itself: a variable the streaming server does not read is refused."""
    assert "streaming" not in READS["LOCAL_DOMAIN"] and "job" not in READS["WEB_CONCURRENCY"]
    assert "S3_PERMISION" not in READS  # a typo is not a known name


def _mirror_has_tag() -> bool:
    if not MIRROR.exists():
        return False
    probe = subprocess.run(
        ["git", "-C", str(MIRROR), "rev-parse", "--verify", "-q", f"{MASTODON_TAG}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _mirror_has_tag(), reason=f"no copy of Mastodon's source with {MASTODON_TAG} here")
def test_recorded_lines_read_the_named_variable() -> None:
    """Every path:line in mastodon_reads.py contains the variable's name at the recorded tag."""
    files: dict[str, list[str]] = {}
    for name, where in READS.items():
        for k, loc in where.items():
            path, line = loc.rsplit(":", 1)
            if path not in files:
                text = subprocess.run(
                    ["git", "-C", str(MIRROR), "show", f"{MASTODON_TAG}:{path}"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                files[path] = text.splitlines()
            text = files[path][int(line) - 1]
            # redis_configuration.rb builds the name: ENV.fetch("#{prefix}URL") with prefix "REDIS_"
            built = "#{prefix}" in text and f'"#{{prefix}}{name.removeprefix("REDIS_")}"' in text
            assert name in text or built, f"{name} ({k}): {loc} reads {text!r}"


def test_the_start_wrapper_reads_what_it_is_said_to_read() -> None:
    """RUNTIME_READS: the wrapper script handles each name (OpenSSL and Node read the files it writes)."""
    from mastofargate.stack import cache, entrypoints

    wrapper = entrypoints.script(cache.TRUST_SCRIPT)
    for name in RUNTIME_READS:
        assert f"${{{name}" in wrapper, name
