"""What every deploy step is handed: where it deploys, where it reports, and how it waits.

Built once by the command layer (`Run.for_config`), so no step decides for itself whether it talks to a
terminal or how often it polls AWS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mastofargate.deploy.polling import Poller, system_poller
from mastofargate.target import Target

if TYPE_CHECKING:
    from mastofargate.config import Config
    from mastofargate.ui import Output


@dataclass
class Run:
    target: Target
    out: Output
    poller: Poller

    @classmethod
    def for_config(cls, config: Config, out: Output, poller: Poller | None = None) -> Run:
        return cls(Target(config), out, poller or system_poller())
