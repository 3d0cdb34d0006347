"""Verified TLS between Mastodon and Redis in a task (issue 10 item 5; issue 12: the one-task layout too):
the certificates, the templates, and the redis secret's TLS keys made by the deploy against a real moto
server.

The CA is made once and never replaced (every Mastodon process trusts it), its key never reaches a task,
REDIS_URL (it embeds the password) is only ever a secret, and nothing here applies to ElastiCache. In the
one-task layout the processes beside Redis use TLS on loopback (the certificate names 127.0.0.1 too) and
one-off tasks the Cloud Map name. The real-Redis side is in tests/test_redis_tls_live.py.
"""

from __future__ import annotations

import datetime
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from mastofargate import tlscert
from mastofargate.config import Config
from mastofargate.deploy import bootstrap, redistls
from mastofargate.errors import MastofargateError
from mastofargate.stack import build, cache, entrypoints, services
from mastofargate.stack.secrets import join, split
from mastofargate.target import Target
from tests.conftest import make_config, plain_run
from tests.moto_server import aws_endpoint, moto_server  # noqa: F401

HOST = "redis.social.internal"
ONE_TASK_HOST = "server.social.internal"  # the one task's Cloud Map name
NOW = datetime.datetime(2026, 11, 30, tzinfo=datetime.UTC)


# --- certificates -------------------------------------------------------------------------------------


