"""Waiting for AWS: one clock and one polling rule for every wait that has no botocore waiter.

botocore's waiters are used where the end state is terminal and nothing needs watching on the way (a
change set being computed). Everything else — a stack update whose events and services are streamed while
it runs, a one-off task whose log lines are shown, a service settling — polls through `Poller`, which takes
its clock and interval from the caller: the CLI passes the system clock and AWS-friendly intervals, tests
pass a clock of their own. Nothing here reads the environment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")

# AWS's own consoles and CLIs poll CloudFormation and ECS every few seconds; 5 s keeps a deploy's calls
# well inside the APIs' rate limits while a rollout's progress still reads as live.
DEFAULT_INTERVAL = 5.0
# Say "still waiting" when a single wait has shown nothing new for this long.
QUIET_NOTICE = 30.0


class Clock(Protocol):
    """What a wait needs of time: now, and a pause."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class Poller:
    """How a deploy waits: a clock and an interval, passed down from the command layer."""

    clock: Clock
    interval: float = DEFAULT_INTERVAL

    def deadline(self, timeout: float) -> float:
        return self.clock.monotonic() + timeout

    def expired(self, deadline: float) -> bool:
        return self.clock.monotonic() >= deadline

    def remaining(self, deadline: float) -> float:
        return max(0.0, deadline - self.clock.monotonic())

    def pause(self, deadline: float | None = None) -> None:
        """Sleep one interval (never past the deadline)."""
        seconds = self.interval if deadline is None else min(self.interval, self.remaining(deadline))
        if seconds > 0:
            self.clock.sleep(seconds)

    def until(self, check: Callable[[], T | None], *, timeout: float, on_timeout: Callable[[], Exception]) -> T:
        """Call `check` every interval until it returns something other than None; raise on_timeout()'s
        exception when `timeout` seconds pass first."""
        deadline = self.deadline(timeout)
        while True:
            result = check()
            if result is not None:
                return result
            if self.expired(deadline):
                raise on_timeout()
            self.pause(deadline)


def system_poller(interval: float = DEFAULT_INTERVAL) -> Poller:
    return Poller(SystemClock(), interval)
