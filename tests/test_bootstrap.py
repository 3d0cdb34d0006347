"""Secrets bootstrap against a real moto server: generated once, never replaced, only completed.

One secret, mastofargate/social/server, holding the app keys as they are and the database/redis keys with
their prefix (stack.secrets.flat_key). Migration from the three older secrets: tests/test_secret_migration.py.

DESIGN invariant 2: SECRET_KEY_BASE, the VAPID pair and the Active Record encryption keys are generated
once; a later deploy must not change them (the same Secrets Manager version stays current) and adds only
a key that is missing. Values must never reach the terminal.
"""

from __future__ import annotations

import base64
import json
import re
import string
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from mastofargate.config import Config
from mastofargate.deploy import bootstrap
from mastofargate.errors import MastofargateError
from mastofargate.target import Target
from tests.moto_server import aws_endpoint, moto_server  # noqa: F401

ALNUM = set(string.ascii_letters + string.digits)


@pytest.fixture
def target(aws_endpoint: str, config_factory: Callable[..., Config]) -> Target:  # noqa: F811
    return Target(config_factory())


SERVER = "mastofargate/social/server"


def values(name: str = SERVER) -> dict[str, Any]:
    return json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])


def app_keys(flat: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flat.items() if not k.startswith(("database_", "redis_"))}


def test_first_run_creates_one_secret_in_the_formats_mastodon_expects(target: Target) -> None:
    report = bootstrap.ensure_secrets(target)
    assert (report.action, report.legacy) == ("created", [])
    assert report.arn.startswith("arn:aws:secretsmanager:") and ":secret:mastofargate/social/server-" in report.arn
    names = [s["Name"] for s in boto3.client("secretsmanager").list_secrets()["SecretList"]]
    assert names == [SERVER]  # one secret: $0.40/month, not three
    flat = values()
    assert set(flat) - set(app_keys(flat)) == {"database_password", "database_owner_password", "redis_password"}
    app = app_keys(flat)
    for key in ("SECRET_KEY_BASE", "OTP_SECRET"):
        assert re.fullmatch(r"[0-9a-f]{128}", app[key]), key
    for key in (
        "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY",
        "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT",
        "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY",
    ):
        assert len(app[key]) == 32 and set(app[key]) <= ALNUM, key
    assert len({flat[k] for k in flat}) == len(flat)  # all different
    for key in ("database_password", "database_owner_password", "redis_password"):
        assert len(flat[key]) == 32 and set(flat[key]) <= ALNUM, key


def test_vapid_pair_is_a_p256_key_pair_in_webpush_format(target: Target) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    bootstrap.ensure_secrets(target)
    app = values()
    private = base64.urlsafe_b64decode(app["VAPID_PRIVATE_KEY"])
    public = base64.urlsafe_b64decode(app["VAPID_PUBLIC_KEY"])
    assert (len(app["VAPID_PRIVATE_KEY"]), len(app["VAPID_PUBLIC_KEY"])) == (44, 88)  # '='-padded, like Ruby's
    assert len(private) == 32 and len(public) == 65 and public[0] == 4
    derived = ec.derive_private_key(int.from_bytes(private, "big"), ec.SECP256R1()).public_key()
    assert derived.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint) == public


def test_later_runs_leave_the_secret_untouched(target: Target) -> None:
    bootstrap.ensure_secrets(target)
    before = bootstrap.version_ids(target)
    contents = values()
    report = bootstrap.ensure_secrets(target)
    assert report.action == "unchanged"
    assert not report.changed
    assert bootstrap.version_ids(target) == before
    assert values() == contents


def test_a_missing_key_is_added_and_nothing_else_changes(target: Target) -> None:
    bootstrap.ensure_secrets(target)
    app = values()
    older = {k: v for k, v in app.items() if k != "OTP_SECRET"}  # as if written by an older version
    boto3.client("secretsmanager").put_secret_value(SecretId=SERVER, SecretString=json.dumps(older))
    report = bootstrap.ensure_secrets(target)
    assert report.action == "added OTP_SECRET"
    now = values()
    assert {k: v for k, v in now.items() if k != "OTP_SECRET"} == older
    assert re.fullmatch(r"[0-9a-f]{128}", now["OTP_SECRET"])


