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


def _labelled(label: str, style: str, message: str) -> None:
    """A styled label, then the message verbatim: messages carry user and AWS text (a value such as
    '[/x]' or '[bold]x[/bold]'), which must never be read as Rich markup."""
    from rich.text import Text

    err_console().print(Text.assemble((label, style), " ", message))


def warn(message: str) -> None:
    _labelled("warning:", "yellow", message)


def show_error(error: MastofargateError) -> None:
    _labelled("error:", "bold red", error.what)
    if error.why:
        _labelled("why:", "bold", error.why)
    if error.fix:
        _labelled("next:", "bold", error.fix)