def _openssl_verify(tmp_path: Path, ca: str, cert: str, *extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "ca.pem").write_text(ca)
    (tmp_path / "cert.pem").write_text(cert)
    return subprocess.run(
        [
            *("openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-no-CApath", "-no-CAstore"),
            *(*extra, "-CAfile", "ca.pem", "cert.pem"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_server_certificate_chains_to_the_ca_for_its_name_only(tmp_path: Path) -> None:
    ca, ca_key = tlscert.make_ca("social Redis CA")
    cert, key = tlscert.issue_server(ca, ca_key, HOST)
    ok = _openssl_verify(tmp_path, ca, cert, "-verify_hostname", HOST)
    assert ok.returncode == 0, ok.stderr
    wrong = _openssl_verify(tmp_path, ca, cert, "-verify_hostname", "redis.other.internal")
    assert wrong.returncode != 0 and "hostname mismatch" in wrong.stderr
    other_ca, _ = tlscert.make_ca("another CA")
    assert _openssl_verify(tmp_path, other_ca, cert).returncode != 0
    assert tlscert.server_problem(cert, key, ca, HOST) is None
    assert tlscert.ca_problem(ca, ca_key) is None


def test_the_ca_signs_server_certificates_and_nothing_below_them() -> None:
    from cryptography import x509

    ca, _ = tlscert.make_ca("social Redis CA", now=NOW)
    c = x509.load_pem_x509_certificate(ca.encode())
    constraints = c.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert c.not_valid_after_utc - NOW >= datetime.timedelta(days=365 * 29)


def test_server_problem_names_each_reason_to_reissue() -> None:
    ca, ca_key = tlscert.make_ca("social Redis CA", now=NOW)
    cert, key = tlscert.issue_server(ca, ca_key, HOST, now=NOW)
    assert tlscert.server_problem(cert, key, ca, HOST, now=NOW) is None
    assert tlscert.server_problem(None, key, ca, HOST) == "missing"
    assert tlscert.server_problem("garbage", key, ca, HOST) == "not readable PEM"
    _, other_key = tlscert.issue_server(ca, ca_key, HOST, now=NOW)
    assert tlscert.server_problem(cert, other_key, ca, HOST, now=NOW) == "its key does not match"
    other_ca, other_ca_key = tlscert.make_ca("other", now=NOW)
    foreign, foreign_key = tlscert.issue_server(other_ca, other_ca_key, HOST, now=NOW)
    assert tlscert.server_problem(foreign, foreign_key, ca, HOST, now=NOW) == "not signed by the server's CA"
    assert tlscert.server_problem(cert, key, ca, "redis.renamed.internal", now=NOW) == (
        "not issued for redis.renamed.internal"
    )
    late = NOW + datetime.timedelta(days=tlscert.SERVER_VALID_DAYS - tlscert.RENEW_WITHIN_DAYS + 1)
    assert (tlscert.server_problem(cert, key, ca, HOST, now=late) or "").startswith("expires on ")


def test_a_mismatched_ca_pair_is_named() -> None:
    ca, _ = tlscert.make_ca("a")
    _, other_key = tlscert.make_ca("b")
    assert tlscert.ca_problem(ca, other_key) == "the CA key does not belong to the CA certificate"
    leaf, leaf_key = tlscert.self_signed("x")
    assert tlscert.ca_problem(leaf, leaf_key) == "the CA certificate is not a CA"


# --- which servers ------------------------------------------------------------------------------------


def test_tls_for_every_redis_task_in_either_layout() -> None:
    assert cache.redis_tls(make_config(cache="task"))
    assert cache.redis_tls(make_config(cache="task", database="task", layout="one-task"))
    assert cache.redis_tls(make_config(cache="task", database="rds", layout="one-task"))
    assert not cache.redis_tls(make_config(cache="elasticache"))
    split = make_config(cache="task")
    assert cache.task_host(split, "social") == HOST and cache.certificate_names(split) == ()
    one = make_config(cache="task", database="task", layout="one-task")
    assert cache.task_host(one, "social") == ONE_TASK_HOST
    assert cache.certificate_names(one) == ("localhost", "127.0.0.1")


def test_a_certificate_for_loopback_names_the_address_as_an_ip_san(tmp_path: Path) -> None:
    """What a client on 127.0.0.1 checks (OpenSSL's -verify_ip, as Ruby and Node do for an address) and
    what one in another task checks (the Cloud Map name) both verify; a DNS SAN '127.0.0.1' would not."""
    from cryptography import x509

    ca, ca_key = tlscert.make_ca("social Redis CA")
    cert, key = tlscert.issue_server(ca, ca_key, ONE_TASK_HOST, extra_names=cache.LOOPBACK_NAMES)
    names = x509.load_pem_x509_certificate(cert.encode()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert names.value.get_values_for_type(x509.DNSName) == [ONE_TASK_HOST, "localhost"]
    assert [str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    for check in (("-verify_ip", "127.0.0.1"), ("-verify_hostname", "localhost"), ("-verify_hostname", ONE_TASK_HOST)):
        ok = _openssl_verify(tmp_path, ca, cert, *check)
        assert ok.returncode == 0, (check, ok.stderr)
    assert _openssl_verify(tmp_path, ca, cert, "-verify_ip", "10.80.0.7").returncode != 0
    assert tlscert.server_problem(cert, key, ca, ONE_TASK_HOST, extra_names=cache.LOOPBACK_NAMES) is None
    # without the loopback names (or with them where none are wanted) the deploy re-issues it
    assert tlscert.server_problem(cert, key, ca, ONE_TASK_HOST) == f"not issued for {ONE_TASK_HOST}"
    plain, plain_key = tlscert.issue_server(ca, ca_key, ONE_TASK_HOST)
    assert tlscert.server_problem(plain, plain_key, ca, ONE_TASK_HOST, extra_names=cache.LOOPBACK_NAMES) == (
        f"not issued for {ONE_TASK_HOST}, localhost, 127.0.0.1"
    )


# --- templates ----------------------------------------------------------------------------------------


def _containers(cfg: Config) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for tpl in build(cfg).values():
        for title, res in tpl.to_dict()["Resources"].items():
            if res["Type"] == "AWS::ECS::TaskDefinition":
                out += [(title, c) for c in res["Properties"]["ContainerDefinitions"]]
    return out


def _secret_key(value_from: Any) -> str:
    """The logical redis key of a `secrets` entry (ValueFrom = Join of the secret's ARN and ':redis_KEY::')."""
    return str(value_from["Fn::Join"][1][-1]).strip(":").removeprefix("redis_")


MASTODON = ("web", "sidekiq", "streaming", "mastodon")


@pytest.mark.parametrize("profile", ["personal", "community"])
def test_templates_of_a_redis_task_wire_verified_tls(profile: str) -> None:
    cfg = make_config(profile=profile, cache="task", database="task")
    seen = set()
    for title, c in _containers(cfg):
        env = {e["Name"]: e["Value"] for e in c.get("Environment", [])}
        secrets = {s["Name"]: _secret_key(s["ValueFrom"]) for s in c.get("Secrets", [])}
        assert "ca_key" not in secrets.values(), f"{title}/{c['Name']} receives the CA key"
        assert "REDIS_URL" not in env and not any("rediss://" in str(v) for v in env.values()), title
        if c["Name"] in MASTODON:
            seen.add(c["Name"])
            assert secrets["REDIS_URL"] == "url" and secrets["REDIS_CA_CERT"] == "ca_cert", title
            assert "REDIS_PASSWORD" not in secrets and "REDIS_HOST" not in env, title
            assert c["EntryPoint"] == services.trust_entrypoint(), title
            assert c["LinuxParameters"]["InitProcessEnabled"] is True  # replaces the images' tini
            if c["Name"] == "streaming":
                assert env["NODE_EXTRA_CA_CERTS"] == cache.NODE_EXTRA and "SSL_CERT_FILE" not in env
            else:
                assert env["SSL_CERT_FILE"] == cache.RUBY_BUNDLE and env["REDIS_DRIVER"] == "ruby"
        elif c["Name"] == "redis":
            seen.add("redis")
            assert env["REDIS_TLS"] == "on"
            assert secrets == {"REDIS_PASSWORD": "password", "REDIS_TLS_CERT": "tls_cert", "REDIS_TLS_KEY": "tls_key"}
            check = c["HealthCheck"]["Command"][1]
            assert "--tls" in check and "REDISCLI_AUTH=" in check and " -a " not in check
        elif c["Name"] == "queue-metrics":
            assert secrets == {"REDIS_URL": "url", "REDIS_CA_CERT": "ca_cert"}
    assert seen == {*MASTODON, "redis"}


@pytest.mark.parametrize("database", ["task", "rds"])
def test_one_task_templates_use_tls_on_loopback_and_one_off_tasks_across_the_vpc(database: str) -> None:
    """The one task's processes (and its queue-metrics sidecar) get the loopback URL, every one-off task (its
    container `mastodon`: migrations, tootctl, scheduled cleanups) the Cloud Map one; all through the trust
    wrapper; Redis serves TLS only, in the data-only definition a first install runs too."""
    cfg = make_config(cache="task", database=database, layout="one-task")
    seen: dict[str, set[str]] = {}
    for title, c in _containers(cfg):
        env = {e["Name"]: e["Value"] for e in c.get("Environment", [])}
        secrets = {s["Name"]: _secret_key(s["ValueFrom"]) for s in c.get("Secrets", [])}
        assert "ca_key" not in secrets.values() and "REDIS_HOST" not in env and "REDIS_URL" not in env, title
        if c["Name"] in MASTODON or c["Name"] == "queue-metrics":
            seen.setdefault(c["Name"], set()).add(title)
            url = "url" if c["Name"] == "mastodon" else "loopback_url"
            assert secrets["REDIS_URL"] == url and secrets["REDIS_CA_CERT"] == "ca_cert", title
            assert "REDIS_PASSWORD" not in secrets, title
            if c["Name"] != "queue-metrics":
                assert c["EntryPoint"] == services.trust_entrypoint(), title
        elif c["Name"] == "redis":
            seen.setdefault("redis", set()).add(title)
            assert env["REDIS_TLS"] == "on" and env["REDIS_PORT"] == "6379", title
            assert secrets == {"REDIS_PASSWORD": "password", "REDIS_TLS_CERT": "tls_cert", "REDIS_TLS_KEY": "tls_key"}
    assert seen["redis"] == {"ServerTaskDefinition", "ServerDataOnlyTaskDefinition"}
    assert {t for n in ("web", "streaming", "sidekiq", "queue-metrics") for t in seen[n]} == {"ServerTaskDefinition"}
    assert seen["mastodon"] >= {"MigrateTaskDefinition", "MigratePreTaskDefinition", "TootctlTaskDefinition"}


def _ingress(cfg: Config, group: str) -> list[dict[str, Any]]:
    data = build(cfg)["data"].to_dict()
    return list(data["Resources"][group]["Properties"]["SecurityGroupIngress"])


@pytest.mark.parametrize("layout", ["split", "one-task"])
def test_redis_admits_only_its_tls_port_and_only_from_mastodon_tasks(layout: str) -> None:
    """Redis serves TLS alone on REDIS_PORT (port 0: no plaintext listener), and its security group opens
    exactly that port, to the task group only: the one-off tasks' group, and in the one-task layout the task
    itself (which talks to itself on loopback, no group involved)."""
    from mastofargate.stack.network import REDIS_PORT

    cfg = make_config(cache="task", database="task", layout=layout)
    assert _ingress(cfg, "CacheSecurityGroup") == [
        {
            "IpProtocol": "tcp",
            "FromPort": REDIS_PORT,
            "ToPort": REDIS_PORT,
            "SourceSecurityGroupId": {"Ref": "TaskSecurityGroup"},
            "Description": "Redis from Mastodon tasks",
        }
    ]
    redis = next(c for _, c in _containers(cfg) if c["Name"] == "redis")
    assert [m["ContainerPort"] for m in redis["PortMappings"]] == [REDIS_PORT]


def test_elasticache_templates_have_no_wrapper_and_no_ca() -> None:
    for title, c in _containers(make_config(cache="elasticache")):
        env = {e["Name"] for e in c.get("Environment", [])}
        secrets = {s["Name"] for s in c.get("Secrets", [])}
        assert "REDIS_CA_CERT" not in secrets and not env & {"SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS"}, title
        if c["Name"] in MASTODON:
            assert "EntryPoint" not in c, title  # the images' own entrypoint (tini)


def test_the_wrapper_paths_are_where_the_environment_points() -> None:
    wrapper = entrypoints.script(cache.TRUST_SCRIPT)
    assert wrapper.startswith("#!/bin/sh") and 'exec "$@"' in wrapper
    assert cache.RUBY_BUNDLE.startswith(cache.CA_DIR + "/") and cache.NODE_EXTRA.startswith(cache.CA_DIR + "/")
    assert cache.CA_DIR.startswith("/tmp/")  # writable by the images' mastodon user


# --- the redis secret on a real moto server -----------------------------------------------------------


@pytest.fixture
def tls_target(aws_endpoint: str) -> Target:  # noqa: F811
    return Target(make_config(cache="task"))


SERVER = "mastofargate/social/server"


def _flat() -> dict[str, Any]:
    return json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=SERVER)["SecretString"])


def _values(name: str = SERVER) -> dict[str, Any]:
    """The redis keys of the server's one secret, unprefixed."""
    return split(_flat())["redis"]


def test_the_secrets_step_adds_a_ca_a_certificate_and_the_url_once(tls_target: Target) -> None:
    run = plain_run(tls_target.config)
    report = bootstrap.secrets_step(run, dry_run=False)
    assert report.action == "created; added ca_cert, ca_key, tls_cert, tls_key, url"
    name = SERVER
    redis = _values(name)
    assert redis["url"] == f"rediss://:{redis['password']}@{HOST}:6379"
    assert tlscert.ca_problem(redis["ca_cert"], redis["ca_key"]) is None
    assert tlscert.server_problem(redis["tls_cert"], redis["tls_key"], redis["ca_cert"], HOST) is None
    before = bootstrap.version_ids(tls_target)

    again = bootstrap.secrets_step(plain_run(tls_target.config), dry_run=False)
    assert again.action == "unchanged" and not again.changed
    assert bootstrap.version_ids(tls_target) == before and _values(name) == redis


def test_a_one_task_server_gets_a_loopback_url_and_a_certificate_for_loopback(aws_endpoint: str) -> None:  # noqa: F811
    """What a deployed one-task server (its redis secret holding only the password: Redis was plaintext on
    loopback) gets from its next deploy's secrets step, before any stack changes; a second run changes
    nothing."""
    target = Target(make_config(cache="task", database="task", layout="one-task"))
    bootstrap.ensure_secrets(target)
    name = target.secret_name
    password = _values(name)["password"]
    assert redistls.ensure(target, dry_run=True) == "would add ca_cert, ca_key, loopback_url, tls_cert, tls_key, url"
    assert set(_values(name)) == {"password"}
    assert redistls.ensure(target) == "added ca_cert, ca_key, loopback_url, tls_cert, tls_key, url"
    redis = _values(name)
    assert redis["password"] == password
    assert redis["url"] == f"rediss://:{password}@{ONE_TASK_HOST}:6379"
    assert redis["loopback_url"] == f"rediss://:{password}@127.0.0.1:6379"
    assert (
        tlscert.server_problem(
            redis["tls_cert"], redis["tls_key"], redis["ca_cert"], ONE_TASK_HOST, extra_names=cache.LOOPBACK_NAMES
        )
        is None
    )
    before = bootstrap.version_ids(target)
    assert redistls.ensure(target) == "unchanged" and bootstrap.version_ids(target) == before


def test_a_split_servers_certificate_is_not_reissued(tls_target: Target) -> None:
    """Deployed split servers keep their certificate (only its Cloud Map name) and get no loopback URL."""
    bootstrap.ensure_secrets(tls_target)
    redistls.ensure(tls_target)
    name = tls_target.secret_name
    assert "loopback_url" not in _values(name)
    assert redistls.ensure(tls_target) == "unchanged"


def test_an_expiring_server_certificate_is_reissued_by_the_same_ca(tls_target: Target) -> None:
    name = SERVER
    bootstrap.ensure_secrets(tls_target)
    assert redistls.ensure(tls_target) == "added ca_cert, ca_key, tls_cert, tls_key, url"
    first = _values(name)
    late = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=tlscert.SERVER_VALID_DAYS - 300)
    assert redistls.ensure(tls_target, now=late) == "added tls_cert, tls_key"
    second = _values(name)
    assert {k: second[k] for k in ("ca_cert", "ca_key", "password", "url")} == {
        k: first[k] for k in ("ca_cert", "ca_key", "password", "url")
    }
    assert second["tls_cert"] != first["tls_cert"]
    assert tlscert.server_problem(second["tls_cert"], second["tls_key"], first["ca_cert"], HOST, now=late) is None


def test_the_ca_is_write_once(tls_target: Target) -> None:
    name = SERVER
    bootstrap.ensure_secrets(tls_target)
    redistls.ensure(tls_target)
    present = _flat()
    other_cert, other_key = tlscert.make_ca("replacement")
    with pytest.raises(bootstrap.SecretOverwriteRefused, match="redis_ca_cert, redis_ca_key"):
        bootstrap.write_secret(
            tls_target, name, {**present, "redis_ca_cert": other_cert, "redis_ca_key": other_key}, present
        )
    without = {k: v for k, v in present.items() if k != "redis_ca_key"}
    with pytest.raises(bootstrap.SecretOverwriteRefused, match="redis_ca_key"):
        bootstrap.write_secret(tls_target, name, without, present)
    redis = _values()
    with pytest.raises(bootstrap.SecretOverwriteRefused, match="ca_key"):
        bootstrap.update_kind(tls_target, "redis", {k: v for k, v in redis.items() if k != "ca_key"}, redis)
    assert _flat() == present


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda v: {k: x for k, x in v.items() if k != "ca_key"}, "only one of ca_cert and ca_key"),
        (lambda v: {**v, "ca_key": tlscert.make_ca("x")[1]}, "does not belong"),
    ],
)
def test_a_ca_changed_by_hand_stops_the_deploy_and_writes_nothing(
    tls_target: Target, change: Callable[[dict[str, Any]], dict[str, Any]], says: str
) -> None:
    bootstrap.ensure_secrets(tls_target)
    redistls.ensure(tls_target)
    kinds = split(_flat())
    tampered = join({**kinds, "redis": change(kinds["redis"])})
    boto3.client("secretsmanager").put_secret_value(SecretId=SERVER, SecretString=json.dumps(tampered))
    before = bootstrap.version_ids(tls_target)
    with pytest.raises(MastofargateError, match=says) as caught:
        redistls.ensure(tls_target)
    assert caught.value.exit_code == 2 and "BEGIN" not in str(caught.value)
    assert bootstrap.version_ids(tls_target) == before


