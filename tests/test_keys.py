"""`secrets export` / `secrets import` against a real moto server (DESIGN invariants 2 and 7).

The keys that make a backup readable leave AWS encrypted with a passphrase and come back into a new account
or region; an import never replaces a key that exists with another value, and changes nothing when it refuses.
The CLI runs as a subprocess so exit codes and the absence of tracebacks are what a user sees.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from mastofargate import aws
from mastofargate.config import Config
from mastofargate.deploy import bootstrap, keys
from mastofargate.errors import MastofargateError
from mastofargate.stack.secrets import join, split
from mastofargate.target import Target
from tests.conftest import make_config
from tests.moto_server import aws_endpoint, moto_server, subprocess_env  # noqa: F401

PASSPHRASE = "correct horse battery staple"
EXPORTABLE = {
    "SECRET_KEY_BASE",
    "VAPID_PRIVATE_KEY",
    "VAPID_PUBLIC_KEY",
    "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY",
    "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT",
    "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY",
}


def write_config(tmp_path: Path, region: str = "us-east-1", domain: str = "social.example.org") -> Path:
    path = tmp_path / f"mastofargate-{region}.toml"
    path.write_text(
        f'[server]\ndomain = "{domain}"\nadmin_email = "admin@example.org"\n\n'
        f'[aws]\nname = "social"\nregion = "{region}"\nhosted_zone_id = "Z0123456789EXAMPLE"\n'
        # outside us-east-1 the media name must be chosen explicitly (CloudFront's certificates live there)
        + ("" if region == "us-east-1" else '\n[media]\ndomain = "cloudfront"\n')
    )
    return path


def cli(url: str, *args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mastofargate", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**subprocess_env(url), **(env or {})},
        timeout=120,
    )


def server_secret(region: str) -> dict[str, str]:
    sm = boto3.client("secretsmanager", region_name=region)
    return json.loads(sm.get_secret_value(SecretId="mastofargate/social/server")["SecretString"])


def secret_values(region: str, kind: str) -> dict[str, str]:
    """One logical kind's keys of the server's one secret (read straight from Secrets Manager)."""
    return split(server_secret(region))[kind]


def in_region(target: Target, region: str) -> Target:
    return Target(target.config.model_copy(update={"aws": target.config.aws.model_copy(update={"region": region})}))


@pytest.fixture
def source(aws_endpoint: str, config_factory: Callable[..., Config]) -> Target:  # noqa: F811
    target = Target(config_factory())
    bootstrap.ensure_secrets(target)
    bootstrap.ensure_redis_url(target, "cache.old.example")
    return target


def test_the_redis_tasks_ca_and_certificate_are_never_exported(aws_endpoint: str) -> None:  # noqa: F811
    """The CA's key stays in the redis secret only (issue 10 item 5); a new place gets a new CA."""
    from mastofargate.deploy import redistls

    target = Target(make_config(cache="task"))
    bootstrap.ensure_secrets(target)
    redistls.ensure(target)
    assert {"ca_cert", "ca_key", "tls_cert", "tls_key", "url"} <= set(secret_values("us-east-1", "redis"))
    assert keys.read_keys(target)["redis"] == {"password": secret_values("us-east-1", "redis")["password"]}


