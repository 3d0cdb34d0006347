"""Issue 10 (hardening): user and AWS text printed literally, and every bad input refused before anything
changes: exit 2, a message naming the field and the value, no traceback, and the folder left as it was."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mastofargate.errors import EXIT_USAGE, MastofargateError

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "mastofargate.toml"
MARKUP = ("[/x]", "[bold]x[/bold]", "[red]", "\\[x]", "[link=http://e.invalid]y[/link]")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mastofargate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "MASTOFARGATE_DEBUG": ""},
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------- item 8


@pytest.mark.parametrize("value", MARKUP)
def test_error_text_is_printed_literally(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real Rich console (forced to a terminal, colours on) prints every part of the error verbatim."""
    from rich.console import Console

    from mastofargate import ui

    buffer = io.StringIO()
    monkeypatch.setattr(ui, "err_console", lambda: Console(file=buffer, force_terminal=True, width=200))
    ui.show_error(MastofargateError(f"bad {value}", why=f"why {value}", fix=f"fix {value}"))
    ui.warn(f"warn {value}")
    from rich.text import Text

    text = Text.from_ansi(buffer.getvalue()).plain
    for prefix in ("bad", "why", "fix", "warn"):
        assert f"{prefix} {value}" in text


@pytest.mark.parametrize("value", ["[/x]", "[bold]x[/bold]"])
def test_cli_error_with_markup_in_a_flag_is_literal(value: str, tmp_path: Path) -> None:
    (tmp_path / "mastofargate.toml").write_text(EXAMPLE.read_text())
    result = cli("synth", "--format", value, cwd=tmp_path)
    assert result.returncode == EXIT_USAGE
    assert f"--format {value!r} is not a template format" in result.stderr
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr


@pytest.mark.parametrize("value", ["[/x]", "[bold]x[/bold]"])
def test_cli_error_with_markup_in_the_config_is_literal(value: str, tmp_path: Path) -> None:
    cfg = tmp_path / "mastofargate.toml"
    cfg.write_text(EXAMPLE.read_text().replace('domain = "', f'domain = "{value}', 1))
    result = cli("synth", cwd=tmp_path)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert value in result.stderr and "server.domain" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_rich_view_prints_aws_text_literally(monkeypatch: pytest.MonkeyPatch) -> None:
    """Problems and names in `status` come from AWS; the terminal view must not read them as markup."""
    from rich.console import Console
    from rich.text import Text

    from mastofargate import ui
    from mastofargate.commands.status import render_rich

    buffer = io.StringIO()
    monkeypatch.setattr(ui, "console", lambda: Console(file=buffer, force_terminal=True, width=300))
    data = {
        "domain": "social.example.org",
        "name": "social",
        "region": "us-east-1",
        "url": "https://social.example.org",
        "deployed": True,
        "stacks": {"app": {"name": "social-app", "status": "UPDATE_COMPLETE"}},
        "services": [
            {
                "name": "web",
                "exists": True,
                "desired": 1,
                "running": 0,
                "pending": 0,
                "rollout_state": "FAILED",
                "image_tag": "[/x]",
            }
        ],
        "mastodon_version": None,
        "configured_mastodon_version": "v4.5.4",
        "healthy": False,
        "problems": ["service web: last rollout FAILED: [bold]x[/bold] [/x]"],
    }
    render_rich(data)
    text = Text.from_ansi(buffer.getvalue()).plain
    assert "[bold]x[/bold] [/x]" in text and "[/x]" in text
