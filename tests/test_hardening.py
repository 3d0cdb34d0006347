"""Issue 10 (hardening): user and AWS text printed literally, and every bad input refused before anything
changes: exit 2, a message naming the field and the value, no traceback, and the folder left as it was."""

from __future__ import annotations

import io
import os
import re
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


# ---------------------------------------------------------------------------------------------- item 10

BASE = """[server]
domain = "social.example.org"
admin_email = "admin@example.org"
{server}
[aws]
name = "social"
region = "us-east-1"
hosted_zone_id = "Z0123456789EXAMPLE"

[deployment]
profile = "{profile}"
{deployment}
{rest}
"""

# (field, value as shown in the message, TOML: server lines, deployment lines, other sections, profile)
BAD_CONFIGS = [
    ("media.schedule", "rate(0 minutes)", "", "", '[media]\nschedule = "rate(0 minutes)"', "personal"),
    ("media.schedule", "rate(1 minutes)", "", "", '[media]\nschedule = "rate(1 minutes)"', "personal"),
    ("media.schedule", "rate(5 weeks)", "", "", '[media]\nschedule = "rate(5 weeks)"', "personal"),
    ("media.schedule", "cron(0 25 * * ? *)", "", "", '[media]\nschedule = "cron(0 25 * * ? *)"', "personal"),
    ("media.schedule", "cron(x 4 * * ? *)", "", "", '[media]\nschedule = "cron(x 4 * * ? *)"', "personal"),
    ("media.schedule", "cron(0/0 4 * * ? *)", "", "", '[media]\nschedule = "cron(0/0 4 * * ? *)"', "personal"),
    ("media.schedule", "cron(0 4 * * * *)", "", "", '[media]\nschedule = "cron(0 4 * * * *)"', "personal"),
    ("media.schedule", "cron(0 4 ? * FOO *)", "", "", '[media]\nschedule = "cron(0 4 ? * FOO *)"', "personal"),
    ("media.schedule", "cron(0 4 * *)", "", "", '[media]\nschedule = "cron(0 4 * *)"', "personal"),
    ("media.schedule", "cron(0 9-5 * * ? *)", "", "", '[media]\nschedule = "cron(0 9-5 * * ? *)"', "personal"),
    ("media.schedule", "at(2030-01-01T04:00:00)", "", "", '[media]\nschedule = "at(2030-01-01T04:00:00)"', "personal"),
    ("deployment.spot", "'yes'", "", 'spot = "yes"', "", "personal"),
    ("deployment.spot", "'no'", "", 'spot = "no"', "", "personal"),
    ("deployment.container_insights", "'true'", "", 'container_insights = "true"', "", "personal"),
    ("deployment.spot", "1", "", "spot = 1", "", "personal"),
    ("server.single_user_mode", "'no'", 'single_user_mode = "no"', "", "", "personal"),
    ("media.versioning", "'off'", "", "", '[media]\nversioning = "off"', "personal"),
    ("media.cleanup_days", "'7'", "", "", '[media]\ncleanup_days = "7"', "personal"),
    ("smtp.server", "not a host", "", "", '[smtp]\nserver = "not a host"', "personal"),
    ("smtp.server", "smtp.example.org:587", "", "", '[smtp]\nserver = "smtp.example.org:587"', "personal"),
    ("smtp.from_address", "nobody", "", "", '[smtp]\nserver = "smtp.example.org"\nfrom_address = "nobody"', "personal"),
    (
        "smtp.from_address",
        "Evil\\nBcc: x@example.org <a@example.org>",
        "",
        "",
        '[smtp]\nserver = "smtp.example.org"\nfrom_address = "Evil\\nBcc: x@example.org <a@example.org>"',
        "personal",
    ),
    ("smtp.login", "a b", "", "", '[smtp]\nserver = "smtp.example.org"\nlogin = "a b"', "personal"),
    ("smtp", "login", "", "", '[smtp]\nlogin = "user"', "personal"),
    ("server.admin_email", "[/x]admin@example.org", "", "", "", "personal"),
    (
        "sidekiq",
        "mailers",
        "",
        "",
        '[[sidekiq]]\nname = "sidekiq"\nqueues = ["default", "push", "ingress", "pull", "scheduler", "fasp"]',
        "community",
    ),
    (
        "sidekiq",
        "fasp",
        "",
        "",
        '[[sidekiq]]\nname = "sidekiq"\nqueues = ["default", "push", "ingress", "mailers", "pull"]\n'
        '[[sidekiq]]\nname = "sidekiq-scheduler"\nqueues = ["scheduler"]',
        "community",
    ),
]


def _config_text(server: str, deployment: str, rest: str, profile: str) -> str:
    return BASE.format(server=server, deployment=deployment, rest=rest, profile=profile)


