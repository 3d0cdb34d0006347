"""`mastofargate synth`: write cfn/ and task_definitions/ for review, or check they are current."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption
from mastofargate.errors import EXIT_FAILED, MastofargateError


def synth(
    config: ConfigOption = DEFAULT_CONFIG,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir",
            "-o",
            help="Where cfn/ and task_definitions/ go (default: the config's folder).",
            file_okay=False,
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="Template format: yaml or json.")] = "yaml",
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 listing files that are stale.")] = False,
) -> None:
    """Generate the CloudFormation templates and task definitions (deterministic, no AWS calls)."""
    from mastofargate.config import load_config
    from mastofargate.cost import synth_summary
    from mastofargate.errors import UsageError
    from mastofargate.render import foreign_files, render_all, stale_files, write_files
    from mastofargate.stack import build_all as build
    from mastofargate.ui import say

    if fmt not in ("yaml", "json"):
        raise UsageError(f"--format {fmt!r} is not a template format; allowed: yaml, json")
    cfg = load_config(config)
    out = output_dir if output_dir is not None else config.parent
    templates = build(cfg)
    files = render_all(templates, cfg.aws.name, fmt)  # type: ignore[arg-type]
    if check:
        stale = stale_files(files, out)
        if stale:
            raise MastofargateError(
                f"{len(stale)} generated file(s) are stale:\n" + "\n".join(f"  {p}" for p in stale),
                why=f"they differ from what {config} generates now",
                fix=f"run 'mastofargate synth --config {config}' and commit the result",
                exit_code=EXIT_FAILED,
            )
        say(f"{len(files)} generated files are up to date.")
        _list_foreign(foreign_files(files, out))
        return
    changed = write_files(files, out)
    wanted = {f.path for f in files}
    removed = [p for p in changed if p not in wanted]
    written = len(changed) - len(removed)
    if changed:
        say(
            f"Wrote {written} of {len(files)} files in {out}/"
            + (f", removed {len(removed)} no longer generated" if removed else "")
            + "."
        )
    else:
        say(f"All {len(files)} files in {out}/ are up to date.")
    for path in changed:
        say(f"  {'removed ' if path in removed else ''}{path}")
    _list_foreign(foreign_files(files, out))
    say(synth_summary(cfg, templates))


def _list_foreign(paths: list[str]) -> None:
    """Files no manifest claims are never removed: say they are there, so leftovers do not go unnoticed."""
    from mastofargate.ui import say

    if paths:
        say(f"Left alone ({len(paths)}, not written by this config's synth; delete them yourself if unwanted):")
        for path in paths:
            say(f"  {path}")


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
