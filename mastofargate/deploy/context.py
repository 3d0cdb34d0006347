"""What every deploy step is handed: where it deploys, where it reports, and how it waits.

Built once by the command layer (`Run.for_config`), so no step decides for itself whether it talks to a
terminal or how often it polls AWS.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mastofargate.deploy.polling import Poller, system_poller
from mastofargate.errors import Interrupted
from mastofargate.target import Target

if TYPE_CHECKING:
    from mastofargate.config import Config
    from mastofargate.ui import Output


@dataclass
class Run:
    target: Target
    out: Output
    poller: Poller
    verb: str = "deploy"
    in_flight: list[str] = field(default_factory=list)

    @classmethod
    def for_config(cls, config: Config, out: Output, poller: Poller | None = None, verb: str = "deploy") -> Run:
        return cls(Target(config), out, poller or system_poller(), verb)

    @contextmanager
    def pending(self, what: str) -> Iterator[None]:
        """While the block runs, `what` is what an interrupt would leave behind on AWS: Ctrl-C inside it
        becomes an `Interrupted` error naming everything still in flight."""
        self.in_flight.append(what)
        try:
            yield
        except KeyboardInterrupt:
            raise Interrupted(list(self.in_flight), verb=self.verb) from None
        finally:
            self.in_flight.remove(what)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """Around a whole verb: Ctrl-C outside any pending step left nothing running on AWS."""
        try:
            yield
        except KeyboardInterrupt:
            raise Interrupted([], verb=self.verb) from None