def test_half_a_vapid_pair_is_refused_not_regenerated(target: Target) -> None:
    bootstrap.ensure_secrets(target)
    app = values()
    del app["VAPID_PUBLIC_KEY"]
    boto3.client("secretsmanager").put_secret_value(SecretId=SERVER, SecretString=json.dumps(app))
    with pytest.raises(MastofargateError) as err:
        bootstrap.ensure_secrets(target)
    assert err.value.exit_code == 2
    assert "half of the VAPID key pair" in err.value.what
    assert "VAPID_PRIVATE_KEY" in values()


def test_dry_run_creates_nothing(target: Target) -> None:
    report = bootstrap.ensure_secrets(target, dry_run=True)
    assert (report.action, report.arn) == ("would be created", "")
    assert boto3.client("secretsmanager").list_secrets()["SecretList"] == []


def test_redis_url_sets_only_the_url_key(target: Target) -> None:
    bootstrap.ensure_secrets(target)
    before = values()
    assert bootstrap.ensure_redis_url(target, "cache.example.internal") == "set redis_url"
    after = values()
    assert after == {**before, "redis_url": f"rediss://:{before['redis_password']}@cache.example.internal:6379"}
    versions = bootstrap.version_ids(target)
    assert bootstrap.ensure_redis_url(target, "cache.example.internal") == "unchanged"
    assert bootstrap.version_ids(target) == versions


def test_a_secret_scheduled_for_deletion_stops_the_deploy(target: Target) -> None:
    bootstrap.ensure_secrets(target)
    boto3.client("secretsmanager").delete_secret(SecretId=SERVER, RecoveryWindowInDays=7)
    with pytest.raises(MastofargateError) as err:
        bootstrap.ensure_secrets(target)
    assert "scheduled for deletion" in err.value.what
    assert "restore-secret" in err.value.fix


