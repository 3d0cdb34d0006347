"""The emulator's server: moto's threaded server with every patch of this package installed, and the clock.

`python -m sandbox --port N` (0: a free port) prints `sandbox: listening on http://127.0.0.1:N` once it
accepts requests; SIGTERM/SIGINT stop it. Point a tool at it with `AWS_ENDPOINT_URL` and dummy
credentials. `--task-seconds`, `--rollout-seconds` and `--resource-seconds` set the emulated durations
(timing.Timing).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import Any

from sandbox.timing import TIMING

_installed = False
_install_lock = threading.Lock()


def install() -> None:
    """Register the stand-ins and patches once per process."""
    global _installed
    with _install_lock:
        if _installed:
            return
        from moto.moto_api import state_manager
        from moto.moto_api._internal.models import MotoAPIBackend

        from sandbox import backups, cloudformation, ecs, moto_fixes, operations, standins

        moto_fixes.apply()
        backups.patch()
        standins.register()
        ecs.register()
        cloudformation.patch()
        # Only the clock stops tasks (moto would step one state per DescribeTasks call).
        state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})
        original_reset = MotoAPIBackend.reset

        def reset(self: Any) -> None:  # /moto-api/reset forgets the stacks, so their operations too
            operations.reset()
            backups.reset()
            original_reset(self)

        MotoAPIBackend.reset = reset  # type: ignore[method-assign]
        _installed = True


def tick(now: float | None = None) -> None:
    """One step of emulated time: ECS first (tasks, deployments), then the stack operations that wait on it."""
    from sandbox import backups, ecs, operations

    now = time.monotonic() if now is None else now
    with operations.LOCK:
        ecs.tick(now)
        backups.tick(now)
        operations.tick(now)


class Clock(threading.Thread):
    """Calls `tick` every TIMING.tick seconds until stopped; an error is printed, never fatal."""

    def __init__(self) -> None:
        super().__init__(name="sandbox-clock", daemon=True)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(TIMING.tick):
            try:
                tick()
            except Exception as e:  # keep ticking; a moto object changed under us
                print(f"sandbox: clock tick failed: {e!r}", file=sys.stderr, flush=True)


class Sandbox:
    """The moto server, its patches and its clock, in this process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: Any = None
        self._clock = Clock()

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Sandbox:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        install()
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        self._clock.start()
        return self

    def stop(self) -> None:
        self._clock.stopped.set()
        if self._server is not None:
            self._server.stop()
            self._server = None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Local AWS emulator (moto + stand-ins) for `make demo` and tests. Not for real AWS.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--task-seconds", type=float, default=TIMING.task, help="how long a one-off task runs")
    parser.add_argument("--rollout-seconds", type=float, default=TIMING.rollout, help="how long a rollout takes")
    parser.add_argument(
        "--resource-seconds",
        type=float,
        default=TIMING.resource,
        help="how long a stack resource takes that waits for nothing",
    )
    args = parser.parse_args(argv)
    TIMING.task, TIMING.rollout, TIMING.resource = args.task_seconds, args.rollout_seconds, args.resource_seconds
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    sandbox = Sandbox(args.host, args.port).start()
    print(f"sandbox: listening on {sandbox.endpoint}", flush=True)
    try:
        done.wait()
    finally:
        sandbox.stop()
        print("sandbox: stopped", flush=True)
