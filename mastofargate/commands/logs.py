"""`mastofargate logs SERVICE`: a service's or job's CloudWatch logs, optionally followed live."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

import typer

from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption

if TYPE_CHECKING:
    from mastofargate.config import Config

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> float:
    """'90s', '10m', '2h', '1d' -> seconds."""
    from mastofargate.errors import UsageError

    match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text)
    if not match or int(match.group(1)) == 0:
        raise UsageError(
            f"--since {text!r} is not a duration.", fix="give a number and a unit: 30s, 10m, 2h or 1d (days)"
        )
    return float(int(match.group(1)) * UNITS[match.group(2)])


def log_names(cfg: Config) -> list[str]:
    """Every name `logs` accepts for this config: its services, then the one-off jobs (the database setup too)."""
    from mastofargate.stack.dbsetup import JOB as DBSETUP
    from mastofargate.stack.jobs import JOBS

    return [s.name for s in cfg.all_services] + list(JOBS) + [DBSETUP]


def check_name(cfg: Config, name: str) -> None:
    from mastofargate.errors import UsageError

    names = log_names(cfg)
    if name not in names:
        raise UsageError(
            f"{name!r} is not a service or job of {cfg.aws.name}.", fix="choose one of: " + ", ".join(names)
        )


def logs(
    service: Annotated[str, typer.Argument(help="Service or job: web, streaming, sidekiq, migrate, tootctl, ...")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines; Ctrl-C ends.")] = False,
    since: Annotated[str, typer.Option("--since", help="How far back to start: 30s, 10m, 2h, 1d.")] = "10m",
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Print a service's or one-off job's logs (all its tasks, interleaved by time, UTC)."""
    from mastofargate.config import load_config
    from mastofargate.deploy import logs as cwlogs
    from mastofargate.errors import MastofargateError
    from mastofargate.target import Target
    from mastofargate.ui import err_console

    cfg = load_config(config)
    check_name(cfg, service)
    seconds = parse_since(since)
    target = Target(cfg)
    if not cwlogs.group_exists(target, service):
        raise MastofargateError(
            f"No logs for {service}: log group {cwlogs.log_group(target, service)} does not exist.",
            why="the app stack is not deployed, or this service or job has never been created",
            fix="run 'mastofargate status' to see what is deployed",
        )
    if not follow:
        lines = cwlogs.tail(target, service, since_seconds=seconds, limit=10_000)
        for line in lines:
            typer.echo(line)
        if not lines:
            err_console().print(f"No log lines from {service} in the last {since}.", markup=False, highlight=False)
        return
    try:
        cwlogs.follow(target, service, since_seconds=seconds, on_line=typer.echo, stop=lambda: False)
    except KeyboardInterrupt:  # the normal way to end --follow: not an error
        return


def register(app: typer.Typer) -> None:
    app.command("logs")(logs)
