"""Terminal output: Rich on a terminal, one plain line per event elsewhere (CI logs stay readable)."""

from __future__ import annotations

import os
import sys
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from mastofargate.errors import MastofargateError


@cache
def console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


@cache
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def stdin_is_tty() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def is_ci() -> bool:
    return bool(os.environ.get("CI")) or not sys.stdout.isatty()


def say(message: str) -> None:
    """One plain line on stdout. No markup: messages carry names like [AWS::S3::Bucket] verbatim, and the
    verbs that only say a few lines (synth, init) need not load Rich at all."""
    print(message, flush=True)


def warn(message: str) -> None:
    err_console().print(f"[yellow]warning:[/] {message}")


def show_error(error: MastofargateError) -> None:
    c = err_console()
    c.print(f"[bold red]error:[/] {error.what}", markup=True)
    if error.why:
        c.print(f"[bold]why:[/] {error.why}")
    if error.fix:
        c.print(f"[bold]next:[/] {error.fix}")
