"""`mastofargate ci`: set up the pull-request loop in the user's repository (`ci init`) and render the
review workflow's pull-request comment (`ci comment`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Annotated, Any

import typer

from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption

Opt = typer.Option
sub = typer.Typer(
    name="ci",
    help="CI workflows for the repository holding mastofargate.toml (GitHub Actions).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def repo_root(start: Path) -> Path:
    """The git work tree holding `start` (workflows live at its root), else `start` itself."""
    try:
        out = subprocess.run(
            ["git", "-C", str(start), "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return start
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else start


@sub.command("init")
def ci_init(
    config: ConfigOption = DEFAULT_CONFIG,
    provider: Annotated[str, Opt("--provider", help="CI system: github.")] = "github",
    account_id: Annotated[
        str | None,
        Opt("--account-id", help="AWS account ID written into the workflows (default: variable AWS_ACCOUNT_ID)."),
    ] = None,
    force: Annotated[bool, Opt("--force", help="Overwrite workflows and Makefile that already exist.")] = False,
) -> None:
    """Write .github/workflows/{review,images,deploy}.yml and a Makefile into the repository."""
    from mastofargate.ci.workflows import ENVIRONMENT, render, write
    from mastofargate.config import load_config
    from mastofargate.errors import UsageError
    from mastofargate.ui import say, warn

    cfg = load_config(config)
    root = repo_root(config.resolve().parent)
    try:
        rel = config.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise UsageError(f"{config} is outside the repository at {root}", fix="keep mastofargate.toml in it") from None
    files = render(cfg, rel, account_id, provider)
    written = write(files, root, force)
    say(f"Wrote {len(written)} files in {root}/:")
    for path in written:
        say(f"  {path}")
    if not cfg.ci.repository:
        warn(
            "[ci] repository is not set in the config: the CI roles cannot be generated. Add it "
            "(repository = \"owner/name\") and run 'mastofargate synth'."
        )
    say("Next:")
    say("  1. create the CI roles (mastofargate deploy --ci-roles), once, with an administrator's credentials")
    if account_id is None:
        say("  2. set the repository variable AWS_ACCOUNT_ID (Settings > Secrets and variables > Actions > Variables)")
    say(f"  3. protect the '{ENVIRONMENT}' environment with required reviewers (Settings > Environments)")
    say("  4. commit the files and open a pull request: the review workflow comments the plan and its cost")


@sub.command("comment")
def ci_comment(
    config: ConfigOption = DEFAULT_CONFIG,
    plan: Annotated[Path | None, Opt("--plan", help="Plan summary JSON (plan --summary-json).")] = None,
    cost: Annotated[Path | None, Opt("--cost", help="Cost difference JSON (cost --diff REF --json).")] = None,
    output: Annotated[Path | None, Opt("--output", "-o", help="Write the Markdown here (default: stdout).")] = None,
) -> None:
    """Render the pull-request comment (Markdown) from the plan summary and the cost difference."""
    from mastofargate.ci.comment import render_comment
    from mastofargate.config import load_config

    cfg = load_config(config)
    text = render_comment(cfg.aws.name, _read_json(plan, "--plan"), _read_json(cost, "--cost"))
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


def _read_json(path: Path | None, flag: str) -> Any:
    from mastofargate.errors import UsageError

    if path is None or not path.exists() or path.stat().st_size == 0:
        return None  # the step that writes it failed: the comment says so instead of failing too
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{flag} {path} is not JSON: {e}") from None


def register(app: typer.Typer) -> None:
    app.add_typer(sub, name="ci")
