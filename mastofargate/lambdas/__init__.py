"""Lambda functions' code: stand-alone modules (standard library and boto3 only, no mastofargate imports),
embedded in templates as inline `ZipFile` code. `source(name)` returns a module's text for that."""

from __future__ import annotations

from importlib.resources import files


def source(name: str) -> str:
    """The text of mastofargate/lambdas/NAME.py, as the template embeds it (Lambda names it index.py)."""
    return (files("mastofargate.lambdas") / f"{name}.py").read_text(encoding="utf-8")
