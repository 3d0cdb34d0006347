"""The secrets Mastodon needs, and how containers receive them (the KMS key is in stack/keys.py).

The secret *values* are generated once by the deploy's bootstrap and stored in Secrets Manager under
names derived from the stack name; they are never created by CloudFormation, so no stack update,
replacement or delete can regenerate or remove them (DESIGN invariant 2). Templates only reference
them: containers get them through the task definition's `secrets` (never plain `environment`).
"""

from __future__ import annotations

from dataclasses import dataclass

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


def secret_names(stack_name: str) -> dict[str, str]:
    """Secrets Manager names, one place: app keys, database password, Redis password and URL, SMTP."""
    return {
        "app": f"mastofargate/{stack_name}/app",
        "database": f"mastofargate/{stack_name}/database",
        "redis": f"mastofargate/{stack_name}/redis",
    }


@dataclass(frozen=True)
class SecretRef:
    """One container secret: environment name <- JSON key of one of our secrets."""

    env: str
    secret: str  # "app" | "database" | "redis"
    key: str

    def value_from(self, b: Build) -> Join:
        param = {"app": "AppSecretArn", "database": "DatabaseSecretArn", "redis": "RedisSecretArn"}[self.secret]
        return Join("", [b.app_param(param), f":{self.key}::"])


def mastodon_secrets(b: Build, role: str) -> list[SecretRef]:
    """Which secrets each process gets. Streaming needs only DB and Redis credentials (the charts do the
    same); web, Sidekiq and jobs need everything."""
    from mastofargate.stack.cache import redis_tls  # cache.py builds on this module's secret names

    refs = [SecretRef("DB_PASS", "database", OWNER_PASSWORD)]
    if redis_tls(b.config):
        # rediss://:PASSWORD@redis.<namespace>:6379, and the CA that signed the Redis task's certificate (its
        # certificate only: the CA key never leaves the secret). deploy/redistls.py writes both.
        refs += [SecretRef("REDIS_URL", "redis", "url"), SecretRef("REDIS_CA_CERT", "redis", "ca_cert")]
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
