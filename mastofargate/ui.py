"""The one output layer: Rich on a terminal, one plain line per event elsewhere (CI logs stay readable).

The command layer builds one `Output` (`make_output()`) and passes it down; the deploy layer never decides
for itself whether it talks to a terminal, and never prompts (prompts live in the commands). Everything a
user or AWS supplied — names, values, reasons, log lines — is printed literally, never as Rich markup: a
value such as `[/x]` must neither crash the output nor vanish.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

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


def stdout_is_tty() -> bool:
    return sys.stdout is not None and sys.stdout.isatty()


def is_ci() -> bool:
    """Plain output: CI=... is set (GitHub Actions, GitLab and most CI systems set it) or stdout is no terminal."""
    return bool(os.environ.get("CI")) or not stdout_is_tty()


def say(message: str) -> None:
    """One plain line on stdout. No markup, and the verbs that only say a few lines (synth, init) need not
    load Rich at all."""
    print(message, flush=True)


def _labelled(label: str, style: str, message: str) -> None:
    """A styled label, then the message verbatim: messages carry user and AWS text (a value such as
    '[/x]' or '[bold]x[/bold]'), which must never be read as Rich markup."""
    from rich.text import Text

    err_console().print(Text.assemble((label, style), " ", message))


def warn(message: str) -> None:
    _labelled("warning:", "yellow", message)


def show_error(error: MastofargateError) -> None:
    """what / why / next on stderr; the labels styled, the text literal."""
    _labelled("error:", "bold red", error.what)
    if error.why:
        _labelled("why:", "bold", error.why)
    if error.fix:
        _labelled("next:", "bold", error.fix)


class ServiceRow(Protocol):
    """What the live table shows of a service (deploy.ecs.ServiceProgress has these fields)."""

    @property
    def service(self) -> str: ...
    @property
    def desired(self) -> int: ...
    @property
    def running(self) -> int: ...
    @property
    def pending(self) -> int: ...
    @property
    def failed_tasks(self) -> int: ...
    @property
    def rollout_state(self) -> str: ...


class Output:
    """Progress of a long operation. Plain mode: one line per event, service lines only when they change.
    Live mode (a terminal, not CI): the same lines scroll above a table of the services being rolled out."""

    def __init__(self, *, live: bool) -> None:
        self.live_mode = live
        self._live: Any = None
        self._services: dict[str, ServiceRow] = {}
        self._last_line: dict[str, str] = {}

    # -- lines --
    def line(self, text: str = "") -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        elif self.live_mode:
            console().print(text, markup=False, highlight=False)
        else:
            say(text)

    def step(self, text: str) -> None:
        self.line(f"==> {text}")

    def warn(self, text: str) -> None:
        warn(text)

    def stack_event(self, stack: str, event_line: str) -> None:
        self.line(f"  {stack}: {event_line}")

    def task_line(self, job: str, text: str) -> None:
        self.line(f"  {job} | {text}")

    def service(self, row: ServiceRow) -> None:
        self._services[row.service] = row
        if self._live is not None:
            self._live.update(self._table())
            return
        text = (
            f"  {row.service}: {row.running}/{row.desired} running, {row.pending} pending, {row.failed_tasks} failed "
            f"({row.rollout_state})"
        )
        if self._last_line.get(row.service) != text:
            self._last_line[row.service] = text
            self.line(text)

    def sensitive(self, text: str) -> bool:
        """Show text that must reach no log (a generated password) only on an interactive terminal, never in
        CI output. True when it was shown."""
        if not (self.live_mode and stdout_is_tty()):
            return False
        console().print(text, markup=False, highlight=False)
        return True

    # -- the live table --
    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title="services", expand=False)
        for col in ("service", "desired", "running", "pending", "failed", "rollout"):
            table.add_column(col)
        for p in self._services.values():
            table.add_row(
                p.service, str(p.desired), str(p.running), str(p.pending), str(p.failed_tasks), p.rollout_state
            )
        return table

    @contextmanager
    def live(self) -> Iterator[None]:
        """While the block runs, keep the service table at the bottom of a terminal (no-op in plain mode)."""
        if not self.live_mode or self._live is not None:
            yield
            return
        from rich.live import Live

        with Live(self._table(), console=console(), refresh_per_second=4, transient=False) as live:
            self._live = live
            try:
                yield
            finally:
                self._live = None


def make_output() -> Output:
    """The output for this process: live on a terminal, plain in CI or when piped. Built once, by the CLI."""
    return Output(live=not is_ci())
