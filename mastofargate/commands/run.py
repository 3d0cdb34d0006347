"""`mastofargate run -- COMMAND...` and `mastofargate tootctl ARGS...`: one-off tasks on the current image.

Both start a task of the `{name}-tootctl` family (the image the services run, the app's secrets and
environment), stream its log lines to stdout and exit with the task's exit code, so scripts can chain
them. Options after the command belong to the command (`tootctl accounts create alice --email a@b.c`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption

if TYPE_CHECKING:
    from mastofargate.target import Target

# Everything after the first word of the command is passed through untouched, even options that look like
# ours (`tootctl media remove -c 5` means --concurrency there, not --config).
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "allow_interspersed_args": False}
DEFAULT_TIMEOUT = 1800.0

TimeoutOption = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for the task before stopping it (exit 3).", min=1)
]


def run_task_command(target: Target, command: list[str], *, timeout: float, poll: float = 5.0) -> int:
    """Run `command` in a one-off task, print its lines as they arrive, return its exit code.

    A task whose container never ran (no exit code: image pull, secrets, capacity) is an error, not a code.
    """
    from mastofargate.deploy.ecs import run_one_off
    from mastofargate.errors import MastofargateError
    from mastofargate.ui import err_console

    family = f"{target.name}-tootctl"
    err_console().print(f"Running {' '.join(command)!r} as a one-off {family} task ...", markup=False)
    result = run_one_off(target, family, command, timeout=timeout, poll=poll, on_line=typer.echo)
    if result.exit_code is None:
        raise MastofargateError(
            f"Task {result.task_arn} stopped before its command ran.",
            why=result.stopped_reason or "ECS gave no reason",
            fix="see 'mastofargate status'; an image or secret problem needs 'mastofargate deploy'",
        )
    if result.exit_code != 0:
        err_console().print(
            f"Task exited with code {result.exit_code}: {result.stopped_reason or 'no reason given'}", markup=False
        )
    return result.exit_code


def _run(config_path: Path, command: list[str], timeout: float) -> None:
    from mastofargate.config import load_config
    from mastofargate.target import Target

    code = run_task_command(Target(load_config(config_path)), command, timeout=timeout)
    if code:
        raise typer.Exit(code)


def run(
    command: Annotated[list[str] | None, typer.Argument(help="The command and its arguments (after --).")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
) -> None:
    """Run a one-off command on the current Mastodon image and exit with its exit code.

    Example: mastofargate run -- bin/rails runner 'puts Account.count'
    """
    from mastofargate.errors import UsageError

    if not command:
        raise UsageError("No command given.", fix="put it after --, e.g. mastofargate run -- tootctl --help")
    _run(config, list(command), timeout)


def tootctl(
    args: Annotated[list[str] | None, typer.Argument(help="tootctl's arguments and options.")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
) -> None:
    """Run tootctl in a one-off task and exit with its exit code.

    Example: mastofargate tootctl accounts create alice --email a@b.c --confirmed --role Owner
    (tootctl's own help: mastofargate tootctl -- --help).
    """
    _run(config, ["tootctl", *(args or [])], timeout)


def register(app: typer.Typer) -> None:
    app.command("run", context_settings=PASS_THROUGH)(run)
    app.command("tootctl", context_settings=PASS_THROUGH)(tootctl)