def test_round_trip_into_a_new_region_restores_every_key(source: Target, aws_endpoint: str, tmp_path: Path) -> None:  # noqa: F811
    file = tmp_path / "keys.mastofargate"
    result = cli(
        aws_endpoint, "secrets", "export", "--to", str(file), "-c", str(write_config(tmp_path)), stdin=PASSPHRASE
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    text = file.read_text()
    assert text.startswith("mastofargate-keys 1\n")
    original = {kind: secret_values("us-east-1", kind) for kind in keys.KINDS}
    for value in (*original["app"].values(), original["database"]["password"]):
        assert value not in text and value not in result.stdout + result.stderr  # encrypted, never printed
    header = json.loads(text.splitlines()[1])
    assert header["kdf"]["name"] == "scrypt" and header["kdf"]["n"] >= 2**17 and header["cipher"] == "AES-256-GCM"

    new = write_config(tmp_path, region="eu-west-1")
    result = cli(aws_endpoint, "secrets", "import", "--from", str(file), "-c", str(new), stdin=PASSPHRASE + "\n")
    assert result.returncode == 0, result.stderr
    restored = {kind: secret_values("eu-west-1", kind) for kind in keys.KINDS}
    assert set(restored["app"]) >= EXPORTABLE
    assert restored["app"] == original["app"]
    assert restored["database"] == original["database"]
    # the Redis URL names the old region's cache: the deploy derives it again, the import leaves it out
    assert restored["redis"] == {"password": original["redis"]["password"]}

    # a second import into the same place finds everything equal and writes nothing
    aws.reset_clients()
    before = bootstrap.version_ids(in_region(source, "eu-west-1"))
    again = cli(aws_endpoint, "secrets", "import", "--from", str(file), "-c", str(new), stdin=PASSPHRASE)
    assert again.returncode == 0 and "Nothing to import" in again.stdout
    aws.reset_clients()
    after = bootstrap.version_ids(in_region(source, "eu-west-1"))
    assert before == after


def test_the_passphrase_from_a_named_variable(source: Target, aws_endpoint: str, tmp_path: Path) -> None:  # noqa: F811
    file = tmp_path / "k"
    env = {"MY_PASS": PASSPHRASE}
    cfg = str(write_config(tmp_path))
    assert (
        cli(
            aws_endpoint, "secrets", "export", "--to", str(file), "-c", cfg, "--passphrase-env", "MY_PASS", env=env
        ).returncode
        == 0
    )
    loaded = keys.load(file, PASSPHRASE)
    assert loaded.secrets["app"] == secret_values("us-east-1", "app")
    missing = cli(
        aws_endpoint, "secrets", "export", "--to", str(tmp_path / "k2"), "-c", cfg, "--passphrase-env", "NOPE"
    )
    assert missing.returncode == 2 and "NOPE" in missing.stderr and "Traceback" not in missing.stderr


def test_wrong_passphrase_is_refused_clearly(source: Target, aws_endpoint: str, tmp_path: Path) -> None:  # noqa: F811
    file = tmp_path / "keys"
    keys.export_keys(source, file, PASSPHRASE)
    new = write_config(tmp_path, region="eu-west-1")
    result = cli(aws_endpoint, "secrets", "import", "--from", str(file), "-c", str(new), stdin="not the passphrase")
    assert result.returncode == 2
    assert "wrong passphrase" in result.stderr and "Traceback" not in result.stderr
    assert boto3.client("secretsmanager", region_name="eu-west-1").list_secrets()["SecretList"] == []


@pytest.mark.parametrize("part", ["body", "header", "magic"])
def test_a_changed_file_is_refused(source: Target, tmp_path: Path, part: str) -> None:
    file = tmp_path / "keys"
    keys.export_keys(source, file, PASSPHRASE)
    lines = file.read_bytes().split(b"\n")
    if part == "body":
        body = bytearray(lines[2])
        body[40] = ord("A") if body[40] != ord("A") else ord("B")
        lines[2] = bytes(body)
    elif part == "header":  # a weaker KDF cost written into the header: authenticated, so it fails
        header = json.loads(lines[1])
        header["source"]["name"] = "other"
        lines[1] = json.dumps(header, sort_keys=True).encode()
    else:
        lines[0] = b"something else"
    file.write_bytes(b"\n".join(lines))
    with pytest.raises(MastofargateError) as err:
        keys.load(file, PASSPHRASE)
    assert err.value.exit_code == 2
    assert ("changed" in err.value.what) if part != "magic" else ("not a readable" in err.value.what)


def test_import_over_different_keys_is_refused_and_changes_nothing(
    source: Target,
    aws_endpoint: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    file = tmp_path / "keys"
    keys.export_keys(source, file, PASSPHRASE)
    other = in_region(source, "eu-west-1")
    bootstrap.ensure_secrets(other)  # the new region already has its own (different) keys
    before_ids = bootstrap.version_ids(other)
    before = {kind: secret_values("eu-west-1", kind) for kind in keys.KINDS}
    result = cli(
        aws_endpoint,
        "secrets",
        "import",
        "--from",
        str(file),
        "-c",
        str(write_config(tmp_path, "eu-west-1")),
        stdin=PASSPHRASE,
    )
    assert result.returncode == 2, result.stderr
    assert "Refusing to import" in result.stderr and "SECRET_KEY_BASE" in result.stderr
    assert "Traceback" not in result.stderr
    aws.reset_clients()
    assert bootstrap.version_ids(other) == before_ids
    assert {kind: secret_values("eu-west-1", kind) for kind in keys.KINDS} == before


def test_import_adds_only_missing_keys_to_an_existing_secret(source: Target, tmp_path: Path) -> None:
    file = tmp_path / "keys"
    keys.export_keys(source, file, PASSPHRASE)
    loaded = keys.load(file, PASSPHRASE)
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    before = server_secret("us-east-1")
    partial = {k: v for k, v in before.items() if k != "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY"}
    sm.put_secret_value(SecretId="mastofargate/social/server", SecretString=json.dumps(partial))
    plan = keys.import_keys(source, loaded.secrets)
    assert plan.add == {"app": ["ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY"]} and not plan.create
    assert secret_values("us-east-1", "app") == loaded.secrets["app"]
    assert server_secret("us-east-1") == before  # every other key (redis_url too) as it was
    assert join(loaded.secrets).items() <= before.items()


def test_export_refuses_to_overwrite_without_force(source: Target, aws_endpoint: str, tmp_path: Path) -> None:  # noqa: F811
    file = tmp_path / "keys"
    file.write_text("an older export")
    cfg = str(write_config(tmp_path))
    result = cli(aws_endpoint, "secrets", "export", "--to", str(file), "-c", cfg, stdin=PASSPHRASE)
    assert result.returncode == 2 and "already exists" in result.stderr and "--force" in result.stderr
    assert file.read_text() == "an older export"
    forced = cli(aws_endpoint, "secrets", "export", "--to", str(file), "-c", cfg, "--force", stdin=PASSPHRASE)
    assert forced.returncode == 0, forced.stderr
    assert stat.S_IMODE(file.stat().st_mode) == 0o600 and keys.load(file, PASSPHRASE).secrets["app"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_short_passphrase_and_wrong_domain_are_refused(source: Target, aws_endpoint: str, tmp_path: Path) -> None:  # noqa: F811
    short = cli(
        aws_endpoint, "secrets", "export", "--to", str(tmp_path / "k"), "-c", str(write_config(tmp_path)), stdin="short"
    )
    assert short.returncode == 2 and "at least 12" in short.stderr and not (tmp_path / "k").exists()
    keys.export_keys(source, tmp_path / "k", PASSPHRASE)
    other = write_config(tmp_path, region="eu-west-1", domain="other.example.org")
    result = cli(aws_endpoint, "secrets", "import", "--from", str(tmp_path / "k"), "-c", str(other), stdin=PASSPHRASE)
    assert result.returncode == 2 and "social.example.org" in result.stderr


def test_export_without_a_deployed_server_says_so(aws_endpoint: str, tmp_path: Path) -> None:  # noqa: F811
    result = cli(
        aws_endpoint,
        "secrets",
        "export",
        "--to",
        str(tmp_path / "k"),
        "-c",
        str(write_config(tmp_path)),
        stdin=PASSPHRASE,
    )
    assert result.returncode == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "k").exists()
