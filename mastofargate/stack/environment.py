"""The plain environment of each Mastodon process: only values that are not secret.

Secrets (passwords, keys, the Redis URL that embeds a password) go through `secrets.mastodon_secrets`;
`tests/test_templates.py` fails if a secret-looking name ever lands here.
"""

from __future__ import annotations

from typing import TypeAlias

from troposphere import Join

from mastofargate.sizing import ServiceSize
from mastofargate.stack import cache, mail
from mastofargate.stack.cluster import namespace
from mastofargate.stack.context import Build
from mastofargate.stack.database import DB_NAME, DB_OWNER
from mastofargate.stack.network import POSTGRES_PORT

EnvValue: TypeAlias = str | Join | object


LOOPBACK = "127.0.0.1"  # containers of one task share its network namespace


def data_host(b: Build, store: str, process: ServiceSize | None) -> str:
    """Where a process reaches the Postgres or Redis container (`store`): over loopback from the same task,
    else by the Cloud Map name of the task holding it (`postgres`, `redis`, or a packed task's name)."""
    holder = b.config.task_of(store)
    if holder is None:
        raise ValueError(f"no task holds {store}")
    if process is not None and any(c.name == process.name for c in holder.containers):
        return LOOPBACK
    return f"{holder.name}.{namespace(b)}"


def _database(b: Build, role: str, process: ServiceSize | None = None) -> dict[str, EnvValue]:
    # Both RDS (rds.force_ssl) and the Postgres task (its entrypoint: hostssl only, a self-signed certificate)
    # refuse TCP without TLS. Rails verifies nothing with `require`; Node's pg treats every mode but
    # disable/no-verify as verified TLS against its CA store, which has neither the RDS CA nor ours.
    ssl = "no-verify" if role == "streaming" else "require"
    if b.config.deployment.database == "rds":
        host: EnvValue = b.imported("DatabaseHost")
    else:
        host = data_host(b, b.config.postgres_task.name, process)
    # The owner role of the database, not the master user (issue 10 item 4; the deploy's database setup step
    # creates it before any Mastodon task logs in as it).
    return {"DB_HOST": host, "DB_PORT": str(POSTGRES_PORT), "DB_NAME": DB_NAME, "DB_USER": DB_OWNER, "DB_SSLMODE": ssl}


def _redis(b: Build, role: str) -> dict[str, EnvValue]:
    """Redis is reached by REDIS_URL alone (rediss://, a secret: it carries the password), in every shape: its
    host (the task holding Redis, loopback inside it, or ElastiCache) is in the URL."""
    if cache.redis_tls(b.config):
        # verified against the server's CA, which the start wrapper (cache.TRUST_SCRIPT) writes to these
        # files: Node adds NODE_EXTRA_CA_CERTS to its roots; Ruby's OpenSSL takes SSL_CERT_FILE as its whole
        # store (public roots + the CA).
        if role == "streaming":
            return {"NODE_EXTRA_CA_CERTS": cache.NODE_EXTRA}
        return {"REDIS_DRIVER": "ruby", "SSL_CERT_FILE": cache.RUBY_BUNDLE}
    # ElastiCache: TLS needs Rails' Ruby driver; Node's ioredis reads no driver variable and enables TLS from
    # the rediss:// URL itself.
    return {} if role == "streaming" else {"REDIS_DRIVER": "ruby"}


def mastodon_environment(b: Build, size: ServiceSize, job: bool = False) -> dict[str, EnvValue]:
    """Environment for web, Sidekiq, streaming and one-off (`job`) tasks, sorted for stable output.

    Each process gets only what it reads (tests/mastodon_reads.py lists where Mastodon 4.5 reads each name):
    the Node streaming server reads the database and Redis settings only, and `WEB_CONCURRENCY` is read by
    Puma alone (config/puma.rb), so one-off tasks (migrations, tootctl) do not get it."""
    cfg = b.config
    process = None if job else size
    env: dict[str, EnvValue] = {**_database(b, size.role, process), **_redis(b, size.role), **size.env()}
    if job:
        env.pop("WEB_CONCURRENCY", None)
    if size.role == "streaming":
        return dict(sorted(env.items()))
    env["LOCAL_DOMAIN"] = cfg.server.domain
    if cfg.server.web_domain:
        env["WEB_DOMAIN"] = cfg.server.web_domain
    media = b.imported("MediaHost")
    env |= {
        "S3_ENABLED": "true",
        "S3_BUCKET": b.imported("MediaBucketName"),
        "S3_REGION": cfg.aws.region,
        "S3_PROTOCOL": "https",
        # The bucket has ACLs disabled (BucketOwnerEnforced): the EMPTY string is Mastodon's switch for that
        # (config/initializers/paperclip.rb sends no ACL; update_media_attachments_permissions_service.rb skips
        # acl.put on suspension). `private` makes S3 refuse those calls; unset means `public-read`.
        "S3_PERMISSION": "",
        "S3_ALIAS_HOST": media,  # media URLs go through CloudFront
        "CDN_HOST": Join("", ["https://", media]),  # pre-built assets uploaded under the bucket's assets/
    }
    if cfg.server.single_user_mode:
        env["SINGLE_USER_MODE"] = "true"
    if cfg.smtp.server:
        env |= {"SMTP_SERVER": cfg.smtp.server, "SMTP_PORT": str(cfg.smtp.port)}
        if cfg.smtp.login:
            env["SMTP_LOGIN"] = cfg.smtp.login
        env["SMTP_FROM_ADDRESS"] = cfg.smtp.from_address or mail.from_address(cfg.server.domain)
    else:
        # SES (stack/mail.py): SMTP_LOGIN and SMTP_PASSWORD come from the app secret, written by the deploy.
        env |= {
            "SMTP_SERVER": mail.smtp_host(cfg.aws.region),
            "SMTP_PORT": str(mail.SMTP_PORT),
            "SMTP_ENABLE_STARTTLS": "always",
            "SMTP_FROM_ADDRESS": mail.from_address(cfg.server.domain),
        }
    return dict(sorted(env.items()))
