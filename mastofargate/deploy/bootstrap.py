"""The server's secrets, generated once and then only ever added to (DESIGN invariant 2).

ONE JSON secret in Secrets Manager, `stack.secrets.secret_name` (mastofargate/NAME/server), holding three
logical kinds as flat top-level keys (`stack.secrets.flat_key`: app keys as they are, database keys with a
`database_` prefix, redis keys with `redis_`), so ECS `valueFrom` reaches each one:
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

Every writer (this module, mail, redistls, dbsetup, keys import) goes through `update_kind`: it reads the
secret afresh, applies only the keys the writer changed, and `write_secret` refuses any write that would
change or drop a generated key. Servers deployed with three secrets (`legacy_secret_names`) are read through
the same functions until the deploy's migration (deploy/migrate_secrets.py) has made the one secret; until
then writers outside a deploy (keys import) write where the running server reads: the legacy secret.

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mastofargate import aws
from mastofargate.errors import EXIT_USAGE, MastofargateError, UsageError
from mastofargate.stack.secrets import (
    APP_SECRET_KEYS,
    KINDS,
    OTP_SECRET,
    OWNER_PASSWORD,
    OWNER_SETUP_RECORD,
    flat_key,
    join,
    split,
)

if TYPE_CHECKING:
    from mastofargate.deploy.context import Run
    from mastofargate.target import Target

ALPHANUMERIC = string.ascii_letters + string.digits
PASSWORD_LENGTH = 32  # alphanumeric only: safe in URLs, RDS master passwords and ElastiCache auth tokens
ENCRYPTION_KEY_LENGTH = 32
REDIS_PORT = 6379
DESCRIPTION = (
    "mastofargate server secrets: SECRET_KEY_BASE, VAPID, Active Record encryption keys (never regenerate), "
    "database_* (Postgres passwords) and redis_* (Redis password, URL, TLS)"
)
# What the three secrets of older servers were described as (keys import recreates a missing one of a server
# that has not migrated yet, so the running server keeps reading where it reads).
LEGACY_DESCRIPTIONS = {
    "app": "Mastodon app secrets (SECRET_KEY_BASE, VAPID, Active Record encryption). Never regenerate.",
    "database": "Postgres passwords: the master user's and that of Mastodon's owner role",
    "redis": "Redis password, the rediss:// URL and, for a Redis task, its CA and certificate",
}
TAGS_KEY = "mastofargate:stack"


@dataclass
class SecretsReport:
    """What ensure_secrets did to the one secret: 'created', 'created from LEGACY...', 'added KEY, KEY', or
    'unchanged' (never values); `arn` is "" when a dry run found no secret yet."""

    arn: str
    action: str
    legacy: list[str] = field(default_factory=list)  # legacy secret names that still exist (unused once switched)

    @property
    def changed(self) -> bool:
        return self.action != "unchanged"


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


def describe(target: Target, name: str) -> dict[str, Any] | None:
    """DescribeSecret, or None when there is no such secret (one scheduled for deletion is returned)."""
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


def scheduled_for_deletion(name: str) -> MastofargateError:
    return MastofargateError(
        f"Secret {name} is scheduled for deletion.",
        why="'mastofargate destroy --delete-data' (or someone) deleted it with a recovery window",
        fix=f"to keep the old keys, restore it: aws secretsmanager restore-secret --secret-id {name}; "
        "to start afresh, wait until the recovery window ends",
        exit_code=EXIT_USAGE,
    )


def create_secret(target: Target, name: str, values: dict[str, Any], description: str = DESCRIPTION) -> str:
    """Create a secret holding `values`; returns its ARN."""
    with _quiet_errors(f"creating secret {name}"):
        return str(
            target.client("secretsmanager").create_secret(
                Name=name,
                Description=description,
                SecretString=json.dumps(values, sort_keys=True),
                Tags=[{"Key": TAGS_KEY, "Value": target.name}],
            )["ARN"]
        )


# Keys that may be replaced once written: operator-supplied ones (a rotated SMTP password) and ones derived
# from other values (the ElastiCache URL follows the cache's host). Every other key is generated once and
# never changed (DESIGN invariant 2). Logical (kind, key) pairs; `REPLACEABLE_KEYS` is their flat form.
OPERATOR_KEYS = frozenset({"SMTP_PASSWORD"})
# SMTP_LOGIN: the SES key id deploy.mail rotates with its password; OWNER_SETUP_RECORD: deploy.dbsetup's record;
# tls_cert/tls_key: the Redis task's certificate, re-issued by deploy.redistls from the CA (ca_cert/ca_key are
# NOT replaceable: made once); loopback_url: the one task's REDIS_URL, derived like `url`.
DERIVED = frozenset(
    {
        ("app", "SMTP_LOGIN"),
        ("database", OWNER_SETUP_RECORD),
        ("redis", "url"),
        ("redis", "loopback_url"),
        ("redis", "tls_cert"),
        ("redis", "tls_key"),
    }
)
REPLACEABLE = DERIVED | {("app", k) for k in OPERATOR_KEYS}
REPLACEABLE_KEYS = frozenset(flat_key(kind, key) for kind, key in REPLACEABLE)


def replaceable(kind: str, key: str) -> bool:
    return (kind, key) in REPLACEABLE


class SecretOverwriteRefused(MastofargateError):
    """A write would change or drop a generated key: refused, always (DESIGN invariant 2)."""


def write_secret(
    target: Target, name: str, new: dict[str, Any], old: dict[str, Any], replaceable_keys: frozenset[str] | None = None
) -> None:
    """THE way a secret's value is changed: writes `new` as a new version, after checking that every key of
    `old` that is not replaceable is still in `new` with the same value. An explicit check that raises, not
    an assert (which `python -O` removes). `replaceable_keys`: in the keys' own spelling (flat for the one
    secret, the default; a legacy secret's own keys otherwise)."""
    allowed = REPLACEABLE_KEYS if replaceable_keys is None else replaceable_keys
    changed = sorted(k for k in old if k not in allowed and (k not in new or new[k] != old[k]))
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


