"""init: the flags, non-interactive and interactive runs, and refusing to overwrite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mastofargate.cli import app
from mastofargate.config import load_config

FLAGS = [
    "--domain",
    "--web-domain",
    "--region",
    "--name",
    "--profile",
    "--database",
    "--edge",
    "--cache",
    "--arch",
    "--spot",
    "--no-spot",
    "--hosted-zone-id",
    "--certificate-arn",
    "--admin-email",
    "--mastodon-version",
    "--repository",
    "--layout",
    "--yes",
    "--config",
]


def init(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mastofargate", "init", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def test_every_flag_exists() -> None:
    text = CliRunner().invoke(app, ["init", "--help"], terminal_width=200).output
    for flag in FLAGS:
        assert flag in text, flag


def test_non_interactive_with_flags_writes_a_valid_config(tmp_path: Path) -> None:
    result = init(
        "--domain",
        "Social.Example.org",
        "--hosted-zone-id",
        "Z0123456789EXAMPLE",
        "--profile",
        "community",
        "--arch",
        "x86_64",
        "--no-spot",
        "--mastodon-version",
        "4.5.4",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    cfg = load_config(tmp_path / "mastofargate.toml")
    assert cfg.server.domain == "social.example.org"
    assert cfg.aws.name == "social" and cfg.server.admin_email == "admin@social.example.org"
    assert (cfg.deployment.profile, cfg.deployment.cache, cfg.deployment.arch) == ("community", "task", "x86_64")
    assert cfg.deployment.spot is False and cfg.deployment.mastodon_version == "v4.5.4"
    text = (tmp_path / "mastofargate.toml").read_text()
    assert "can NEVER change" in text  # the permanent setting is explained where it is set


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    (tmp_path / "mastofargate.toml").write_text("keep me\n")
    result = init("--domain", "social.example.org", "--hosted-zone-id", "Z0123456789EXAMPLE", cwd=tmp_path)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert (tmp_path / "mastofargate.toml").read_text() == "keep me\n"
    forced = init("--domain", "social.example.org", "--hosted-zone-id", "Z0123456789EXAMPLE", "--force", cwd=tmp_path)
    assert forced.returncode == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--hosted-zone-id", "Z0123456789EXAMPLE"], "--domain is required"),
        (["--domain", "social.example.org"], "neither --hosted-zone-id nor --certificate-arn"),
        (
            ["--domain", "social.example.org", "--hosted-zone-id", "Z0123456789EXAMPLE", "--profile", "tiny"],
            "deployment.profile: 'tiny'",
        ),
        (["--domain", "bad_domain", "--hosted-zone-id", "Z0123456789EXAMPLE"], "is not a hostname"),
    ],
)
def test_bad_or_missing_input_exits_2_and_writes_nothing(tmp_path: Path, args: list[str], needle: str) -> None:
    result = init(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "mastofargate.toml").exists()


def test_interactive_prompts_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The terminal is simulated (CliRunner has no TTY): only `stdin_is_tty` is replaced."""
    monkeypatch.setattr("mastofargate.ui.stdin_is_tty", lambda: True)
    answers = "\n".join(
        ["social.example.org", "personal", "", "Z0123456789EXAMPLE", "", "", "", "", "", "", "n", "", "one-task", ""]
    )
    result = CliRunner().invoke(app, ["init", "--config", str(tmp_path / "m.toml")], input=answers + "\n")
    assert result.exit_code == 0, result.output
    cfg = load_config(tmp_path / "m.toml")
    assert cfg.aws.hosted_zone_id == "Z0123456789EXAMPLE" and cfg.deployment.spot is False
    assert cfg.deployment.edge == "direct"  # the default answer for a personal server (then asked for the zone)
    assert cfg.deployment.layout == "one-task"  # asked: the personal profile offers it
    assert (cfg.deployment.database, cfg.deployment.cache) == ("task", "task")  # the default answers


