"""The files `mastofargate ci init` writes: GitHub Actions workflows (review, images, deploy) and a small
Makefile, rendered from templates shipped in the package (mastofargate/data/ci/github).

The workflows install the same mastofargate version that wrote them, use third-party actions pinned by
full commit SHA (a tag can be moved; a commit cannot), grant each job only the permissions it uses, assume
the CI roles of `mastofargate.stack.ci` through GitHub's OIDC tokens (no stored keys), and never expand
`${{ }}` expressions inside shell scripts (values reach scripts through environment variables).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mastofargate import __version__, names
from mastofargate.config import Config
from mastofargate.errors import UsageError

# Actions used by the workflows: full commit SHA and the release it is (checked in the actions' repositories).
ACTIONS = {
    "CHECKOUT": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),  # actions/checkout
    "AWS_CREDENTIALS": ("e6de054238d6b7531b4efff3b6587d9aade6a06c", "v6.2.3"),  # aws-actions/configure-aws-credentials
}
WORKFLOWS = ("review.yml", "images.yml", "deploy.yml")
WORKFLOW_DIR = ".github/workflows"
ENVIRONMENT = "production"
# GitHub-hosted runners by architecture: arm64 images build natively (no emulation for an asset recompile).
RUNNERS = {"arm64": "ubuntu-24.04-arm", "x86_64": "ubuntu-24.04"}
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._/-]+$")
_ACCOUNT = re.compile(r"^\d{12}$")
_PLACEHOLDER = re.compile(r"@@([A-Z_]+)@@")


@dataclass(frozen=True)
class GeneratedFile:
    path: str  # relative to the repository root
    content: str


def values(config: Config, config_path: str, account_id: str | None) -> dict[str, str]:
    """What the templates' @@PLACEHOLDERS@@ become. Every value is checked so it cannot break out of YAML or
    a shell word (the config path is written inside double quotes in `run:` scripts)."""
    if not _SAFE_PATH.match(config_path) or config_path.startswith("-") or ".." in PurePosixPath(config_path).parts:
        raise UsageError(
            f"--config {config_path!r} cannot be written into the workflows",
            why="the path must be relative to the repository root and use only letters, digits, '.', '_', '-', '/'",
            fix="run 'mastofargate ci init' from the repository root with a plain relative --config path",
        )
    if account_id is not None and not _ACCOUNT.match(account_id):
        raise UsageError(
            f"--account-id {account_id!r} is not an AWS account ID; allowed: 12 digits",
            fix="pass the 12-digit ID of the account the server runs in, or leave it out to use the "
            "repository variable AWS_ACCOUNT_ID",
        )
    name = config.aws.name
    out = {
        "VERSION": __version__,
        "CONFIG": config_path,
        "REGION": config.aws.region,
        "ACCOUNT": account_id or "${{ vars.AWS_ACCOUNT_ID }}",
        "NAME": name,
        "BRANCH": config.ci.branch,
        "ENVIRONMENT": ENVIRONMENT,
        "RUNNER": RUNNERS[config.deployment.arch],
        "PLAN_ROLE": names.ci_role(name, "plan"),
        "IMAGES_ROLE": names.ci_role(name, "images"),
        "DEPLOY_ROLE": names.ci_role(name, "deploy"),
    }
    for key, (sha, tag) in ACTIONS.items():
        out[key] = f"{sha} # {tag}"
    return out


def fill(template: str, vals: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(1) not in vals:
            raise KeyError(f"template placeholder @@{m.group(1)}@@ has no value")
        return vals[m.group(1)]

    return _PLACEHOLDER.sub(one, template)


def render(
    config: Config, config_path: str, account_id: str | None = None, provider: str = "github"
) -> list[GeneratedFile]:
    """The workflows and the Makefile for `provider` (only GitHub today)."""
    from mastofargate.resources import read_text

    if provider != "github":
        raise UsageError(f"--provider {provider!r} is not supported; allowed: github")
    vals = values(config, config_path, account_id)
    files = [GeneratedFile(f"{WORKFLOW_DIR}/{w}", fill(read_text("ci", "github", w), vals)) for w in WORKFLOWS]
    files.append(GeneratedFile("Makefile", fill(read_text("ci", "github", "Makefile"), vals)))
    return files


def write(files: list[GeneratedFile], repo: Path, force: bool) -> list[str]:
    """Write the files under `repo`. Without `force`, any existing file stops it before anything is written."""
    existing = [f.path for f in files if (repo / f.path).exists()]
    if existing and not force:
        raise UsageError(
            f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; nothing was written",
            why="ci init does not overwrite files you may have changed",
            fix="pass --force to overwrite them (review the diff before committing)",
        )
    for f in files:
        target = repo / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f.content, encoding="utf-8")
    return [f.path for f in files]
