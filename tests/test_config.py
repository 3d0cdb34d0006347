"""Config validation: every bad value is reported with its field, the value and what is allowed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mastofargate.config import PROFILE_DEFAULTS, load_config, parse_config
from mastofargate.errors import EXIT_USAGE, UsageError
from tests.conftest import config_dict, make_config


def _error(data: dict) -> str:
    with pytest.raises(UsageError) as e:
        parse_config(data)
    assert e.value.exit_code == EXIT_USAGE
    return str(e.value)


@pytest.mark.parametrize("profile", list(PROFILE_DEFAULTS))
def test_profile_defaults_apply_when_unset(profile: str) -> None:
    cfg = make_config(profile=profile)
    for key, value in PROFILE_DEFAULTS[profile].items():
        assert getattr(cfg.deployment, key) == value


def test_explicit_choice_beats_profile_default() -> None:
    assert make_config(profile="large", spot=True, cache="task").deployment.cache == "task"


@pytest.mark.parametrize(
    ("section", "field", "value", "allowed"),
    [
        ("server", "domain", "not_a_host", "a fully qualified name"),
        ("server", "domain", "social", "a fully qualified name"),
        ("server", "admin_email", "nobody", "name@example.org"),
        ("aws", "name", "Social_Prod", "lowercase letters"),
        ("aws", "region", "mars-1", "a region code"),
        ("aws", "hosted_zone_id", "zone-1", "Z0123456789ABC"),
        ("deployment", "profile", "huge", "'personal', 'community' or 'large'"),
        ("deployment", "database", "aurora", "'rds' or 'task'"),
        ("deployment", "arch", "riscv", "'arm64' or 'x86_64'"),
        ("deployment", "mastodon_version", "v4.2.9", "v4.3.0 or newer"),
        ("deployment", "mastodon_version", "latest", "vMAJOR.MINOR.PATCH"),
        ("rds", "postgres_version", "13.4", "17.6"),
        ("rds", "instance_class", "db.x9.huge", "db.t4g.micro"),
        ("elasticache", "node_type", "cache.t4g.tiny", "cache.t4g.micro"),
        ("logs", "retention_days", 10, "14"),
        ("media", "preview_card_days", 7, "greater than or equal to 14"),
        ("media", "schedule", "every day", "rate(N minutes|hours|days)"),
    ],
)
def test_bad_value_names_field_value_and_allowed(section: str, field: str, value: object, allowed: str) -> None:
    data = config_dict()
    data.setdefault(section, {})[field] = value
    message = _error(data)
    assert f"{section}.{field}" in message
    assert repr(value) in message or str(value) in message
    assert allowed in message


def test_unknown_setting_is_refused() -> None:
    data = config_dict()
    data["deployment"]["profle"] = "personal"
    message = _error(data)
    assert "deployment.profle: 'profle' (= 'personal') is not a known setting (did you mean 'profile'?)" in message
    assert "allowed: profile, database, cache, arch, spot" in message


def test_certificate_source_is_required() -> None:
    data = config_dict()
    del data["aws"]["hosted_zone_id"]
    assert "neither hosted_zone_id nor certificate_arn" in _error(data)


def test_certificate_in_another_region_is_refused() -> None:
    data = config_dict()
    data["aws"] = {
        "name": "social",
        "region": "eu-west-1",
        "certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/" + "0" * 8 + "-0000-0000-0000-" + "0" * 12,
    }
    assert "is not in region eu-west-1" in _error(data)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"cpu": 300}, "cpu 300 is not a Fargate CPU size"),
        ({"cpu": 256, "memory": 4096}, "memory 4096 MiB is not allowed with cpu 256"),
        ({"cpu": 1024, "memory": 9216}, "allowed: 2048-8192 MiB in steps of 1024"),
        ({"memory": 2048, "container_memory": 3072}, "container_memory 3072 MiB does not fit the task's 2048 MiB"),
        ({"min": 2, "desired": 1}, "min <= desired <= max"),
    ],
)
def test_bad_service_size_is_refused(override: dict, needle: str) -> None:
    data = config_dict()
    data["services"] = {"web": override}
    message = _error(data)
    assert "services.web" in message and needle in message


def test_override_of_unknown_service_lists_the_real_ones() -> None:
    data = config_dict()
    data["services"] = {"postgres": {"cpu": 512, "memory": 1024}}  # rds: there is no postgres task
    assert "'postgres' is not a service of this deployment; allowed: web, streaming, sidekiq" in _error(data)


def test_scheduler_queue_in_two_sidekiq_services_is_refused() -> None:
    data = config_dict(profile="community")
    data["sidekiq"] = [
        {"name": "sidekiq-a", "queues": ["default", "scheduler"]},
        {"name": "sidekiq-b", "queues": ["push", "scheduler"]},
    ]
    message = _error(data)
    assert "scheduler queue is in 2 Sidekiq services (sidekiq-a, sidekiq-b)" in message
    assert "allowed: exactly one" in message


def test_scheduler_queue_missing_is_refused() -> None:
    data = config_dict()
    data["sidekiq"] = [{"name": "sidekiq", "queues": ["default", "push"]}]
    assert "scheduler queue is in 0 Sidekiq services" in _error(data)


def test_scheduler_service_cannot_scale_out() -> None:
    data = config_dict()
    data["services"] = {"sidekiq": {"max": 3}}
    assert "services.sidekiq: max 3; allowed: 1" in _error(data)


def test_custom_sidekiq_split_is_resolved_with_derived_pool() -> None:
    data = config_dict(profile="community")
    data["sidekiq"] = [
        {
            "name": "sidekiq",
            "queues": ["default,8", "push,6", "ingress,4", "mailers,2", "pull", "fasp"],
            "sidekiq_concurrency": 10,
            "max": 2,
            "min": 1,
            "desired": 1,
        },
        {"name": "sidekiq-scheduler", "queues": ["scheduler"], "sidekiq_concurrency": 2, "cpu": 256, "memory": 512},
    ]
    cfg = parse_config(data)
    rows = {s.name: s for s in cfg.resolved_services}
    assert rows["sidekiq"].db_pool == 10 and not rows["sidekiq"].singleton
    assert rows["sidekiq-scheduler"].singleton and rows["sidekiq-scheduler"].container_memory == 512


def test_connection_budget_above_max_connections_is_refused() -> None:
    data = config_dict()
    data["services"] = {"web": {"cpu": 1024, "memory": 4096, "max": 6, "web_concurrency": 4}}
    message = _error(data)
    assert "Postgres connections at peak" in message and "RDS db.t4g.micro allows 90" in message


def test_load_config_reports_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\ndomain = 1\n")
    with pytest.raises(UsageError, match="is not valid TOML"):
        load_config(bad)


def test_cli_bad_config_exits_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "mastofargate.toml"
    path.write_text(
        '[server]\ndomain = "social.example.org"\nadmin_email = "a@example.org"\n'
        '[aws]\nname = "social"\nhosted_zone_id = "Z0123456789EXAMPLE"\n'
        "[services.web]\ncpu = 256\nmemory = 4096\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mastofargate", "synth", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == EXIT_USAGE
    assert "services.web" in result.stderr and "memory 4096 MiB is not allowed with cpu 256" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "cfn").exists()


def test_schema_command_prints_the_json_schema() -> None:
    result = subprocess.run([sys.executable, "-m", "mastofargate", "schema"], capture_output=True, text=True)
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert {"server", "aws", "deployment", "services", "sidekiq"} <= set(schema["properties"])
    assert schema["required"] == ["server", "aws"]