def test_a_dry_run_says_what_it_would_add_and_writes_nothing(tls_target: Target) -> None:
    first = bootstrap.secrets_step(plain_run(tls_target.config), dry_run=True)
    assert first.action == "would be created; would add ca_cert, ca_key, tls_cert, tls_key, url"
    bootstrap.ensure_secrets(tls_target)
    before = bootstrap.version_ids(tls_target)
    again = bootstrap.secrets_step(plain_run(tls_target.config), dry_run=True)
    assert again.action == "would add ca_cert, ca_key, tls_cert, tls_key, url"
    assert bootstrap.version_ids(tls_target) == before
    assert set(_values()) == {"password"}


def test_elasticache_servers_get_no_ca(aws_endpoint: str) -> None:  # noqa: F811
    target = Target(make_config(cache="elasticache"))
    bootstrap.secrets_step(plain_run(target.config), dry_run=False)
    assert set(_values()) == {"password"}


def test_no_value_reaches_the_output(tls_target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    bootstrap.secrets_step(plain_run(tls_target.config), dry_run=False)
    out = capsys.readouterr()
    redis = _values()
    for key in ("password", "ca_key", "tls_key", "url"):
        assert redis[key] not in out.out + out.err, key
    assert "PRIVATE KEY" not in out.out + out.err
