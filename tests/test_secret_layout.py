"""The one secret in the templates: who receives which value, per container, in every shape.

Moving three secrets into one must not widen what any container receives (issue 12 item 6): the master
password reaches only the Postgres task, the database setup task and the backup task; streaming gets only
database and Redis credentials; the Redis CA's key, the owner setup record and the SMTP user's keys reach
no container that does not need them. Every value comes from the one `SecretArn` parameter, by a flat key
ECS can reach (`ARN:json-key::` reads only top-level keys). Checked against every generated shape.
(The logical mapping is also byte-for-byte the one the three secrets had: 650 containers over all shapes
compared with the last release before the change when it was made; the rules below keep it so.)
"""

from __future__ import annotations

from typing import Any

import pytest

from mastofargate.config import Config
from mastofargate.stack import build
from mastofargate.stack.secrets import APP_SECRET_KEYS, OTP_SECRET, flat_key, kind_of, split
from tests.conftest import COMBINATIONS, combo_config, combo_id, make_config

MASTODON = {"web", "sidekiq", "mastodon"}  # Rails processes: web, Sidekiq, one-off jobs
MASTER = {"postgres", "dbsetup", "backup"}  # the only containers that log in as the master user
# Across the VPC (verified TLS, or ElastiCache's), on the one task's loopback (verified TLS too), or plaintext.
REDIS_SETS = (
    {"redis_url", "redis_ca_cert"},
    {"redis_loopback_url", "redis_ca_cert"},
    {"redis_url"},
    {"redis_password"},
)
ENV_OF = {
    "database_owner_password": "DB_PASS",
    "redis_url": "REDIS_URL",
    "redis_loopback_url": "REDIS_URL",
    "redis_ca_cert": "REDIS_CA_CERT",
    "redis_password": "REDIS_PASSWORD",
    "redis_tls_cert": "REDIS_TLS_CERT",
    "redis_tls_key": "REDIS_TLS_KEY",
}


def containers(cfg: Config) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for tpl in build(cfg).values():
        for title, res in tpl.to_dict()["Resources"].items():
            if res["Type"] == "AWS::ECS::TaskDefinition":
                out += [(title, c) for c in res["Properties"]["ContainerDefinitions"]]
    return out


def received(c: dict[str, Any]) -> dict[str, str]:
    """env name -> flat key of the one secret; every entry must come from the SecretArn parameter."""
    out = {}
    for s in c.get("Secrets", []):
        ref, suffix = s["ValueFrom"]["Fn::Join"][1]
        assert ref == {"Ref": "SecretArn"}, f"{c['Name']}: {s['Name']} from {ref}"
        assert suffix.startswith(":") and suffix.endswith("::"), suffix
        out[s["Name"]] = suffix[1:-2]
    return out


def app_keys(cfg: Config) -> set[str]:
    keys = set(APP_SECRET_KEYS)
    major, minor = (int(x) for x in cfg.deployment.mastodon_version[1:].split(".")[:2])
    if (major, minor) < (4, 4):
        keys.add(OTP_SECRET)
    if cfg.smtp.login:
        keys.add("SMTP_PASSWORD")
    elif not cfg.smtp.server:
        keys |= {"SMTP_LOGIN", "SMTP_PASSWORD"}
    return keys


def check(cfg: Config) -> set[str]:
    """Asserts the rules for every container of `cfg`; returns the container names seen."""
    seen = set()
    for title, c in containers(cfg):
        name = c["Name"]
        got = received(c)
        keys = set(got.values())
        where = f"{title}/{name}"
        seen.add(name)
        assert "redis_ca_key" not in keys and "database_owner_setup" not in keys, where
        for env, key in got.items():
            kind, logical = kind_of(key)
            assert flat_key(kind, logical) == key
            assert env == (logical if kind == "app" else ENV_OF.get(key, env)), f"{where}: {env} <- {key}"
        if name in MASTER:
            assert got == {"POSTGRES_PASSWORD" if name == "postgres" else "PGPASSWORD": "database_password"}, where
            continue
        assert "database_password" not in keys, f"{where} receives the master password"
        redis = {k for k in keys if k.startswith("redis_")}
        if name in MASTODON | {"streaming"}:
            assert "database_owner_password" in keys, where
            assert redis in REDIS_SETS, f"{where}: {sorted(redis)}"
            # a one-off task runs apart from Redis: it never gets the loopback URL
            assert name != "mastodon" or "redis_loopback_url" not in redis, where
            app = keys - redis - {"database_owner_password"}
            assert app == (set() if name == "streaming" else app_keys(cfg)), where
        elif name == "queue-metrics":
            assert keys == redis and redis in REDIS_SETS, where
        elif name == "redis":
            tls = {"redis_tls_cert", "redis_tls_key"}
            assert keys in ({"redis_password"}, {"redis_password"} | tls), where
        else:
            assert keys == set(), f"{where} receives {sorted(keys)}"
    return seen


