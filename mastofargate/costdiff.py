"""`cost --diff REF`: the monthly estimate of the templates committed at a git ref against those in the
working tree, line by line — the number a reviewer needs next to an infrastructure change.

Both sides are priced the same way: the CloudFormation templates under cfn/ (what `synth` wrote and the
pull request shows) with the config of the same side (its profile's usage assumptions), so a line changes
only when the infrastructure or the assumptions do. Reads git through its command line; no AWS call.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from mastofargate.config import Config, load_config, parse_config
from mastofargate.errors import UsageError
from mastofargate.render import CFN_DIR

# A line whose monthly cost moves by less than half a cent has not changed.
EPSILON = 0.005
_PARENS = re.compile(r"\([^()]*\)")


@dataclass(frozen=True)
class Side:
    config: Config
    templates: dict[str, dict[str, Any]]  # stack key ("data", "app", ...) -> template


@dataclass(frozen=True)
class LineDiff:
    name: str  # the working tree's wording (the base's for a line that is gone)
    base_usd_month: float | None  # None: the line is new
    head_usd_month: float | None  # None: the line is gone
    base_name: str | None = None  # the base's wording, when it differs (other sizes or assumptions)

    @property
    def delta(self) -> float:
        return (self.head_usd_month or 0.0) - (self.base_usd_month or 0.0)


@dataclass(frozen=True)
class CostDiff:
    ref: str
    base_total: float
    head_total: float
    lines: list[LineDiff]  # only lines that changed
    prices_as_of: str
    free_tier: bool = True  # both sides net of the always-free tiers (False: both gross, --no-free-tier)

    @property
    def delta(self) -> float:
        return self.head_total - self.base_total

    def to_json(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 2)

        return {
            "ref": self.ref,
            "total": {
                "base_usd_month": r(self.base_total),
                "head_usd_month": r(self.head_total),
                "delta_usd_month": r(self.delta),
            },
            "lines": [
                {
                    "name": d.name,
                    "base_name": d.base_name,
                    "base_usd_month": r(d.base_usd_month),
                    "head_usd_month": r(d.head_usd_month),
                    "delta_usd_month": r(d.delta),
                }
                for d in self.lines
            ],
            "prices_as_of": self.prices_as_of,
            "free_tier": {"applied": self.free_tier},
        }


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise UsageError("cost --diff needs git, and git is not installed", fix="install git") from None


def repository_of(config_path: Path) -> tuple[Path, PurePosixPath]:
    """(work tree root, config path relative to it)."""
    folder = config_path.resolve().parent
    out = _git(folder, "rev-parse", "--show-toplevel")
    if out.returncode != 0:
        raise UsageError(
            f"{folder} is not in a git repository", why="cost --diff compares with a commit", fix="run it in one"
        )
    root = Path(out.stdout.strip())
    return root, PurePosixPath(config_path.resolve().relative_to(root.resolve()).as_posix())


def _stack_key(filename: str, name: str) -> str | None:
    stem, dot, ext = filename.rpartition(".")
    if not dot or ext not in ("yaml", "json") or not stem.startswith(f"{name}-"):
        return None
    return stem[len(name) + 1 :]


def _parse(text: str, filename: str) -> dict[str, Any]:
    if filename.endswith(".json"):
        return dict(json.loads(text))
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(text, Loader=loader)  # a safe loader: templates are data
    if not isinstance(data, dict):
        raise UsageError(f"{filename} is not a CloudFormation template")
    return data


def at_ref(config_path: Path, ref: str) -> Side:
    """The config and the committed cfn/ templates at `ref`."""
    root, rel = repository_of(config_path)
    commit = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if commit.returncode != 0:
        raise UsageError(
            f"--diff {ref!r} is not a commit of the repository at {root}",
            fix="pass a branch, tag or commit that exists locally (in CI: fetch the base branch first)",
        )
    sha = commit.stdout.strip()
    shown = _git(root, "show", f"{sha}:{rel}")
    if shown.returncode != 0:
        raise UsageError(f"{rel} does not exist at {ref}", fix=f"pass a ref where {rel} is committed")
    try:
        config = parse_config(tomllib.loads(shown.stdout), source=f"{rel} at {ref}")
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{rel} at {ref} is not valid TOML: {e}") from None
    cfn = rel.parent / CFN_DIR
    listing = _git(root, "ls-tree", "--name-only", f"{sha}:{cfn}" if str(cfn) != "." else sha)
    templates: dict[str, dict[str, Any]] = {}
    if listing.returncode == 0:
        for filename in sorted(listing.stdout.split()):
            key = _stack_key(filename, config.aws.name)
            if key is not None:
                blob = _git(root, "show", f"{sha}:{cfn / filename}")
                templates[key] = _parse(blob.stdout, filename)
    if not templates:
        raise UsageError(
            f"no templates for {config.aws.name} are committed under {cfn}/ at {ref}",
            fix="commit what 'mastofargate synth' writes, or pass an older or newer ref",
        )
    return Side(config, templates)


def working_tree(config_path: Path) -> Side:
    """The config and the cfn/ templates as they are on disk."""
    config = load_config(config_path)
    folder = config_path.parent / CFN_DIR
    templates: dict[str, dict[str, Any]] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            key = _stack_key(path.name, config.aws.name)
            if key is not None and path.is_file():
                templates[key] = _parse(path.read_text(encoding="utf-8"), path.name)
    if not templates:
        raise UsageError(f"no templates for {config.aws.name} in {folder}/", fix="run 'mastofargate synth' first")
    return Side(config, templates)


def line_key(name: str) -> str:
    """What a line is, without its sizes and assumptions: "Fargate Spot: web (1 vCPU, 2 GB, X86_64)" and
    "Fargate Spot: web (0.25 vCPU, 1 GB, X86_64)" are the same line at another price."""
    return " ".join(_PARENS.sub("", name).split())


def _by_key(items: list[Any]) -> dict[str, tuple[str, float]]:
    """{key: (name, $/month)}; lines sharing a key on one side keep their full names (no false pairing)."""
    keys = [line_key(i.name) for i in items]
    out: dict[str, tuple[str, float]] = {}
    totals: dict[str, float] = defaultdict(float)
    names: dict[str, str] = {}
    for i, key in zip(items, keys, strict=True):
        k = key if keys.count(key) == 1 else i.name
        totals[k] += i.usd_month
        names[k] = i.name
    for k, total in totals.items():
        out[k] = (names[k], total)
    return out


def diff(config_path: Path, ref: str, media_gb: float | None = None, free_tier: bool | None = None) -> CostDiff:
    """Estimate both sides with the same prices (the working tree's region) and the same free-tier basis (the
    working tree's `[cost] free_tier` unless `free_tier` says), and keep the lines that moved (a credit line
    moves when the usage it offsets does)."""
    from mastofargate.cost import estimate
    from mastofargate.prices import for_region

    base, head = at_ref(config_path, ref), working_tree(config_path)
    prices = for_region(head.config.aws.region)
    free_tier = head.config.cost.free_tier if free_tier is None else free_tier
    base_prices = prices if base.config.aws.region == head.config.aws.region else for_region(base.config.aws.region)
    before = estimate(base.config, base.templates, media_gb=media_gb, prices=base_prices, free_tier=free_tier)
    after = estimate(head.config, head.templates, media_gb=media_gb, prices=prices, free_tier=free_tier)
    old, new = _by_key(before.items), _by_key(after.items)
    lines = []
    for key in list(new) + [k for k in old if k not in new]:
        base_name, base_usd = old.get(key, (None, None))
        head_name, head_usd = new.get(key, (None, None))
        name = head_name or base_name or key
        d = LineDiff(name, base_usd, head_usd, base_name if base_name not in (None, name) else None)
        if abs(d.delta) >= EPSILON:
            lines.append(d)
    return CostDiff(ref, before.total_usd_month, after.total_usd_month, lines, after.prices_as_of, free_tier)