# --- where a server's values live: the one secret, or (not yet migrated) the three legacy ones ----------


@dataclass(frozen=True)
class Store:
    """Where the server's values are read and written now: `one` (the one secret exists), `legacy` (only the
    three older secrets, some of them), or `none` (a new server)."""

    layout: str  # "one" | "legacy" | "none"
    arn: str = ""
    legacy: tuple[str, ...] = ()  # legacy kinds whose secret exists (not scheduled for deletion)


def locate(target: Target) -> Store:
    """Where the values live (reads only). A secret scheduled for deletion is an error, never silently
    replaced by a new one: its keys may be the only copy."""
    info = describe(target, target.secret_name)
    if info is not None and info.get("DeletedDate"):
        raise scheduled_for_deletion(target.secret_name)
    legacy = []
    for kind in KINDS:
        name = target.legacy_secret_names[kind]
        legacy_info = describe(target, name)
        if legacy_info is None:
            continue
        if legacy_info.get("DeletedDate"):
            if info is None:  # not migrated yet: its keys may exist nowhere else
                raise scheduled_for_deletion(name)
            continue  # pruned after the migration: nothing reads it
        legacy.append(kind)
    if info is not None:
        return Store("one", str(info["ARN"]), tuple(legacy))
    return Store("legacy" if legacy else "none", "", tuple(legacy))


def _where(target: Target) -> Store:
    """`locate` for reads and writes: once the one secret exists, the legacy secrets are never read or written
    here (one DescribeSecret instead of four)."""
    info = describe(target, target.secret_name)
    if info is not None and not info.get("DeletedDate"):
        return Store("one", str(info["ARN"]))
    return locate(target)


def read_all(target: Target, store: Store | None = None) -> dict[str, dict[str, Any]]:
    """Every value as kind -> key -> value, from wherever it lives; raises aws.NotFound on a new server."""
    store = store or _where(target)
    if store.layout == "one":
        return split(read_secret(target, target.secret_name))
    if store.layout == "legacy":
        out: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        for kind in store.legacy:
            out[kind] = read_secret(target, target.legacy_secret_names[kind])
        return out
    raise aws.NotFound(
        f"Secret {target.secret_name} does not exist in {target.region}.",
        code="ResourceNotFoundException",
        fix="the first 'mastofargate deploy' creates it",
    )


def read_kind(target: Target, kind: str) -> dict[str, Any]:
    """One logical kind's keys (unprefixed), e.g. read_kind(t, "database")["owner_password"]."""
    return read_all(target)[kind]


