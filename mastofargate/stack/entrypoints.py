"""The entrypoint scripts of the data-store containers, shipped as package data (mastofargate/data/).

The official Postgres and Redis images are used unchanged; the task definition runs the script's text with
`bash -c` (no image of our own to build, scan and keep patched). The text holds no secret: passwords reach
the scripts through the task definition's `secrets` (environment), never through arguments.
"""

from __future__ import annotations

from importlib.resources import files

POSTGRES = "postgres-entrypoint.sh"
REDIS = "redis-entrypoint.sh"


def script(name: str) -> str:
    """The text of one shipped script (POSTGRES or REDIS)."""
    return (files("mastofargate") / "data" / name).read_text(encoding="utf-8")
