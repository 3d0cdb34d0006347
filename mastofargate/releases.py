"""Mastodon releases newer than the pinned one, read from the upstream registry's tag list.

Patch releases of Mastodon are mostly security fixes (4.5.5-4.5.15 closed SSRF and signature bypasses and
shipped a patched FFmpeg), so staying current is part of running a server. The tag list comes from the
registry's anonymous API (`/v2/mastodon/mastodon/tags/list` on ghcr.io by default); a mirror of it can be
named instead (`--registry`, or MASTOFARGATE_UPSTREAM_REGISTRY), e.g. where ghcr.io is not reachable.
Only final release tags count (vX.Y.Z): `latest`, `vX.Y`, `edge`, `nightly`, release candidates and
content-addressed builds are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from mastofargate.errors import MastofargateError

DEFAULT_REGISTRY = "ghcr.io"
REPOSITORY = "mastodon/mastodon"
REGISTRY_ENV = "MASTOFARGATE_UPSTREAM_REGISTRY"
_RELEASE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")

Kind = Literal["patch", "minor", "major"]


def parse(tag: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a final release tag, None for anything else."""
    m = _RELEASE.match(tag)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


@dataclass(frozen=True)
class Release:
    version: str
    kind: Kind  # what upgrading to it is: a patch (same minor series), a new minor, or a new major

    def as_dict(self) -> dict[str, str]:
        return {"version": self.version, "kind": self.kind}


def newer_than(pinned: str, tags: list[str]) -> list[Release]:
    """Final releases newer than `pinned`, oldest first, each marked patch/minor/major."""
    base = parse(pinned.split("-", 1)[0])
    if base is None:
        raise MastofargateError(
            f"The pinned Mastodon version {pinned!r} is not a release tag.",
            why="only vMAJOR.MINOR.PATCH pins can be compared with upstream releases",
            fix="set deployment.mastodon_version to a release such as v4.5.15",
        )
    out: list[tuple[tuple[int, int, int], Release]] = []
    for tag in set(tags):
        v = parse(tag)
        if v is None or v <= base:
            continue
        kind: Kind = "patch" if v[:2] == base[:2] else "minor" if v[0] == base[0] else "major"
        out.append((v, Release(tag, kind)))
    return [r for _, r in sorted(out)]


def newest_patch(releases: list[Release]) -> str | None:
    """The newest release of the pinned minor series: the safe upgrade (same migrations story, no new minor)."""
    patches = [r.version for r in releases if r.kind == "patch"]
    return patches[-1] if patches else None


def upstream_tags(registry: str = DEFAULT_REGISTRY, repository: str = REPOSITORY) -> list[str]:
    """Every tag in the upstream repository; a MastofargateError naming the registry when it cannot be read."""
    from mastofargate.images.registry import Registry, check_host

    host = check_host(registry)
    try:
        return Registry(host).tags(repository)
    except MastofargateError as e:
        raise MastofargateError(
            f"Cannot read Mastodon's releases from {host}.",
            why=e.why or e.what,
            fix=f"check the network, or name a reachable mirror of {repository} with --registry HOST "
            f"(or {REGISTRY_ENV}); your server is not affected",
        ) from None


def check(pinned: str, registry: str = DEFAULT_REGISTRY, repository: str = REPOSITORY) -> dict[str, Any]:
    """What `versions --json` prints: the pin, the newer releases and the newest patch release."""
    releases = newer_than(pinned, upstream_tags(registry, repository))
    return {
        "pinned": pinned,
        "registry": registry,
        "repository": repository,
        "newer": [r.as_dict() for r in releases],
        "newest_patch": newest_patch(releases),
        "newest": releases[-1].version if releases else None,
        "behind": bool(releases),
    }
