"""Options shared by several verbs, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Path of mastofargate.toml.", dir_okay=False, show_default=True)
]
DEFAULT_CONFIG = Path("mastofargate.toml")