@pytest.mark.parametrize("combo", COMBINATIONS, ids=combo_id)
def test_each_container_receives_exactly_what_it_needs_from_the_one_secret(combo: tuple) -> None:
    seen = check(combo_config(combo))
    assert {"web", "streaming", "sidekiq", "mastodon", "backup"} <= seen


@pytest.mark.parametrize(
    "extra",
    [
        {"smtp": {"server": "smtp.example.org", "login": "mailer"}},
        {"smtp": {"server": "smtp.example.org"}},
        {"deployment": {"mastodon_version": "v4.3.9"}},
    ],
    ids=["smtp-login", "smtp-no-login", "mastodon-4.3"],
)
def test_mail_and_version_options_change_only_the_app_keys(extra: dict[str, Any]) -> None:
    cfg = make_config(extra)
    check(cfg)
    web = next(c for _, c in containers(cfg) if c["Name"] == "web")
    assert set(received(web).values()) >= app_keys(cfg)


def test_no_template_uses_one_of_the_three_older_secrets() -> None:
    """Nothing generated may keep a legacy secret in use (prune-legacy would break it): no dynamic reference,
    no `valueFrom`, no parameter. Only the execution role may still READ their names (tasks of the previous
    task definitions, while a deploy switches a server or CloudFormation rolls the switch back)."""
    import json
    import re

    # ARNs and IAM resources (secret:NAME-...), dynamic references (secretsmanager:NAME:); log groups
    # (/mastofargate/social/redis) are no secrets
    pattern = re.compile(r"secret(?:smanager)?:mastofargate/social/(app|database|redis)[-:]")
    for combo in COMBINATIONS:
        for name, tpl in build(combo_config(combo)).items():
            resources = tpl.to_dict()["Resources"]
            role = resources.get("ExecutionRole")
            if role is not None:
                statements = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
                read = next(s for s in statements if s["Sid"] == "ReadOurSecrets")
                assert read["Action"] == ["secretsmanager:GetSecretValue"] and len(read["Resource"]) == 4
                resources = {k: v for k, v in resources.items() if k != "ExecutionRole"}  # held by test_iam.py
            text = json.dumps({**tpl.to_dict(), "Resources": resources})
            assert not pattern.search(text), f"{combo_id(combo)}/{name}: {pattern.search(text)}"
            assert re.search(r"mastofargate/social/server", text), name


def test_flat_keys_round_trip_and_keep_kinds_apart() -> None:
    kinds = {
        "app": {"SECRET_KEY_BASE": "a", "SMTP_LOGIN": "b"},
        "database": {"password": "c", "owner_password": "d", "owner_setup": "e"},
        "redis": {"password": "f", "url": "g", "ca_key": "h"},
    }
    from mastofargate.stack.secrets import join

    flat = join(kinds)
    assert set(flat) == {
        "SECRET_KEY_BASE",
        "SMTP_LOGIN",
        "database_password",
        "database_owner_password",
        "database_owner_setup",
        "redis_password",
        "redis_url",
        "redis_ca_key",
    }
    assert split(flat) == kinds
    with pytest.raises(ValueError, match="unknown secret kind"):
        flat_key("smtp", "password")


@pytest.mark.parametrize(
    ("resource", "prop"),
    [("AWS::RDS::DBInstance", "MasterUserPassword"), ("AWS::ElastiCache::ReplicationGroup", "AuthToken")],
)
def test_switching_the_dynamic_references_updates_in_place(resource: str, prop: str) -> None:
    """The migration changes the dynamic reference strings of these two properties (to the same values).
    What stack/database.py and stack/cache.py rely on: neither is a create-only property in the CloudFormation
    resource schema (cfn-lint ships it), so CloudFormation updates the resource in place, never replaces it."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource).schema
    assert prop in schema["properties"]
    assert f"/properties/{prop}" not in schema.get("createOnlyProperties", [])