@pytest.mark.parametrize(
    ("flags", "want"),
    [
        # a personal server with its zone in Route 53: the cheapest shape, everything in one task, no ALB
        (["--hosted-zone-id", "Z0123456789EXAMPLE"], ("task", "task", "one-task", "direct")),
        # a certificate ARN says the load balancer was meant: the one task behind it
        (
            [
                "--certificate-arn",
                "arn:aws:acm:us-east-1:123456789012:certificate/12345678-1234-1234-1234-123456789012",
            ],
            ("task", "task", "one-task", "alb"),
        ),
        # flags win over the proposal
        (
            ["--hosted-zone-id", "Z0123456789EXAMPLE", "--database", "rds", "--layout", "split", "--edge", "alb"],
            ("rds", "task", "split", "alb"),
        ),
        # community: no load balancer and Redis as a task; Postgres stays on RDS
        (["--hosted-zone-id", "Z0123456789EXAMPLE", "--profile", "community"], ("rds", "task", "split", "direct")),
        # ... and behind the ALB when a certificate says so
        (
            [
                "--profile",
                "community",
                "--certificate-arn",
                "arn:aws:acm:us-east-1:123456789012:certificate/12345678-1234-1234-1234-123456789012",
            ],
            ("rds", "task", "split", "alb"),
        ),
        # large keeps the managed shape
        (["--hosted-zone-id", "Z0123456789EXAMPLE", "--profile", "large"], ("rds", "elasticache", "split", "alb")),
    ],
)
def test_init_proposes_the_cheapest_sound_server(tmp_path: Path, flags: list[str], want: tuple[str, ...]) -> None:
    result = init("--domain", "social.example.org", *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    cfg = load_config(tmp_path / "mastofargate.toml")
    d = cfg.deployment
    assert (d.database, d.cache, d.layout, d.edge) == want


def test_a_config_without_the_keys_keeps_the_managed_shape(tmp_path: Path) -> None:
    """The proposal lives in init only: an existing config that never named these keys (a deployed server)
    still means RDS, ElastiCache, split and the ALB, so no upgrade changes a server's shape."""
    from tests.conftest import make_config

    d = make_config(profile="personal").deployment
    assert (d.database, d.cache, d.layout, d.edge) == ("rds", "elasticache", "split", "alb")


def test_direct_edge_asks_for_the_zone_it_keeps_the_record_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mastofargate.ui.stdin_is_tty", lambda: True)
    answers = "\n".join(
        ["social.example.org", "personal", "direct", "Z0123456789EXAMPLE", "", "", "", "", "", "", "n", "", "", ""]
    )
    result = CliRunner().invoke(app, ["init", "--config", str(tmp_path / "m.toml")], input=answers + "\n")
    assert result.exit_code == 0, result.output
    assert "keeps the record" in result.output
    cfg = load_config(tmp_path / "m.toml")
    assert (cfg.deployment.edge, cfg.aws.hosted_zone_id) == ("direct", "Z0123456789EXAMPLE")


def test_direct_edge_from_flags_and_its_errors(tmp_path: Path) -> None:
    ok = init(
        "--domain", "social.example.org", "--hosted-zone-id", "Z0123456789EXAMPLE", "--edge", "direct", cwd=tmp_path
    )
    assert ok.returncode == 0, ok.stderr
    text = (tmp_path / "mastofargate.toml").read_text()
    assert 'edge = "direct"' in text and "Let's Encrypt" in text
    assert "direct edge" in ok.stdout
    # Without a zone: a usage error naming the flag; nothing written.
    other = tmp_path / "other"
    other.mkdir()
    no_zone = init("--domain", "social.example.org", "--edge", "direct", cwd=other)
    assert no_zone.returncode == 2 and "--hosted-zone-id" in no_zone.stderr and "Traceback" not in no_zone.stderr
    # An ACM certificate is of no use to the direct edge: the fix names only the zone.
    assert "--certificate-arn" not in no_zone.stderr.split("next:", 1)[1]
    assert not (other / "mastofargate.toml").exists()
    bad = init("--domain", "social.example.org", "--hosted-zone-id", "Z0123456789EXAMPLE", "--edge", "nlb", cwd=other)
    assert bad.returncode == 2 and "deployment.edge" in bad.stderr and "'alb'" in bad.stderr
    assert not (other / "mastofargate.toml").exists()


def test_certificate_arn_instead_of_zone(tmp_path: Path) -> None:
    arn = "arn:aws:acm:eu-west-1:123456789012:certificate/12345678-1234-1234-1234-123456789012"
    result = init(
        "--domain",
        "social.example.org",
        "--certificate-arn",
        arn,
        "--region",
        "eu-west-1",
        "--web-domain",
        "web.example.org",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    cfg = load_config(tmp_path / "mastofargate.toml")
    assert cfg.aws.certificate_arn == arn and cfg.server.host == "web.example.org"


def test_repository_and_overlay_folder(tmp_path: Path) -> None:
    """init records the CI repository and creates images/mastodon/overlay/ with its README (from the package);
    a README the user already has is left as it is."""
    user_readme = tmp_path / "other" / "images" / "mastodon" / "overlay" / "README.md"
    user_readme.parent.mkdir(parents=True)
    user_readme.write_text("mine")
    zone = ("--hosted-zone-id", "Z0123456789EXAMPLE")
    result = init("--domain", "social.example.org", *zone, "--repository", "example/my-server", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    cfg = load_config(tmp_path / "mastofargate.toml")
    assert cfg.ci.repository == "example/my-server" and cfg.ci.branch == "main"
    readme = tmp_path / "images" / "mastodon" / "overlay" / "README.md"
    assert "copied over `/opt/mastodon/`" in readme.read_text()
    again = init("--domain", "social.example.org", *zone, "--config", "other/mastofargate.toml", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert user_readme.read_text() == "mine"
    assert load_config(tmp_path / "other" / "mastofargate.toml").ci.repository is None


@pytest.mark.parametrize("value", ["example", "example/my server", "ex*/repo", "example/..", "-x/y"])
def test_bad_repository_is_refused(tmp_path: Path, value: str) -> None:
    result = init(
        "--domain", "social.example.org", "--hosted-zone-id", "Z0123456789EXAMPLE", "--repository", value, cwd=tmp_path
    )
    assert result.returncode == 2
    assert "ci.repository" in result.stderr and value in result.stderr and "owner/name" in result.stderr
    assert not (tmp_path / "mastofargate.toml").exists()