@pytest.fixture(scope="module")
def synthed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a good config's generated files, copied for each case (one synth for all of them)."""
    folder = tmp_path_factory.mktemp("synthed")
    (folder / "mastofargate.toml").write_text(_config_text("", "", "", "personal"))
    result = cli("synth", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


@pytest.mark.parametrize(("field", "shown", "server", "deployment", "rest", "profile"), BAD_CONFIGS)
def test_bad_config_is_refused_before_anything_is_written(
    field: str, shown: str, server: str, deployment: str, rest: str, profile: str, synthed: Path, tmp_path: Path
) -> None:
    import shutil

    work = tmp_path / "w"
    shutil.copytree(synthed, work)
    text = _config_text(server, deployment, rest, profile)
    if field == "server.admin_email":
        text = text.replace('admin_email = "admin@example.org"', f'admin_email = "{shown}"')
    (work / "mastofargate.toml").write_text(text)
    before = snapshot(work)
    for verb in (["synth"], ["cost", "--json"]):
        result = cli(*verb, cwd=work)
        assert result.returncode == EXIT_USAGE, (verb, result.stdout, result.stderr)
        assert field in result.stderr and shown in result.stderr, result.stderr
        assert "allowed" in result.stderr
        assert "Traceback" not in result.stderr and "unexpected" not in result.stderr
        assert result.stdout == ""  # --json prints JSON or nothing
        assert snapshot(work) == before


@pytest.mark.parametrize(
    "rest",
    [
        '[media]\nschedule = "rate(1 day)"',
        '[media]\nschedule = "rate(12 hours)"',
        '[media]\nschedule = "cron(15 3 ? * MON-FRI *)"',
        '[media]\nschedule = "cron(0 4 L * ? *)"',
        '[media]\nschedule = "cron(0 4 ? * 6#3 *)"',
        '[media]\nschedule = "cron(0 4 15W * ? 2026-2030)"',
        '[smtp]\nserver = "email-smtp.eu-west-1.amazonaws.com"\nlogin = "AKIAEXAMPLE"\n'
        'from_address = "Example Social <notifications@example.org>"',
        '[smtp]\nserver = "smtp.example.org"\nfrom_address = "notifications@example.org"',
    ],
)
def test_good_values_still_pass(rest: str) -> None:
    import tomllib

    from mastofargate.config import parse_config

    parse_config(tomllib.loads(_config_text("", "", rest, "personal")))


def test_punycode_tld_is_accepted() -> None:
    from mastofargate.config import parse_config
    from tests.conftest import config_dict

    data = config_dict()
    data["server"] = {"domain": "social.xn--p1ai", "admin_email": "admin@xn--e1afmkfd.xn--p1ai"}
    assert parse_config(data).server.domain == "social.xn--p1ai"
    data["server"]["domain"] = "social.xn--"
    with pytest.raises(MastofargateError, match=r"server\.domain"):
        parse_config(data)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "-1", "1e400", "2e6"])
def test_media_gb_must_be_a_finite_size(value: str, tmp_path: Path) -> None:
    (tmp_path / "mastofargate.toml").write_text(EXAMPLE.read_text())
    before = snapshot(tmp_path)
    for extra in ([], ["--compare"]):
        result = cli("cost", "--json", f"--media-gb={value}", *extra, cwd=tmp_path)
        assert result.returncode == EXIT_USAGE and result.stdout == ""
        assert "--media-gb" in result.stderr and "allowed: a number from 0" in result.stderr
        assert "Traceback" not in result.stderr
    assert snapshot(tmp_path) == before
    good = cli("cost", "--json", "--media-gb=12.5", cwd=tmp_path)
    assert good.returncode == 0
    assert "Infinity" not in good.stdout and "NaN" not in good.stdout


def test_schedule_parser_is_the_cost_models() -> None:
    """One parser: config validation and the cost model agree on every expression."""
    from mastofargate import cost, schedule

    assert cost.runs_per_month("cron(0 4 * * ? *)") == schedule.runs_per_month("cron(0 4 * * ? *)")
    with pytest.raises(schedule.ScheduleError):
        cost.runs_per_month("rate(0 minutes)")


# ------------------------------------------------------------------- deploy/plan flags, before any AWS call


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"mastodon_tag": "v4.5.4 "}, "--mastodon-tag 'v4.5.4 '"),
        ({"mastodon_tag": "repo/mastodon:v4"}, "only the tag"),
        ({"streaming_tag": "-v4"}, "--streaming-tag '-v4'"),
        ({"streaming_tag": "x" * 129}, "--streaming-tag"),
        ({"mastodon_tag": "[/x]"}, "--mastodon-tag '[/x]'"),
        ({"admin_username_value": "ad.min"}, "--admin-username 'ad.min'"),
        ({"admin_username_value": "a" * 31}, "--admin-username"),
        ({"admin_username_value": ""}, "--admin-username ''"),
        ({"admin_username_value": "bob smith"}, "--admin-username 'bob smith'"),
        ({"build": True, "mastodon_tag": "v1"}, "--build makes its own tags"),
    ],
)
def test_deploy_flags_are_checked_without_aws(kwargs: dict, needle: str) -> None:
    from mastofargate.validate import deploy_flags

    with pytest.raises(MastofargateError) as e:
        deploy_flags(**kwargs)
    assert e.value.exit_code == EXIT_USAGE and needle in str(e.value)


def test_images_json_tags_are_checked(tmp_path: Path) -> None:
    from mastofargate.validate import deploy_flags

    good = tmp_path / "good.json"
    good.write_text('{"mastodon": "v4.5.4-abc", "streaming": {"tag": "v4.5.4-def"}}')
    deploy_flags(images_json=good, mastodon_tag="v4.5.4-abc", admin_username_value="owner_1")
    bad = tmp_path / "bad.json"
    bad.write_text('{"mastodon": "v4.5.4 abc", "streaming": "v4.5.4-def"}')
    with pytest.raises(MastofargateError, match=re.escape("mastodon 'v4.5.4 abc' is not an image tag")):
        deploy_flags(images_json=bad)
    with pytest.raises(MastofargateError, match=r"missing\.json"):
        deploy_flags(images_json=tmp_path / "missing.json")