def update_kind(target: Target, kind: str, new: dict[str, Any], old: dict[str, Any]) -> None:
    """THE read-merge-write path of every writer: apply to the secret, read afresh, exactly the keys in which
    `new` differs from `old` (the writer's view of `kind`): added, changed or (replaceable keys only) removed.
    Keys of other kinds, and keys of `kind` the writer did not touch, stay as the secret holds them now, even
    when another writer changed them after this writer's read. `write_secret` then refuses any change to a
    generated key."""
    changes = {k: v for k, v in new.items() if k not in old or old[k] != v}
    removed = [k for k in old if k not in new]
    refused = [k for k in removed if not replaceable(kind, k)]
    if refused:
        raise SecretOverwriteRefused(
            f"REFUSED: removing {', '.join(sorted(refused))} from the {kind} keys. Nothing was written.",
            why="these keys were generated once and must never change",
            fix="report this (a bug)",
            exit_code=EXIT_USAGE,
        )
    if not changes and not removed:
        return
    store = _where(target)
    if store.layout == "one":
        current = read_secret(target, target.secret_name)
        merged = {k: v for k, v in current.items() if k not in {flat_key(kind, r) for r in removed}}
        merged.update({flat_key(kind, k): v for k, v in changes.items()})
        write_secret(target, target.secret_name, merged, current)
    elif store.layout == "legacy" and kind in store.legacy:
        name = target.legacy_secret_names[kind]
        current = read_secret(target, name)
        merged = {k: v for k, v in current.items() if k not in removed}
        merged.update(changes)
        write_secret(target, name, merged, current, frozenset(k for (kd, k) in REPLACEABLE if kd == kind))
    else:
        raise aws.NotFound(
            f"Secret {target.secret_name} does not exist in {target.region}.",
            code="ResourceNotFoundException",
            why="the deploy's secrets step creates it before anything writes to it",
            fix="run 'mastofargate deploy'",
        )


def ensure_secret(target: Target, store: Store, *, dry_run: bool = False) -> tuple[str, str]:
    """(ARN, action) for the one secret of a server that has it or is new (`store`, from `locate`): creates
    it, or adds the keys a newer mastofargate needs (generated, and only those); never changes an existing
    key."""
    name = target.secret_name
    if store.layout != "one":
        if dry_run:
            return "", "would be created"
        return create_secret(target, name, join({kind: required_values(kind, {}) for kind in KINDS})), "created"
    if dry_run:
        try:
            present = read_secret(target, name)
        except aws.AccessDenied:  # a read-only role (CI's plan role) may see that a secret exists, not its value
            return store.arn, "exists (its keys are not readable with these credentials)"
    else:
        present = read_secret(target, name)
    kinds = split(present)
    missing = {kind: required_values(kind, kinds[kind]) for kind in KINDS}
    added = sorted(flat_key(kind, k) for kind, kv in missing.items() for k in kv)
    if not added:
        return store.arn, "unchanged"
    if dry_run:
        return store.arn, "would add " + ", ".join(added)
    write_secret(target, name, {**present, **join(missing)}, present)
    return store.arn, "added " + ", ".join(added)


def ensure_secrets(target: Target, *, dry_run: bool = False) -> SecretsReport:
    """Create or complete the one secret, migrating a server's three legacy secrets into it first (see
    deploy/migrate_secrets.py); return its ARN and what was done."""
    from mastofargate.deploy import migrate_secrets  # it builds on this module's reads and writes

    store = locate(target)
    legacy = [target.legacy_secret_names[k] for k in store.legacy]
    if store.layout == "legacy":
        arn, action = migrate_secrets.migrate(target, store, dry_run=dry_run)
        return SecretsReport(arn, action, legacy)
    if store.layout == "one" and store.legacy:
        migrate_secrets.check_consistent(target, store, dry_run=dry_run)
    arn, action = ensure_secret(target, store, dry_run=dry_run)
    return SecretsReport(arn, action, legacy)


def set_operator_value(target: Target, key: str, value: str) -> bool:
    """Store an operator-supplied key (SMTP_PASSWORD) in the app keys; True when it changed."""
    if key not in OPERATOR_KEYS:
        raise SecretOverwriteRefused(
            f"REFUSED: {key} is not a key the operator may set.",
            why=f"only {', '.join(sorted(OPERATOR_KEYS))} may be supplied or replaced by hand",
            exit_code=EXIT_USAGE,
        )
    present = read_kind(target, "app")
    if present.get(key) == value:
        return False
    update_kind(target, "app", {**present, key: value}, present)
    return True


def has_key(target: Target, kind: str, key: str) -> bool:
    return key in read_kind(target, kind)


def existing_arn(target: Target) -> str | None:
    """The one secret's ARN if it exists (read-only; `plan` uses it)."""
    info = describe(target, target.secret_name)
    if info is None or info.get("DeletedDate"):
        return None
    return str(info["ARN"])


def redis_url(password: str, host: str) -> str:
    return f"rediss://:{password}@{host}:{REDIS_PORT}"


