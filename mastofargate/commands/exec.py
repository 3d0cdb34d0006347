"""`mastofargate exec SERVICE`: a shell (or any command) inside a running task, through ECS Exec.

No SSH, no open port (operator field notes: manage through AWS's session tooling). ECS Exec returns a
Session Manager session; AWS's `session-manager-plugin` binary carries the terminal, exactly as the AWS
CLI's `aws ecs execute-command` hands it over.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption

if TYPE_CHECKING:
    from mypy_boto3_ecs.type_defs import TaskTypeDef

    from mastofargate.target import Target

PLUGIN = "session-manager-plugin"


def find_plugin() -> str:
    from mastofargate.errors import MastofargateError

    path = shutil.which(PLUGIN)
    if path is None:
        raise MastofargateError(
            f"ECS Exec needs AWS's {PLUGIN}, which is not on PATH.",
            why="the shell session is carried by the Session Manager plugin, a separate AWS binary",
            fix="install it as the AWS docs describe ('Install the Session Manager plugin for the AWS CLI' in the "
            "AWS Systems Manager User Guide: a .deb/.rpm/.pkg/.msi per platform), check that "
            f"'{PLUGIN}' runs, then try again",
        )
    return path


def plugin_argv(plugin: str, response: dict[str, Any], task: TaskTypeDef, region: str, endpoint: str) -> list[str]:
    """The plugin's command line, as the AWS CLI builds it: session, region, StartSession, profile,
    the SSM target `ecs:CLUSTER_TASKID_RUNTIMEID`, and the ECS endpoint."""
    container = response["containerName"]
    runtime_id = next((c.get("runtimeId", "") for c in task.get("containers", []) if c.get("name") == container), "")
    cluster = response["clusterArn"].rsplit("/", 1)[-1]
    task_id = response["taskArn"].rsplit("/", 1)[-1]
    target = {"Target": f"ecs:{cluster}_{task_id}_{runtime_id}"}
    profile = os.environ.get("AWS_PROFILE", "")
    return [plugin, json.dumps(response["session"]), region, "StartSession", profile, json.dumps(target), endpoint]


@contextmanager
def _signals_to_child() -> Iterator[None]:
    """Ctrl-C, Ctrl-\\ and Ctrl-Z belong to the remote shell: the plugin forwards them, we must not die."""
    names = ("SIGINT", "SIGQUIT", "SIGTSTP")
    sigs = [getattr(signal, n) for n in names if hasattr(signal, n)]
    old = {s: signal.signal(s, signal.SIG_IGN) for s in sigs}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def start_session(target: Target, service: str, command: str) -> int:
    """Open an ECS Exec session in `service`'s container of the newest RUNNING task holding it (its own
    service's, or the one task's); returns the plugin's exit code."""
    from botocore.exceptions import ClientError

    from mastofargate import aws
    from mastofargate.deploy.ecs import running_tasks
    from mastofargate.deploy.logs import container_of
    from mastofargate.errors import MastofargateError

    plugin = find_plugin()  # before any AWS call, like the AWS CLI: a missing tool is the first thing to fix
    holder = target.config.task_of(service)  # the ECS service whose task holds this container
    tasks = running_tasks(target, holder.name if holder else service)
    if not tasks:
        raise MastofargateError(
            f"Service {service} has no RUNNING task to exec into.",
            why="it is scaled to zero, still starting, or its tasks keep stopping",
            fix="see 'mastofargate status' and 'mastofargate logs " + service + "'",
        )
    task = tasks[0]
    ecs = target.client("ecs")
    with aws.aws_errors(f"starting ECS Exec in {service}"):
        try:
            response = ecs.execute_command(
                cluster=target.cluster,
                task=task["taskArn"],
                container=container_of(target, service),
                interactive=True,
                command=command,
            )
        except ClientError as e:
            message = e.response.get("Error", {}).get("Message", str(e))
            if "execute command" not in message.lower():
                raise
            raise MastofargateError(
                f"ECS Exec refused task {task['taskArn']}.",
                why=message,
                fix="wait a minute for the exec agent to start; if the task predates ECS Exec, "
                "redeploy ('mastofargate deploy') so new tasks have it",
            ) from None
    argv = plugin_argv(plugin, response, task, ecs.meta.region_name, ecs.meta.endpoint_url)
    with _signals_to_child():
        return subprocess.call(argv)


def exec_(
    service: Annotated[str, typer.Argument(help="Service to enter: web, streaming, sidekiq, ...")],
    command: Annotated[str, typer.Option("--command", help="Command to run in the container.")] = "/bin/bash",
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Open a shell (or run --command) in a running task of SERVICE through ECS Exec.

    Needs AWS's session-manager-plugin on PATH.
    """
    from mastofargate.config import load_config
    from mastofargate.errors import UsageError
    from mastofargate.target import Target

    cfg = load_config(config)
    names = [s.name for s in cfg.all_services]
    if service not in names:
        raise UsageError(f"{service!r} is not a service of {cfg.aws.name}.", fix="choose one of: " + ", ".join(names))
    from mastofargate.stack.services import EXEC_ROLES

    role = next(s.role for s in cfg.all_services if s.name == service)
    if role not in EXEC_ROLES:
        able = [s.name for s in cfg.all_services if s.role in EXEC_ROLES]
        raise UsageError(
            f"{service!r} does not allow ECS Exec.",
            why="only web and Sidekiq tasks run the exec agent (a shell in a database or Redis task is a way to "
            "lose data, and streaming has nothing to manage)",
            fix="choose one of: " + ", ".join(able) + " (they reach Postgres and Redis with the app's credentials)",
        )
    code = start_session(Target(cfg), service, command)
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("exec")(exec_)
