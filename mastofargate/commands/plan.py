"""`mastofargate plan`: the change sets deploy would execute, shown and then deleted."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mastofargate.commands.deploy import ImagesJson, MastodonTag, StreamingTag
from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption


def plan(
    config: ConfigOption = DEFAULT_CONFIG,
    mastodon_tag: MastodonTag = None,
    streaming_tag: StreamingTag = None,
    images_json: ImagesJson = None,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 1 when there are changes (for CI), 0 when there are none.")
    ] = False,
    summary_json: Annotated[
        Path | None,
        typer.Option(
            "--summary-json",
            help="Also write the plan's summary as JSON (for the pull-request comment).",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Show what 'deploy' would change (added / modified / removed, data-bearing replacements loudly).
    Changes nothing: no secret is created and every change set is deleted again."""
    from mastofargate import validate
    from mastofargate.config import load_config
    from mastofargate.deploy import flow
    from mastofargate.deploy.context import Run
    from mastofargate.deploy.options import ImageChoice, PlanOptions
    from mastofargate.ui import make_output

    cfg = load_config(config)
    validate.deploy_flags(mastodon_tag=mastodon_tag, streaming_tag=streaming_tag, images_json=images_json)
    images = ImageChoice(mastodon_tag=mastodon_tag, streaming_tag=streaming_tag, images_json=images_json)
    opts = PlanOptions(config_path=config, images=images)
    run = Run.for_config(cfg, make_output(), verb="plan")
    with (
        run.interruptible(),
        run.pending(
            "change sets made for the plan (they change nothing; delete them or "
            "let the next plan or deploy replace them)"
        ),
    ):
        result = flow.plan_only(run, opts)
    if summary_json is not None:
        import json

        from mastofargate.errors import UsageError

        try:
            summary_json.write_text(json.dumps(result.summary(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        except OSError as e:
            raise UsageError(
                f"Cannot write the plan summary to {summary_json}: {e.strerror or e}.",
                fix="pass --summary-json a path in a folder that exists and can be written",
            ) from None
    if result.changes and exit_code:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