def ensure_redis_url(target: Target, cache_host: str) -> str:
    """For ElastiCache: set the redis `url` from its password and the cache's host (only that key).
    Returns 'unchanged' or 'set redis_url'."""
    present = read_kind(target, "redis")
    if "password" not in present:
        raise MastofargateError(
            f"Secret {target.secret_name} has no {flat_key('redis', 'password')}.",
            why="it was changed outside mastofargate",
            fix="restore its previous version in the Secrets Manager console",
            exit_code=EXIT_USAGE,
        )
    url = redis_url(str(present["password"]), cache_host)
    if present.get("url") == url:
        return "unchanged"
    update_kind(target, "redis", {**present, "url": url}, present)
    return f"set {flat_key('redis', 'url')}"


def version_ids(target: Target) -> dict[str, str]:
    """Current version id of the one secret and of each legacy secret, by name (tests and reports compare
    them; no values)."""
    out = {}
    for name in (target.secret_name, *target.legacy_secret_names.values()):
        info = describe(target, name)
        if info is None:
            continue
        current = [v for v, stages in (info.get("VersionIdsToStages") or {}).items() if "AWSCURRENT" in stages]
        out[name] = current[0] if current else ""
    return out


def existing_names(target: Target) -> list[str]:
    """The server's secrets that exist and are not scheduled for deletion: the one and any legacy ones."""
    out = []
    for name in (target.secret_name, *target.legacy_secret_names.values()):
        info = describe(target, name)
        if info is not None and not info.get("DeletedDate"):
            out.append(name)
    return out


def delete_secret(target: Target, name: str, recovery_days: int = 30) -> None:
    with _quiet_errors(f"deleting secret {name}"):
        target.client("secretsmanager").delete_secret(SecretId=name, RecoveryWindowInDays=recovery_days)


def delete_secrets(target: Target, recovery_days: int = 30) -> list[str]:
    """Schedule every secret of the server (the one and any legacy ones) for deletion with a recovery
    window (destroy --delete-data)."""
    deleted = []
    for name in existing_names(target):
        delete_secret(target, name, recovery_days)
        deleted.append(name)
    return deleted


# --- the deploy's secrets step -------------------------------------------------------------------------


def secrets_step(run: Run, *, dry_run: bool, smtp_password: str | None = None) -> SecretsReport:
    """Deploy step 2: create, migrate or complete the secret (or, dry run, say what would be done), and store
    an operator-supplied SMTP password when the config uses SMTP with a login."""
    target = run.target
    run.out.step("Secrets")
    report = ensure_secrets(target, dry_run=dry_run)
    from mastofargate.deploy import redistls  # it builds on this module's guarded reads and writes

    if redistls.wanted(target):
        tls = redistls.ensure(target, dry_run=dry_run)
        if tls != "unchanged":
            report.action = tls if report.action == "unchanged" else f"{report.action}; {tls}"
    run.out.line(f"  {target.secret_name}: {report.action}")
    if report.legacy:
        from mastofargate.deploy import migrate_secrets

        migrating = report.action.startswith(("created from", "would be created from"))
        run.out.line(f"  {migrate_secrets.unused_note(target, report.legacy, dry_run=dry_run, migrating=migrating)}")
    if target.config.smtp.login and not dry_run:
        store_smtp_password(run, smtp_password)
    return report


SMTP_PASSWORD_ENV = "MASTOFARGATE_SMTP_PASSWORD"


def store_smtp_password(run: Run, password: str | None) -> None:
    """SMTP needs a password Mastodon reads from the secret: supplied by the operator (the command layer
    reads MASTOFARGATE_SMTP_PASSWORD, never the config file), stored once, replaced when a new one is given."""
    target = run.target
    name = target.secret_name
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
    """For ElastiCache: the rediss:// URL in the secret, once the data stack knows the cache's host."""
    target = run.target
    if target.config.deployment.cache != "elasticache":
        return
    host = target.stack_outputs(target.data_stack).get("CacheHost")
    if host:
        action = ensure_redis_url(target, host)
        if action != "unchanged":
            run.out.line(f"  {target.secret_name}: {action}")


def require_arn(target: Target) -> str:
    """The one secret's ARN, which must exist once the secrets step has run."""
    arn = existing_arn(target)
    if arn is None:
        raise MastofargateError(
            f"The server's secret {target.secret_name} is missing after the secrets step.",
            why="it was deleted while the deploy ran",
            fix="run 'mastofargate deploy' again",
        )
    return arn
