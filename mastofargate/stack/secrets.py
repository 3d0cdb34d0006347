"""The secrets Mastodon needs, and how containers receive them (the KMS key is in stack/keys.py).

The secret *values* are generated once by the deploy's bootstrap and stored in ONE Secrets Manager secret
(`secret_name`: one $0.40/month instead of three) as flat JSON keys; they are never created by
CloudFormation, so no stack update, replacement or delete can regenerate or remove them (DESIGN
invariant 2). Templates only reference them: containers get them through the task definition's
`secrets` (never plain `environment`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from troposphere import Join

from mastofargate.stack.context import Build

# Keys of the app secret (JSON). Generated once; changing any of them logs users out, breaks push, or
# (the ACTIVE_RECORD_ENCRYPTION_* keys) makes encrypted columns unreadable forever.
APP_SECRET_KEYS: tuple[str, ...] = (
    "SECRET_KEY_BASE",
    "VAPID_PRIVATE_KEY",
    "VAPID_PUBLIC_KEY",
    "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY",
    "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT",
    "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY",
)
# Key of the database secret holding the password of Mastodon's own role (stack.database.DB_OWNER); the
# secret's `password` is the master user's, which only the database setup task receives.
OWNER_PASSWORD = "owner_password"
# Also in the database secret, no secret itself: which version of the owner setup ran with which owner password
# (deploy/dbsetup.py), so a deploy starts the setup task only when something changed. It lives beside the
# password it set: a secret made afresh has no record, and the setup runs again.
OWNER_SETUP_RECORD = "owner_setup"
OTP_SECRET = "OTP_SECRET"  # read by Mastodon only before 4.4; generated anyway so upgrades from 4.3 work


KINDS: tuple[str, ...] = ("app", "database", "redis")
# The prefix each logical kind's keys carry in the one secret. App keys keep their names (SECRET_KEY_BASE reads
# as itself in the console and in `secrets export`); database and redis keys are prefixed, so the flat JSON
# object stays unambiguous. ECS `valueFrom` (`ARN:json-key::`) reaches only top-level keys, hence flat.
KEY_PREFIX: dict[str, str] = {"app": "", "database": "database_", "redis": "redis_"}


def secret_name(stack_name: str) -> str:
    """THE Secrets Manager secret of a server: every generated or derived value, one JSON object ($0.40/month)."""
    return f"mastofargate/{stack_name}/server"


def legacy_secret_names(stack_name: str) -> dict[str, str]:
    """The three secrets servers deployed before the one secret have (kind -> name). Read by the deploy's
    migration (deploy/migrate_secrets.py), never written to once the one secret exists, never deleted by a
    deploy: only `secrets prune-legacy` or `destroy --delete-data` schedule them for deletion."""
    return {kind: f"mastofargate/{stack_name}/{kind}" for kind in KINDS}


def flat_key(kind: str, key: str) -> str:
    """The one place a logical (kind, key) becomes a top-level key of the one secret."""
    if kind not in KEY_PREFIX:
        raise ValueError(f"unknown secret kind {kind!r}; expected one of {', '.join(KINDS)}")
    return KEY_PREFIX[kind] + key


def kind_of(flat: str) -> tuple[str, str]:
    """(kind, key) of a top-level key of the one secret; the inverse of `flat_key`."""
    for kind in ("database", "redis"):
        if flat.startswith(KEY_PREFIX[kind]):
            return kind, flat[len(KEY_PREFIX[kind]) :]
    return "app", flat


def split(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The one secret's flat object as kind -> key -> value (every kind present, possibly empty)."""
    out: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
    for flat, value in values.items():
        kind, key = kind_of(flat)
        out[kind][key] = value
    return out


def join(kinds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """kind -> key -> value as the one secret's flat object (the inverse of `split`)."""
    return {flat_key(kind, key): value for kind, kv in kinds.items() for key, value in kv.items()}


@dataclass(frozen=True)
class SecretRef:
    """One container secret: environment name <- key of one logical kind of the server's secret."""

    env: str
    secret: str  # "app" | "database" | "redis": the logical kind; flat_key maps it into the one secret
    key: str

    @property
    def json_key(self) -> str:
        return flat_key(self.secret, self.key)

    def value_from(self, b: Build) -> Join:
        return Join("", [b.app_param("SecretArn"), f":{self.json_key}::"])


def mastodon_secrets(b: Build, role: str, *, redis_on_loopback: bool = False) -> list[SecretRef]:
    """Which secrets each process gets. Streaming needs only DB and Redis credentials (the charts do the
    same); web, Sidekiq and jobs need everything. `redis_on_loopback`: the process runs in Redis' own task
    (cache.on_loopback)."""
    from mastofargate.stack.cache import redis_tls  # cache.py builds on this module's secret names

    refs = [SecretRef("DB_PASS", "database", OWNER_PASSWORD)]
    if redis_tls(b.config):
        # rediss://:PASSWORD@<task>.<namespace>:6379 (or @127.0.0.1:6379 inside Redis' task), and the CA that
        # signed Redis' certificate (its certificate only: the CA key never leaves the secret).
        # deploy/redistls.py writes them.
        url = "loopback_url" if redis_on_loopback else "url"
        refs += [SecretRef("REDIS_URL", "redis", url), SecretRef("REDIS_CA_CERT", "redis", "ca_cert")]
    elif b.config.deployment.cache == "elasticache":
        # TLS needs REDIS_URL=rediss://...; the URL carries the password, so the whole URL is a secret.
        refs.append(SecretRef("REDIS_URL", "redis", "url"))
    else:
        refs.append(SecretRef("REDIS_PASSWORD", "redis", "password"))
    if role == "streaming":
        return refs
    refs += [SecretRef(k, "app", k) for k in APP_SECRET_KEYS]
    major, minor = (int(x) for x in b.config.deployment.mastodon_version[1:].split(".")[:2])
    if (major, minor) < (4, 4):
        refs.append(SecretRef(OTP_SECRET, "app", OTP_SECRET))
    if b.config.smtp.login:
        refs.append(SecretRef("SMTP_PASSWORD", "app", "SMTP_PASSWORD"))
    elif not b.config.smtp.server:
        # SES: both derived from the SMTP user's access key by deploy.mail.ensure_smtp_credentials
        refs += [SecretRef("SMTP_LOGIN", "app", "SMTP_LOGIN"), SecretRef("SMTP_PASSWORD", "app", "SMTP_PASSWORD")]
    return refs
