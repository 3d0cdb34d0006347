"""The server's secrets, generated once and then only ever added to (DESIGN invariant 2).

Three JSON secrets in Secrets Manager, named by `stack.secrets.secret_names`:
  app       SECRET_KEY_BASE and OTP_SECRET (128 hex, like `rails secret`), the VAPID key pair, and the three
            ACTIVE_RECORD_ENCRYPTION_* keys (32 alphanumerics, like `bin/rails db:encryption:init`)
  database  password (RDS master password, or the Postgres task's superuser's), owner_password (Mastodon's
            own role, deploy/dbowner.py; existing servers get it on their next deploy), and owner_setup, the
            record of the database setup that ran (deploy/dbsetup.py; not a secret, and rewritten by it)
  redis     password (ElastiCache auth token or the Redis task's), and for ElastiCache `url`
            (rediss://:PASSWORD@HOST:6379), known only once the data stack has made the cache; for a
            separate Redis task its private CA and certificate (deploy/redistls.py) and `url`

They live outside CloudFormation so no stack update, replacement or delete can regenerate them. Every
deploy calls `ensure_secrets`: a missing secret is created; an existing one is left exactly as it is,
except that a key a newer mastofargate needs and the secret lacks is added (and only that key). A value
is never printed, logged or put into an error message.

VAPID format: what Mastodon's webpush gem (`Webpush.generate_key`) produces and `VapidKey.from_keys` reads:
an EC P-256 key pair, the private key as the 32-byte big-endian scalar and the public key as the 65-byte
uncompressed point (0x04 || X || Y), each URL-safe base64 with '=' padding (Ruby's
`Base64.urlsafe_encode64`): 44 and 88 characters.
"""

from __future__ import annotations

import base64
import json
import secrets
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mastofargate import aws
from mastofargate.errors import EXIT_USAGE, MastofargateError, UsageError
from mastofargate.stack.secrets import APP_SECRET_KEYS, OTP_SECRET, OWNER_PASSWORD, OWNER_SETUP_RECORD

if TYPE_CHECKING:
    from mastofargate.deploy.context import Run
    from mastofargate.target import Target

ALPHANUMERIC = string.ascii_letters + string.digits
PASSWORD_LENGTH = 32  # alphanumeric only: safe in URLs, RDS master passwords and ElastiCache auth tokens
ENCRYPTION_KEY_LENGTH = 32
REDIS_PORT = 6379
DESCRIPTIONS = {
    "app": "Mastodon app secrets (SECRET_KEY_BASE, VAPID, Active Record encryption). Never regenerate.",
    "database": "Postgres passwords: the master user's and that of Mastodon's owner role",
    "redis": "Redis password, the rediss:// URL and, for a Redis task, its CA and certificate",
}


@dataclass(frozen=True)
class SecretArns:
    app: str
    database: str
    redis: str


@dataclass(frozen=True)
class SecretsReport:
    """What ensure_secrets did, by secret: 'created', 'added KEY, KEY', or 'unchanged' (never values)."""

    arns: SecretArns
    actions: dict[str, str]

    @property
    def changed(self) -> bool:
        return any(a != "unchanged" for a in self.actions.values())


# --- generators ----------------------------------------------------------------------------------------


