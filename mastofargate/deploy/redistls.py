"""The Redis task's TLS material in the secret's redis_ keys, made by the deploy's secrets step (stack/cache.py
`redis_tls`: Redis in a task, its own or the one task of the one-task layout).

Keys it adds (redis_ prefixed in the one secret) (never values in any output):
  ca_cert, ca_key   the server's private CA, made ONCE: every Mastodon process trusts ca_cert, so replacing
                    it would cut them all off from Redis. Guarded by `bootstrap.write_secret` like the app
                    keys (they are not replaceable); ca_key never leaves the secret (no task receives it).
  tls_cert, tls_key the Redis task's certificate for `cache.task_host` (its Cloud Map name) and, in the
                    one-task layout, `cache.LOOPBACK_NAMES` too, signed by the CA; derived, so re-issued when
                    `tlscert.server_problem` finds a reason (missing, other names, expiring within a year).
  url               rediss://:PASSWORD@<task>.<name>.internal:6379, Mastodon's REDIS_URL in other tasks than
                    Redis' (derived; one-off tasks always).
  loopback_url      rediss://:PASSWORD@127.0.0.1:6379, REDIS_URL of the processes in Redis' own task (the
                    one-task layout; derived).

Ordering with running servers: this step runs before any stack change, and the running tasks read none of
these keys (they use REDIS_HOST/REDIS_PASSWORD), so writing them changes nothing until the app stack rolls:
then the Redis task restarts with TLS while the Mastodon services roll onto rediss:// (README, "Traffic
between tasks", says what a switching server sees in that minute). A one-task server switches in its
deploy's one restart of the task: the pre-deployment migrations still run on the old, plaintext task
definitions against the old task; the rollout replaces both; the post-deployment ones run on TLS. The data
(the append-only file on EFS) is the same either way.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from mastofargate import aws, tlscert
from mastofargate.deploy import bootstrap
from mastofargate.errors import EXIT_USAGE, MastofargateError
from mastofargate.stack import cache
from mastofargate.stack.secrets import flat_key

if TYPE_CHECKING:
    from mastofargate.target import Target

CA_KEYS = ("ca_cert", "ca_key")
SERVER_KEYS = ("tls_cert", "tls_key")


def wanted(target: Target) -> bool:
    return cache.redis_tls(target.config)


def _ca(target: Target, present: dict[str, object], now: datetime.datetime | None) -> tuple[str, str, dict[str, str]]:
    """(CA certificate, CA key, keys to add): the stored CA, or a new one when the secret has none. A CA that
    is there but unusable is an error, never silently replaced."""
    ca_cert, ca_key = present.get("ca_cert"), present.get("ca_key")
    if ca_cert is None and ca_key is None:
        cert, key = tlscert.make_ca(f"{target.name} Redis CA", now=now)
        return cert, key, {"ca_cert": cert, "ca_key": key}
    if isinstance(ca_cert, str) and isinstance(ca_key, str):
        problem = tlscert.ca_problem(ca_cert, ca_key)
        if problem is None:
            return ca_cert, ca_key, {}
    else:
        problem = "only one of ca_cert and ca_key is there"
    raise MastofargateError(
        f"The Redis CA ({flat_key('redis', 'ca_cert')}) in secret {target.secret_name} cannot be used: {problem}. "
        "Nothing was written.",
        why="ca_cert and ca_key were changed outside mastofargate; they are made once and never replaced, "
        "because every Mastodon process trusts that CA",
        fix="restore the secret's previous version in Secrets Manager (versions are kept)",
        exit_code=EXIT_USAGE,
    )


def _changed_keys(target: Target, present: dict[str, object], now: datetime.datetime | None) -> dict[str, str]:
    """The keys to add or replace (values generated here), from what the secret holds."""
    ca_cert, ca_key, new = _ca(target, present, now)
    host = cache.task_host(target.config, target.name)
    extra = cache.certificate_names(target.config)
    cert, key = present.get("tls_cert"), present.get("tls_key")
    if tlscert.server_problem(
        cert if isinstance(cert, str) else None,
        key if isinstance(key, str) else None,
        ca_cert,
        host,
        extra_names=extra,
        now=now,
    ):
        new["tls_cert"], new["tls_key"] = tlscert.issue_server(ca_cert, ca_key, host, extra_names=extra, now=now)
    password = present.get("password")
    if not isinstance(password, str) or not password:
        raise MastofargateError(
            f"Secret {target.secret_name} has no {flat_key('redis', 'password')}.",
            why="it was changed outside mastofargate",
            fix="restore its previous version in the Secrets Manager console",
            exit_code=EXIT_USAGE,
        )
    urls = {"url": bootstrap.redis_url(password, host)}
    if cache.shares_task(target.config):
        urls["loopback_url"] = bootstrap.redis_url(password, cache.LOOPBACK_HOST)
    new.update({k: v for k, v in urls.items() if present.get(k) != v})
    return new


def ensure(target: Target, *, dry_run: bool = False, now: datetime.datetime | None = None) -> str:
    """Add what the redis keys lack for TLS; return what was done ('unchanged', 'added KEY, ...', or
    with `dry_run` 'would add ...'). The secret itself exists already (bootstrap.ensure_secrets)."""
    try:
        present = bootstrap.read_kind(target, "redis")
    except aws.AccessDenied:
        if dry_run:  # a read-only role (CI's plan role) may not read values
            return "its TLS keys are not readable with these credentials"
        raise
    except aws.NotFound:
        if dry_run:  # a first install's dry run: the secret would be created just before
            urls = ("url", "loopback_url") if cache.shares_task(target.config) else ("url",)
            return "would add " + ", ".join(sorted((*CA_KEYS, *SERVER_KEYS, *urls)))
        raise
    new = _changed_keys(target, present, now)
    if not new:
        return "unchanged"
    listing = ", ".join(sorted(new))
    if dry_run:
        return f"would add {listing}"
    bootstrap.update_kind(target, "redis", {**present, **new}, present)
    return f"added {listing}"
