"""`mastofargate versions`: Mastodon releases newer than the pinned one, patch or minor."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption


def versions(
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (only JSON on stdout).")] = False,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            help="Registry holding mastodon/mastodon (default ghcr.io; a mirror's HOST[:PORT] where ghcr.io is "
            "not reachable). Also MASTOFARGATE_UPSTREAM_REGISTRY.",
        ),
    ] = None,
) -> None:
    """List the Mastodon releases newer than deployment.mastodon_version, each marked patch or minor.

    Patch releases are mostly security fixes: take the newest patch by setting mastodon_version to it and
    deploying. A new minor needs its release notes read first (Mastodon asks for every minor in turn).
    Exit status 0 whether or not the pin is behind; 1 when the registry cannot be read.
    """
    from mastofargate import releases
    from mastofargate.config import load_config

    pinned = load_config(config).deployment.mastodon_version
    source = registry or os.environ.get(releases.REGISTRY_ENV) or releases.DEFAULT_REGISTRY
    data = releases.check(pinned, source)
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    newer = data["newer"]
    if not newer:
        typer.echo(f"{pinned} is the newest Mastodon release on {source}.")
        return
    typer.echo(f"pinned: {pinned}; newer releases on {source}:")
    for r in newer:
        note = (
            "patch: security and bug fixes, same minor series"
            if r["kind"] == "patch"
            else (f"{r['kind']}: read its release notes and upgrade notes first")
        )
        typer.echo(f"  {r['version']:<10} {note}")
    if data["newest_patch"]:
        typer.echo(
            f'Next: set deployment.mastodon_version = "{data["newest_patch"]}" in {config}, then '
            "'make images' and 'mastofargate deploy'."
        )


def register(app: typer.Typer) -> None:
    app.command("versions")(versions)
