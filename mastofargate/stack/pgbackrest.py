"""pgBackRest for the Postgres task: continuous WAL archiving and base backups into the backup bucket.

Point-in-time recovery as RDS has it: every WAL segment is pushed to S3 as soon as it is full or
ARCHIVE_TIMEOUT_SECONDS after the last commit (so at most about a minute of writes is at risk), and
full backups, taken inside the Postgres task every FULL_BACKUP_DAYS by the entrypoint's keeper
(pgtask.py pgbackrest-keeper), are the starting points a restore replays WAL onto.

Everything is configured through pgBackRest's PGBACKREST_* environment variables (every option has one),
so the task definition carries the whole configuration and no file has to be written into the image.
Postgres runs `archive_command`, which inherits the postmaster's environment.

Credentials: pgBackRest 2.45 (Debian bookworm) reads only EC2 instance metadata for `repo1-s3-key-type=auto`,
not the ECS task-role endpoint, so archive_command goes through pgtask.py's `pgbackrest` wrapper, which
fetches the task role's temporary credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI) and hands them to
pgBackRest as a shared key with a session token. No static key exists.

Encryption: the bucket encrypts every object with the stack's KMS key. pgBackRest's own repository cipher
(aes-256-cbc) is switched on when its passphrase reaches the container as PGBACKREST_REPO1_CIPHER_PASS
(a secret); that passphrase then belongs in `secrets export` like the other keys.
"""

from __future__ import annotations

from mastofargate.stack.backups import PGBACKREST_PREFIX

STANZA = "main"
ARCHIVE_TIMEOUT_SECONDS = 60
# Full backups kept by count: with a weekly full backup, two of them give 7-14 days of point-in-time
# recovery (RDS's default automated-backup window is 7). pgBackRest expires older WAL with them.
RETENTION_FULL = 2
FULL_BACKUP_DAYS = 7
PGTASK_PATH = "/usr/local/bin/pgtask.py"


def repository_environment(
    bucket: str,
    region: str,
    *,
    pg_path: str,
    endpoint: str | None = None,
    port: int | None = None,
    uri_style: str = "host",
    verify_tls: bool = True,
    cipher: bool = False,
    work_dir: str = "/tmp/pgbackrest",
) -> dict[str, str]:
    """PGBACKREST_* variables for a repository in `bucket` (under the pgbackrest/ prefix) and the cluster
    at `pg_path`. `endpoint`, `port`, `uri_style` and `verify_tls` exist for S3-compatible stores; AWS
    needs none of them. With `cipher`, PGBACKREST_REPO1_CIPHER_PASS must come from a secret."""
    env = {
        "PGBACKREST_STANZA": STANZA,
        "PGBACKREST_PG1_PATH": pg_path,
        "PGBACKREST_REPO1_TYPE": "s3",
        "PGBACKREST_REPO1_PATH": "/" + PGBACKREST_PREFIX.rstrip("/"),
        "PGBACKREST_REPO1_S3_BUCKET": bucket,
        "PGBACKREST_REPO1_S3_REGION": region,
        "PGBACKREST_REPO1_S3_ENDPOINT": endpoint or f"s3.{region}.amazonaws.com",
        "PGBACKREST_REPO1_S3_URI_STYLE": uri_style,
        "PGBACKREST_REPO1_RETENTION_FULL": str(RETENTION_FULL),
        "PGBACKREST_REPO1_RETENTION_FULL_TYPE": "count",
        "PGBACKREST_COMPRESS_TYPE": "lz4",
        # small files bundled into larger objects: a fresh cluster's ~1000 files become a few dozen PUTs
        # (S3 bills per request, and each request costs a round trip)
        "PGBACKREST_REPO1_BUNDLE": "y",
        "PGBACKREST_START_FAST": "y",
        "PGBACKREST_ARCHIVE_ASYNC": "n",
        "PGBACKREST_LOG_LEVEL_CONSOLE": "info",
        "PGBACKREST_LOG_LEVEL_FILE": "off",
        "PGBACKREST_LOCK_PATH": f"{work_dir}/lock",
        "PGBACKREST_SPOOL_PATH": f"{work_dir}/spool",
    }
    if port:
        env["PGBACKREST_REPO1_STORAGE_PORT"] = str(port)
    if not verify_tls:
        env["PGBACKREST_REPO1_STORAGE_VERIFY_TLS"] = "n"
    if cipher:
        env["PGBACKREST_REPO1_CIPHER_TYPE"] = "aes-256-cbc"
    return env


def archive_command(python: str = "python3", pgtask: str = PGTASK_PATH) -> str:
    return f"{python} {pgtask} pgbackrest archive-push %p"


def postgres_settings(python: str = "python3", pgtask: str = PGTASK_PATH) -> dict[str, str]:
    """`postgres -c` settings that turn on continuous archiving through pgBackRest."""
    return {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": archive_command(python, pgtask),
        "archive_timeout": str(ARCHIVE_TIMEOUT_SECONDS),
    }