def random_hex(chars: int = 128) -> str:
    return secrets.token_hex(chars // 2)


def random_alphanumeric(length: int) -> str:
    return "".join(secrets.choice(ALPHANUMERIC) for _ in range(length))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def vapid_keys() -> tuple[str, str]:
    """(private, public) in the webpush gem's format (see the module docstring)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    public = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return _b64url(private), _b64url(public)


def _app_generators() -> dict[str, Callable[[], str]]:
    return {
        "SECRET_KEY_BASE": random_hex,
        "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY": lambda: random_alphanumeric(ENCRYPTION_KEY_LENGTH),
        "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT": lambda: random_alphanumeric(ENCRYPTION_KEY_LENGTH),
        "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY": lambda: random_alphanumeric(ENCRYPTION_KEY_LENGTH),
        OTP_SECRET: random_hex,
    }


def required_values(kind: str, present: dict[str, Any]) -> dict[str, str]:
    """The keys `kind` must hold that `present` lacks, freshly generated. The VAPID pair is generated
    as a pair: if either half is missing, both are (a lone half is useless)."""
    missing: dict[str, str] = {}
    if kind == "app":
        for key, make in _app_generators().items():
            if key not in present:
                missing[key] = make()
        if "VAPID_PRIVATE_KEY" not in present or "VAPID_PUBLIC_KEY" not in present:
            if "VAPID_PRIVATE_KEY" in present or "VAPID_PUBLIC_KEY" in present:
                raise MastofargateError(
                    "The app secret holds only half of the VAPID key pair.",
                    why="VAPID_PRIVATE_KEY and VAPID_PUBLIC_KEY belong together; one of them was removed by hand",
                    fix="restore the missing half from a previous version of the secret (Secrets Manager keeps "
                    "versions), or delete both keys so a new pair is made (browsers must then re-subscribe)",
                    exit_code=EXIT_USAGE,
                )
            missing["VAPID_PRIVATE_KEY"], missing["VAPID_PUBLIC_KEY"] = vapid_keys()
        missing_expected = set(APP_SECRET_KEYS) - set(present) - set(missing)
        if missing_expected:
            raise MastofargateError(
                f"mastofargate has no generator for the app secret keys {sorted(missing_expected)}.",
                why="a key was added to the app secret's list without a way to make it (a bug)",
                fix="report this; nothing was written",
            )
    elif kind in ("database", "redis"):
        if "password" not in present:
            missing["password"] = random_alphanumeric(PASSWORD_LENGTH)
        if kind == "database" and OWNER_PASSWORD not in present:
            missing[OWNER_PASSWORD] = random_alphanumeric(PASSWORD_LENGTH)
    return missing


# --- Secrets Manager -----------------------------------------------------------------------------------


@contextmanager
def _quiet_errors(doing: str) -> Iterator[None]:
    """Like aws.aws_errors, and also for botocore's parameter errors, whose messages can echo the
    parameters (here: secret values), so only the error's type is reported."""
    from botocore.exceptions import ParamValidationError

    try:
        with aws.aws_errors(doing):
            yield
    except ParamValidationError:
        raise MastofargateError(
            f"boto3 rejected the request while {doing} (ParamValidationError).",
            fix="report this; run again with MASTOFARGATE_DEBUG=1 only on a machine whose output nobody else sees",
        ) from None


def _describe(target: Target, name: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    sm = target.client("secretsmanager")
    with _quiet_errors(f"looking up secret {name}"):
        try:
            return dict(sm.describe_secret(SecretId=name))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None
            raise


def read_secret(target: Target, name: str) -> dict[str, Any]:
    """A secret's JSON value (never printed; a value that is not a JSON object is an error naming no value)."""
    sm = target.client("secretsmanager")
    with _quiet_errors(f"reading secret {name}"):
        text = sm.get_secret_value(SecretId=name).get("SecretString") or "{}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise MastofargateError(
            f"Secret {name} does not hold a JSON object.",
            why="it was changed outside mastofargate (the value is not shown)",
            fix="restore its previous version in the Secrets Manager console (versions are kept)",
            exit_code=EXIT_USAGE,
        )
    return value


def _scheduled_for_deletion(name: str) -> MastofargateError:
    return MastofargateError(
        f"Secret {name} is scheduled for deletion.",
        why="'mastofargate destroy --delete-data' (or someone) deleted it with a recovery window",
        fix=f"to keep the old keys, restore it: aws secretsmanager restore-secret --secret-id {name}; "
        "to start afresh, wait until the recovery window ends",
        exit_code=EXIT_USAGE,
    )


def ensure_secret(target: Target, kind: str, *, dry_run: bool = False) -> tuple[str, str]:
    """(ARN, action) for one secret; creates it or adds missing keys; never changes an existing key."""
    name = target.secret_names[kind]
    info = _describe(target, name)
    if info is not None and info.get("DeletedDate"):
        raise _scheduled_for_deletion(name)
    sm = target.client("secretsmanager")
    if info is None:
        if dry_run:
            return "", "would be created"
        values = required_values(kind, {})
        with _quiet_errors(f"creating secret {name}"):
            arn = sm.create_secret(
                Name=name,
                Description=DESCRIPTIONS[kind],
                SecretString=json.dumps(values, sort_keys=True),
                Tags=[{"Key": "mastofargate:stack", "Value": target.name}],
            )["ARN"]
        return str(arn), "created"
    if dry_run:
        try:
            present = read_secret(target, name)
        except aws.AccessDenied:  # a read-only role (CI's plan role) may see that a secret exists, not its value
            return str(info["ARN"]), "exists (its keys are not readable with these credentials)"
    else:
        present = read_secret(target, name)
    missing = required_values(kind, present)
    if not missing:
        return str(info["ARN"]), "unchanged"
    if dry_run:
        return str(info["ARN"]), "would add " + ", ".join(sorted(missing))
    write_secret(target, name, {**present, **missing}, present)
    return str(info["ARN"]), "added " + ", ".join(sorted(missing))


# Keys that may be replaced once written: operator-supplied ones (a rotated SMTP password) and ones derived
# from other values (the ElastiCache URL follows the cache's host). Every other key is generated once and
# never changed (DESIGN invariant 2).
OPERATOR_KEYS = frozenset({"SMTP_PASSWORD"})
# SMTP_LOGIN: the SES key id deploy.mail rotates with its password; OWNER_SETUP_RECORD: deploy.dbsetup's record;
# tls_cert/tls_key: the Redis task's certificate, re-issued by deploy.redistls from the CA (ca_cert/ca_key are
# NOT replaceable: made once); loopback_url: the one task's REDIS_URL, derived like `url`.
DERIVED_KEYS = frozenset({"url", "loopback_url", "SMTP_LOGIN", OWNER_SETUP_RECORD, "tls_cert", "tls_key"})
REPLACEABLE_KEYS = OPERATOR_KEYS | DERIVED_KEYS


class SecretOverwriteRefused(MastofargateError):
    """A write would change or drop a generated key: refused, always (DESIGN invariant 2)."""


def write_secret(target: Target, name: str, new: dict[str, Any], old: dict[str, Any]) -> None:
    """THE way a secret's value is changed: writes `new` as a new version, after checking that every key of
    `old` that is not replaceable is still in `new` with the same value. An explicit check that raises, not
    an assert (which `python -O` removes)."""
    changed = sorted(k for k in old if k not in REPLACEABLE_KEYS and (k not in new or new[k] != old[k]))
    if changed:
        raise SecretOverwriteRefused(
            f"REFUSED: writing secret {name} would change or remove {', '.join(changed)}. Nothing was written.",
            why="these keys were generated once and must never change: losing them logs users out, breaks push "
            "and makes encrypted data unreadable",
            fix="report this (a bug); restore the secret's previous version in Secrets Manager if it was edited",
            exit_code=EXIT_USAGE,
        )
    with _quiet_errors(f"writing secret {name}"):
        target.client("secretsmanager").put_secret_value(SecretId=name, SecretString=json.dumps(new, sort_keys=True))


def ensure_secrets(target: Target, *, dry_run: bool = False) -> SecretsReport:
    """Create or complete the app, database and redis secrets; return their ARNs and what was done."""
    arns: dict[str, str] = {}
    actions: dict[str, str] = {}
    for kind in ("app", "database", "redis"):
        arns[kind], actions[kind] = ensure_secret(target, kind, dry_run=dry_run)
    return SecretsReport(SecretArns(**arns), actions)


def set_operator_value(target: Target, key: str, value: str) -> bool:
    """Store an operator-supplied key (SMTP_PASSWORD) in the app secret; True when it changed."""
    if key not in OPERATOR_KEYS:
        raise SecretOverwriteRefused(
            f"REFUSED: {key} is not a key the operator may set.",
            why=f"only {', '.join(sorted(OPERATOR_KEYS))} may be supplied or replaced by hand",
            exit_code=EXIT_USAGE,
        )
    name = target.secret_names["app"]
    present = read_secret(target, name)
    if present.get(key) == value:
        return False
    write_secret(target, name, {**present, key: value}, present)
    return True


def has_key(target: Target, kind: str, key: str) -> bool:
    return key in read_secret(target, target.secret_names[kind])


def existing_arns(target: Target) -> SecretArns | None:
    """The three ARNs if all secrets exist (read-only; `plan` uses it)."""
    arns = {}
    for kind in ("app", "database", "redis"):
        info = _describe(target, target.secret_names[kind])
        if info is None:
            return None
        arns[kind] = str(info["ARN"])
    return SecretArns(**arns)


def redis_url(password: str, host: str) -> str:
    return f"rediss://:{password}@{host}:{REDIS_PORT}"


def ensure_redis_url(target: Target, cache_host: str) -> str:
    """For ElastiCache: set the redis secret's `url` from its password and the cache's host (only that
    key). Returns 'unchanged' or 'set url'."""
    name = target.secret_names["redis"]
    present = read_secret(target, name)
    if "password" not in present:
        raise MastofargateError(
            f"Secret {name} has no password.",
            why="it was changed outside mastofargate",
            fix="restore its previous version in the Secrets Manager console",
            exit_code=EXIT_USAGE,
        )
    url = redis_url(str(present["password"]), cache_host)
    if present.get("url") == url:
        return "unchanged"
    write_secret(target, name, {**present, "url": url}, present)
    return "set url"


def version_ids(target: Target) -> dict[str, str]:
    """Current version id of each secret (tests and reports compare them; no values)."""
    out = {}
    for kind, name in target.secret_names.items():
        info = _describe(target, name)
        if info is None:
            continue
        current = [v for v, stages in (info.get("VersionIdsToStages") or {}).items() if "AWSCURRENT" in stages]
        out[kind] = current[0] if current else ""
    return out


def delete_secrets(target: Target, recovery_days: int = 30) -> list[str]:
    """Schedule every secret for deletion with a recovery window (destroy --delete-data)."""
    deleted = []
    for name in target.secret_names.values():
        info = _describe(target, name)
        if info is None or info.get("DeletedDate"):
            continue
        with _quiet_errors(f"deleting secret {name}"):
            target.client("secretsmanager").delete_secret(SecretId=name, RecoveryWindowInDays=recovery_days)
        deleted.append(name)
    return deleted


# --- the deploy's secrets step -------------------------------------------------------------------------


def secrets_step(run: Run, *, dry_run: bool, smtp_password: str | None = None) -> SecretsReport:
    """Deploy step 2: create or complete the secrets (or, dry run, say what would be done), and store an
    operator-supplied SMTP password when the config uses SMTP with a login."""
    target = run.target
    run.out.step("Secrets")
    report = ensure_secrets(target, dry_run=dry_run)
    from mastofargate.deploy import redistls  # it builds on this module's guarded reads and writes

    if redistls.wanted(target):
        tls = redistls.ensure(target, dry_run=dry_run)
        if tls != "unchanged":
            before = report.actions["redis"]
            report.actions["redis"] = tls if before == "unchanged" else f"{before}; {tls}"
    for kind, action in report.actions.items():
        run.out.line(f"  {target.secret_names[kind]}: {action}")
    if target.config.smtp.login and not dry_run:
        store_smtp_password(run, smtp_password)
    return report


SMTP_PASSWORD_ENV = "MASTOFARGATE_SMTP_PASSWORD"


def store_smtp_password(run: Run, password: str | None) -> None:
    """SMTP needs a password Mastodon reads from the app secret: supplied by the operator (the command layer
    reads MASTOFARGATE_SMTP_PASSWORD, never the config file), stored once, replaced when a new one is given."""
    target = run.target
    name = target.secret_names["app"]
    if password:
        changed = set_operator_value(target, "SMTP_PASSWORD", password)
        run.out.line(f"  {name}: SMTP_PASSWORD {'stored' if changed else 'unchanged'}")
    elif not has_key(target, "app", "SMTP_PASSWORD"):
        raise UsageError(
            f"smtp.login is set but {name} holds no SMTP password; nothing was deployed.",
            why="the tasks would fail to start without SMTP_PASSWORD",
            fix=f"export {SMTP_PASSWORD_ENV}='...' and run the command again (it is stored in Secrets Manager, "
            "never printed)",
        )


def fill_redis_url(run: Run) -> None:
    """For ElastiCache: the rediss:// URL in the redis secret, once the data stack knows the cache's host."""
    target = run.target
    if target.config.deployment.cache != "elasticache":
        return
    host = target.stack_outputs(target.data_stack).get("CacheHost")
    if host:
        action = ensure_redis_url(target, host)
        if action != "unchanged":
            run.out.line(f"  {target.secret_names['redis']}: {action}")


def require_arns(target: Target) -> SecretArns:
    """The three secrets' ARNs, which must exist once the secrets step has run."""
    arns = existing_arns(target)
    if arns is None:
        raise MastofargateError(
            "The server's secrets are missing after the secrets step.",
            why="one was deleted while the deploy ran",
            fix="run 'mastofargate deploy' again",
        )
    return arns
