"""Real PostgreSQL 15 clusters for the backup tests, and a database shaped like Mastodon's.

scripts/ensure-postgres.sh installs Debian's postgresql-15, pgbackrest and python3-boto3 (what the backup
image has). Each `Cluster` is made with initdb in its own temporary directory, listens on 127.0.0.1 on a
free port, runs as the `postgres` user (PostgreSQL refuses root) and is stopped by the fixture that made it.
The backup task script (mastofargate/data/backup/pgtask.py) runs the way the task runs it: Debian's
python3 with python3-boto3, as `postgres`, configured only through libpq's PG* variables.
Without the packages the tests skip, except under CI=true, where they fail (the CI must install them).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mastofargate

BINDIR = Path("/usr/lib/postgresql/15/bin")
SYSTEM_PYTHON = "/usr/bin/python3"
PGTASK = Path(mastofargate.__file__).parent / "data" / "backup" / "pgtask.py"
SCHEMA_VERSION = "20251117000000"
SEED_ACCOUNTS = 25
SEED_STATUSES = 400


def require_postgres() -> None:
    problems = [str(BINDIR / p) for p in ("initdb", "pg_ctl", "pg_dump") if not (BINDIR / p).exists()]
    if not shutil.which("pgbackrest"):
        problems.append("pgbackrest")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        problems.append("user postgres")
    if subprocess.run([SYSTEM_PYTHON, "-c", "import boto3"], capture_output=True).returncode != 0:
        problems.append("python3-boto3")
    if problems:
        message = f"missing {', '.join(problems)}: run scripts/ensure-postgres.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_postgres() -> dict[str, Any]:
    """subprocess keyword arguments that run a program as `postgres` when we are root."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def private_dir(prefix: str) -> Path:
    """A temporary directory the postgres user owns (pytest's tmp_path is root's and closed to others)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    path.chmod(0o700)
    return path


def run(
    args: list[str], env: dict[str, str] | None = None, check: bool = True, **kw: Any
) -> subprocess.CompletedProcess:
    result = subprocess.run(args, env=env, capture_output=True, text=True, cwd="/", **as_postgres(), **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


class Cluster:
    """One initdb'd PostgreSQL on 127.0.0.1:port."""

    def __init__(self, root: Path, settings: dict[str, str] | None = None, *, init: bool = True) -> None:
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.settings = settings or {}
        if init:
            run([str(BINDIR / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
            self.configure(self.settings)

    def configure(self, settings: dict[str, str]) -> None:
        """Append settings to postgresql.conf (quoted as the file wants; no shell in between)."""
        lines = "".join(f"{k} = '{v.replace(chr(39), chr(39) * 2)}'\n" for k, v in settings.items())
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(lines)

    def env(self, database: str = "postgres", **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return {
            **base,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": "postgres",
            "PGDATABASE": database,
            "PG_BINDIR": str(BINDIR),
            **extra,
        }

    def start(self, env: dict[str, str] | None = None) -> None:
        """Start it; `env` is the postmaster's environment, which archive_command and restore_command inherit."""
        options = [f"-c port={self.port}", "-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={self.root}"]
        run(
            [
                str(BINDIR / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.root / "log"),
                "-o",
                " ".join(options),
                "-w",
                "-t",
                "60",
                "start",
            ],
            env=env,
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            run([str(BINDIR / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], check=False)

    def log(self) -> str:
        path = self.root / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def sql(self, sql: str, database: str = "postgres") -> list[list[str]]:
        out = run(
            [str(BINDIR / "psql"), "-X", "-A", "-t", "-q", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            env=self.env(database),
        )
        return [line.split("\t") for line in out.stdout.splitlines() if line]


@contextlib.contextmanager
def cluster(prefix: str = "pg-", settings: dict[str, str] | None = None) -> Iterator[Cluster]:
    root = private_dir(prefix)
    c = Cluster(root, settings)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


def seed_mastodon(
    c: Cluster, database: str = "mastodon_production", *, accounts: int = SEED_ACCOUNTS, statuses: int = SEED_STATUSES
) -> None:
    """A database shaped like Mastodon's where backups look: accounts, users, statuses, schema_migrations
    (Mastodon's column names and types for the columns used; the instance actor is account -99)."""
    c.sql(f"CREATE DATABASE {database}")
    c.sql(
        f"""
        CREATE TABLE schema_migrations (version character varying PRIMARY KEY);
        CREATE TABLE ar_internal_metadata (key character varying PRIMARY KEY, value character varying,
            created_at timestamp NOT NULL, updated_at timestamp NOT NULL);
        CREATE TABLE accounts (id bigint PRIMARY KEY, username character varying NOT NULL DEFAULT '',
            domain character varying, note text NOT NULL DEFAULT '', created_at timestamp NOT NULL,
            updated_at timestamp NOT NULL);
        CREATE UNIQUE INDEX index_accounts_on_username_and_domain_lower
            ON accounts (lower(username), COALESCE(lower(domain), ''));
        CREATE TABLE users (id bigint PRIMARY KEY, email character varying NOT NULL DEFAULT '',
            account_id bigint NOT NULL REFERENCES accounts(id), otp_secret character varying,
            created_at timestamp NOT NULL, updated_at timestamp NOT NULL);
        CREATE TABLE statuses (id bigint PRIMARY KEY, uri character varying, text text NOT NULL DEFAULT '',
            account_id bigint NOT NULL REFERENCES accounts(id), visibility integer NOT NULL DEFAULT 0,
            created_at timestamp NOT NULL, updated_at timestamp NOT NULL);
        CREATE INDEX index_statuses_on_account_id_id ON statuses (account_id, id DESC);
        INSERT INTO schema_migrations VALUES ('20240101000000'), ('20250601000000'), ('{SCHEMA_VERSION}');
        INSERT INTO ar_internal_metadata VALUES ('environment', 'production', now(), now());
        INSERT INTO accounts VALUES (-99, 'social.example.org', NULL, '', now(), now());
        INSERT INTO accounts SELECT g, 'user' || g, CASE WHEN g % 3 = 0 THEN 'remote.example' END,
            'note ' || g, now(), now() FROM generate_series(1, {accounts - 1}) g;
        INSERT INTO users SELECT g, 'user' || g || '@example.org', g, NULL, now(), now()
            FROM generate_series(1, {accounts - 1}) g WHERE g % 3 <> 0;
        INSERT INTO statuses SELECT g, 'https://social.example.org/statuses/' || g, 'status text ' || g,
            1 + (g % {accounts - 1}), g % 4, now(), now() FROM generate_series(1, {statuses}) g;
        """,
        database,
    )


def pgtask(args: list[str], env: dict[str, str], check: bool = False) -> subprocess.CompletedProcess:
    """Run the backup task script as the task does (Debian python3, as postgres)."""
    return run([SYSTEM_PYTHON, str(PGTASK), *args], env=env, check=check, timeout=600)