def test_no_secret_value_reaches_the_terminal(target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import plain_run

    run = plain_run(target.config)
    bootstrap.secrets_step(run, dry_run=False)
    bootstrap.ensure_redis_url(target, "cache.example.internal")
    bootstrap.secrets_step(run, dry_run=False)
    printed = capsys.readouterr()
    secrets = list(values().values())
    assert "created" in printed.out
    for secret in secrets:
        assert secret not in printed.out and secret not in printed.err


def test_smtp_password_is_an_operator_key_that_may_change_alone(target: Target) -> None:
    """SMTP_PASSWORD is supplied by the operator, so a new one replaces the old; generated keys never move."""
    bootstrap.ensure_secrets(target)
    before = values()
    assert not bootstrap.has_key(target, "app", "SMTP_PASSWORD")
    assert bootstrap.set_operator_value(target, "SMTP_PASSWORD", "first") is True
    assert bootstrap.set_operator_value(target, "SMTP_PASSWORD", "first") is False
    assert bootstrap.set_operator_value(target, "SMTP_PASSWORD", "rotated") is True
    after = values()
    assert after.pop("SMTP_PASSWORD") == "rotated"
    assert after == before


def test_deploy_with_smtp_login_but_no_password_stops_with_the_variable_to_set(
    target: Target, monkeypatch: pytest.MonkeyPatch, config_factory: Callable[..., Config]
) -> None:
    from mastofargate.errors import UsageError
    from tests.conftest import plain_run

    run = plain_run(config_factory({"smtp": {"server": "smtp.example.org", "login": "mailer"}}))
    bootstrap.ensure_secrets(run.target)
    with pytest.raises(UsageError, match="MASTOFARGATE_SMTP_PASSWORD"):
        bootstrap.store_smtp_password(run, None)
    bootstrap.store_smtp_password(run, "s3cret-value")
    assert values()["SMTP_PASSWORD"] == "s3cret-value"


def test_a_write_that_would_change_a_generated_key_is_refused_and_writes_nothing(target: Target) -> None:
    """Invariant 2 is an explicit check in the one write function, so it holds under `python -O` too."""
    bootstrap.ensure_secrets(target)
    name = SERVER
    before = values(name)
    versions = bootstrap.version_ids(target)
    for new in (
        {**before, "SECRET_KEY_BASE": "0" * 128},
        {k: v for k, v in before.items() if k != "VAPID_PUBLIC_KEY"},
        {**before, "database_password": "x" * 32},
        {k: v for k, v in before.items() if k != "redis_password"},
    ):
        with pytest.raises(bootstrap.SecretOverwriteRefused, match="REFUSED"):
            bootstrap.write_secret(target, name, new, before)
    app = bootstrap.read_kind(target, "app")
    with pytest.raises(bootstrap.SecretOverwriteRefused, match="REFUSED"):
        bootstrap.update_kind(target, "app", {**app, "SECRET_KEY_BASE": "0" * 128}, app)
    with pytest.raises(bootstrap.SecretOverwriteRefused, match="REFUSED"):
        bootstrap.update_kind(target, "app", {k: v for k, v in app.items() if k != "VAPID_PUBLIC_KEY"}, app)
    with pytest.raises(bootstrap.SecretOverwriteRefused):
        bootstrap.set_operator_value(target, "SECRET_KEY_BASE", "x")
    assert values(name) == before
    assert bootstrap.version_ids(target) == versions


def test_the_secret_guard_survives_python_optimisations() -> None:
    """`python -O` strips asserts; the guard is not one."""
    import subprocess
    import sys

    code = (
        "from mastofargate.deploy import bootstrap\n"
        "try:\n"
        "    bootstrap.write_secret(None, 'n', {'SECRET_KEY_BASE': 'b'}, {'SECRET_KEY_BASE': 'a'})\n"
        "except bootstrap.SecretOverwriteRefused:\n"
        "    print('refused')\n"
    )
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "refused"


def test_the_database_keys_get_an_owner_password_once_and_an_older_secret_gets_it_added(target: Target) -> None:
    """Mastodon's own role's password (deploy/dbowner.py): made with the secret, added to an older server's secret
    on its next deploy (and only it), and never regenerated nor overwritten once present."""
    bootstrap.ensure_secrets(target)
    first = values()
    database = bootstrap.read_kind(target, "database")
    assert set(database) == {"password", "owner_password"}
    assert database["owner_password"] == first["database_owner_password"]
    assert len(database["owner_password"]) == 32 and set(database["owner_password"]) <= ALNUM
    assert database["owner_password"] != database["password"]
    older = {k: v for k, v in first.items() if k != "database_owner_password"}  # before the owner role
    boto3.client("secretsmanager").put_secret_value(SecretId=SERVER, SecretString=json.dumps(older))
    assert bootstrap.ensure_secrets(target).action == "added database_owner_password"
    added = values()
    assert {k: v for k, v in added.items() if k != "database_owner_password"} == older
    assert added["database_owner_password"] not in (first["database_owner_password"], "")
    versions = bootstrap.version_ids(target)
    assert bootstrap.ensure_secrets(target).action == "unchanged"
    assert bootstrap.version_ids(target) == versions and values() == added
    with pytest.raises(bootstrap.SecretOverwriteRefused, match="database_owner_password"):
        bootstrap.write_secret(target, SERVER, {**added, "database_owner_password": "x" * 32}, added)
    # The setup record beside it is the deploy's own, rewritten when the setup runs again.
    db = bootstrap.read_kind(target, "database")
    bootstrap.update_kind(target, "database", {**db, "owner_setup": "1:abc"}, db)
    recorded = bootstrap.read_kind(target, "database")
    bootstrap.update_kind(target, "database", {**recorded, "owner_setup": "2:def"}, recorded)
    assert values()["database_owner_setup"] == "2:def"
    assert {k: v for k, v in values().items() if k != "database_owner_setup"} == added


def test_a_writer_changes_only_its_own_keys_even_after_another_writer_wrote(target: Target) -> None:
    """The read-merge-write path: a writer holding an older view of one kind applies only the keys it changed
    onto the secret as it is NOW; another writer's newer keys (any kind) survive."""
    bootstrap.ensure_secrets(target)
    stale_app = bootstrap.read_kind(target, "app")
    stale_redis = bootstrap.read_kind(target, "redis")
    bootstrap.ensure_redis_url(target, "cache.example.internal")  # another writer, after both reads
    bootstrap.set_operator_value(target, "SMTP_PASSWORD", "first")
    bootstrap.update_kind(target, "app", {**stale_app, "SMTP_LOGIN": "AKIAEXAMPLE"}, stale_app)
    bootstrap.update_kind(target, "redis", {**stale_redis, "tls_cert": "CERT"}, stale_redis)
    now = values()
    assert now["SMTP_PASSWORD"] == "first" and now["SMTP_LOGIN"] == "AKIAEXAMPLE"
    assert now["redis_url"].endswith("@cache.example.internal:6379") and now["redis_tls_cert"] == "CERT"
