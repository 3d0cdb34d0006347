"""`mastofargate schema`: the JSON Schema of mastofargate.toml, for editor completion."""

from __future__ import annotations

import json

import typer


def schema() -> None:
    """Print the JSON Schema of mastofargate.toml (for editor completion and validation)."""
    from mastofargate.config import json_schema

    typer.echo(json.dumps(json_schema(), indent=2, sort_keys=True))


def register(app: typer.Typer) -> None:
    app.command("schema")(schema)
