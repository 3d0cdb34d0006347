"""How long things take in the emulator (seconds of wall time); set once by `python -m sandbox`'s flags.

AWS takes minutes for what the emulator does in about a second: one-off tasks run TASK seconds, a service
deployment reaches its end ROLLOUT seconds after it started, a CloudFormation resource that does not wait
for anything completes RESOURCE seconds after its *_IN_PROGRESS event, and the clock advances every TICK.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Timing:
    task: float = 1.0  # how long an emulated one-off task "runs"
    rollout: float = 1.0  # how long an emulated service deployment takes
    resource: float = 0.2  # how long a CloudFormation resource takes that waits for nothing
    tick: float = 0.25  # how often the clock advances tasks, deployments and stack operations


TIMING = Timing()
