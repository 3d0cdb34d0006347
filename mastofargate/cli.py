"""The `mastofargate` command: one thin function per verb, in mastofargate/commands/.

Each verb parses its flags, calls the core, and lets `MastofargateError` carry failures here, where
they become a message and an exit code, never a traceback. Heavy libraries (boto3, docker,
troposphere) are imported inside the verbs that need them, so `--help` stays fast.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module

# No pydantic plugins for a CLI: looking them up scans every installed distribution's metadata (~15 ms).
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import typer

from mastofargate import __version__

# Verb modules: each exposes `register(app)`. Order is the order of `--help`.
COMMAND_MODULES = (
    "init",
    "synth",
    "sizing",
    "cost",
    "plan",
    "deploy",
    "status",
    "versions",
    "logs",
    "run",
    "exec",
    "rollback",
    "destroy",
    "retire_key",
    "secrets",
    "backups",
    "backup",
    "restore",
    "images",
    "ci",
    "schema",
)

app = typer.Typer(
    name="mastofargate",
    help="Run a Mastodon server on AWS ECS Fargate with as little upkeep as possible.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mastofargate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Run a Mastodon server on AWS ECS Fargate with as little upkeep as possible."""


for _name in COMMAND_MODULES:
    import_module(f"mastofargate.commands.{_name}").register(app)


def main() -> None:
    from mastofargate.errors import EXIT_FAILED, MastofargateError

    try:
        app()
    except MastofargateError as e:
        from mastofargate.ui import show_error

        show_error(e)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except Exception as e:  # a bug: say so plainly; the traceback only on request
        if os.environ.get("MASTOFARGATE_DEBUG"):
            raise
        sys.stderr.write(
            f"error: unexpected {type(e).__name__}: {e}\n"
            "next: run again with MASTOFARGATE_DEBUG=1 for the traceback, and report it.\n"
        )
        sys.exit(EXIT_FAILED)
