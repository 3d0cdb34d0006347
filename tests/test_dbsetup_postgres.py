"""The database setup task's exact command and SQL, run by real PostgreSQL servers, and Mastodon as the owner.

Two servers: 15 (Debian's, as scripts/ensure-postgres.sh installs it) and 16 (the binaries the `pgserver` wheel
ships, a dev dependency). RDS's default engine is 17, and since 16 a CREATEROLE user (RDS's master is one)
no longer gets full rights over the roles it creates: 16 is where the SQL's `GRANT owner TO master` matters.

Each server is shaped like RDS: the "master" user `mastodon` is no superuser but has CREATEROLE and CREATEDB
(as rds_superuser does) and owns the database and, for an existing server, everything in it. Passwords are
checked (scram-sha-256 on TCP), so the owner logs in with the password whose verifier the SQL carried.

The container's own script (stack/dbsetup.py COMMAND: bash, pg_isready, psql reading the SQL on stdin) runs
here as it runs in the task, configured only through libpq's PG* variables and OWNER_SQL.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mastofargate.deploy.dbowner import OWNER_ROLE, owner_setup_sql, scram_sha256_verifier
from mastofargate.stack import dbsetup
from mastofargate.stack.database import DB_NAME, DB_USER
from tests.pg_support import as_postgres, free_port, private_dir

MASTER_PASSWORD = "Master0Password0Of0Rds0aaaaaaaaa"
OWNER_PASSWORD = "Owner0Password0Of0Mastodon0bbbbb"
DEBIAN_15 = Path("/usr/lib/postgresql/15/bin")


def _pgserver_bin() -> Path | None:
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


def _bindir(version: str) -> Path:
    path = DEBIAN_15 if version == "15" else _pgserver_bin()
    if path is None or not (path / "initdb").exists():
        message = f"PostgreSQL {version} is missing (15: scripts/ensure-postgres.sh; 16: the pgserver dev dependency)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class Server:
    bindir: Path
    root: Path
    port: int

    def env(self, user: str, password: str, database: str = DB_NAME) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return {
            **base,
            "PATH": f"{self.bindir}:{base.get('PATH', '/usr/bin:/bin')}",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGDATABASE": database,
            "PGUSER": user,
            "PGPASSWORD": password,
            "PGSSLMODE": "disable",  # loopback here; the task requires TLS (stack/dbsetup.environment)
        }

    def psql(self, user: str, password: str, sql: str, database: str = DB_NAME) -> str:
        result = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql],
            capture_output=True,
            text=True,
            env=self.env(user, password, database),
        )
        if result.returncode:
            raise RuntimeError(result.stderr.strip())
        return result.stdout.strip()

    def superuser(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-h", str(self.root), "-p",
             str(self.port), "-U", "postgres", "-d", database, "-c", sql],
            capture_output=True, text=True, cwd="/", **as_postgres(),
        )  # fmt: skip
        if result.returncode:
            raise RuntimeError(result.stderr.strip())
        return result.stdout.strip()

    def run_setup_task(self, sql: str) -> subprocess.CompletedProcess[str]:
        """The task's container command, with the task's environment (less TLS) and OWNER_SQL."""
        env = {**self.env(DB_USER, MASTER_PASSWORD), dbsetup.SQL_ENV: sql}
        return subprocess.run(dbsetup.COMMAND, capture_output=True, text=True, env=env, timeout=120)


def start_server(bindir: Path, settings: dict[str, str] | None = None) -> Server:
    root = private_dir("mastofargate-owner-")
    data = root / "data"
    kw = {"capture_output": True, "text": True, "cwd": "/", "check": True, **as_postgres()}
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
         "--auth-host=scram-sha-256", "-E", "UTF8"],
        **kw,
    )  # fmt: skip
    port = free_port()
    options = [f"-c port={port}", "-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={root}"]
    options += [f"-c {k}={v}" for k, v in (settings or {}).items()]
    subprocess.run(
        [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", " ".join(options), "-w", "start"],
        **kw,
    )
    return Server(bindir, root, port)


def stop_server(server: Server) -> None:
    subprocess.run(
        [str(server.bindir / "pg_ctl"), "-D", str(server.root / "data"), "-m", "fast", "-w", "stop"],
        capture_output=True, cwd="/", **as_postgres(),
    )  # fmt: skip
    shutil.rmtree(server.root, ignore_errors=True)


def rds_like(server: Server) -> None:
    """The master user RDS creates: CREATEROLE and CREATEDB, no superuser; the database it owns; and a second
    database of someone else's on the same server (the owner must not read it)."""
    server.superuser(f"CREATE ROLE {DB_USER} LOGIN CREATEROLE CREATEDB PASSWORD '{MASTER_PASSWORD}'")
    server.superuser(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")
    server.superuser("CREATE DATABASE other_app")
    server.superuser("CREATE TABLE private_notes (body text); INSERT INTO private_notes VALUES ('mine')", "other_app")


# An existing server: what db/schema.rb and Mastodon's own SQL made, all owned by the master user.
EXISTING_SCHEMA = """
CREATE TABLE accounts (id bigint PRIMARY KEY DEFAULT 1, username varchar NOT NULL DEFAULT '', note text);
CREATE SEQUENCE accounts_id_seq;
CREATE TABLE statuses (id bigserial PRIMARY KEY, account_id bigint REFERENCES accounts, text text);
CREATE INDEX index_statuses_on_account_id ON statuses (account_id);
CREATE TABLE schema_migrations (version varchar PRIMARY KEY);
CREATE MATERIALIZED VIEW instances AS SELECT DISTINCT username AS domain FROM accounts;
CREATE VIEW user_ips AS SELECT id, username FROM accounts;
INSERT INTO accounts (id, username) VALUES (-99, 'social.example.org');
"""

# Mastodon::Snowflake.define_timestamp_id's function (lib/mastodon/snowflake.rb), shortened but of the same kind:
# a plpgsql function the migrations and db:prepare create or replace.
TIMESTAMP_ID = """
CREATE OR REPLACE FUNCTION timestamp_id(table_name text) RETURNS bigint AS $$
  DECLARE time_part bigint; tail bigint;
  BEGIN
    time_part := ((date_part('epoch', now()) * 1000))::bigint << 16;
    tail := nextval(table_name || '_id_seq') & 65535;
    RETURN time_part | tail;
  END
$$ LANGUAGE plpgsql VOLATILE;
"""

# What Mastodon does as the owner: db/schema.rb's enable_extension (Rails emits CREATE EXTENSION IF NOT EXISTS),
# migrations (create, alter, rename, drop; indexes concurrently; sequences; the id function), the id sequences
# helper's DO block, tootctl's maintenance (REINDEX, VACUUM FULL), the admin dashboard's database size, and
# the migration helper's trigger-permission check (lib/mastodon/migration_helpers.rb, Grant).
MIGRATIONS = [
    'CREATE EXTENSION IF NOT EXISTS "plpgsql" SCHEMA pg_catalog',
    TIMESTAMP_ID,
    "ALTER TABLE accounts ALTER COLUMN id SET DEFAULT timestamp_id('accounts')",
    "INSERT INTO accounts (username) VALUES ('alice')",
    "CREATE TABLE collections (id bigint PRIMARY KEY, account_id bigint REFERENCES accounts, name varchar)",
    """DO $$ BEGIN CREATE SEQUENCE collections_id_seq; EXCEPTION WHEN duplicate_table THEN END $$ LANGUAGE plpgsql""",
    "ALTER TABLE statuses ADD COLUMN quote_id bigint",
    "ALTER TABLE statuses RENAME COLUMN text TO body",
    "CREATE INDEX CONCURRENTLY index_statuses_on_quote_id ON statuses (quote_id)",
    "DROP INDEX CONCURRENTLY index_statuses_on_account_id",
    "ALTER SEQUENCE accounts_id_seq RESTART WITH 100",
    "DROP VIEW user_ips",
    "REFRESH MATERIALIZED VIEW instances",
    "CREATE TRIGGER t BEFORE UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
    "DROP TRIGGER t ON accounts",
    "DROP TABLE collections",
    "DROP SEQUENCE collections_id_seq",
    "REINDEX TABLE statuses",
    "VACUUM FULL ANALYZE statuses",
    "SELECT pg_database_size(current_database())",
]
TRIGGER_CHECK = (
    "SELECT count(*) FROM information_schema.role_table_grants "
    "WHERE privilege_type = 'TRIGGER' AND table_name = 'accounts' AND grantee = user"
)


def has_pg_stat_statements(server: Server) -> bool:
    """Debian's server ships the extension; the pgserver wheel's does not."""
    return server.superuser("SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_stat_statements'") == "1"


def the_sql(password: str = OWNER_PASSWORD) -> str:
    return owner_setup_sql(database=DB_NAME, master=DB_USER, verifier=scram_sha256_verifier(password))


@pytest.fixture(scope="module", params=["15", "16"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    srv = start_server(_bindir(request.param))
    try:
        rds_like(srv)
        srv.psql(DB_USER, MASTER_PASSWORD, EXISTING_SCHEMA)
        yield srv
    finally:
        stop_server(srv)


def test_the_task_hands_an_existing_database_to_the_owner_and_mastodon_migrates_as_it(server: Server) -> None:
    sql = the_sql()
    assert OWNER_PASSWORD not in sql and MASTER_PASSWORD not in sql
    for _ in range(2):  # idempotent: a second deploy (or a new SQL version) runs it again
        done = server.run_setup_task(sql)
        assert done.returncode == 0, done.stderr
        assert OWNER_PASSWORD not in done.stdout + done.stderr
    owners = server.superuser(
        f"SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = 'public' UNION SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{DB_NAME}'",
        DB_NAME,
    )
    assert owners.splitlines() == [OWNER_ROLE]
    for statement in MIGRATIONS:
        server.psql(OWNER_ROLE, OWNER_PASSWORD, statement)
    assert server.psql(OWNER_ROLE, OWNER_PASSWORD, TRIGGER_CHECK) == "1"
    assert server.psql(OWNER_ROLE, OWNER_PASSWORD, "SELECT username FROM accounts WHERE id > 1000") == "alice"
    # The master still reads everything (a logical backup runs as the master: its membership in the owner role).
    dump = subprocess.run(
        [str(server.bindir / "pg_dump"), "--schema-only", DB_NAME],
        capture_output=True,
        text=True,
        env=server.env(DB_USER, MASTER_PASSWORD),
    )
    assert dump.returncode == 0, dump.stderr
    assert "CREATE TABLE public.statuses" in dump.stdout


def test_the_owner_is_no_administrator(server: Server) -> None:
    assert server.run_setup_task(the_sql()).returncode == 0
    flags = server.superuser(
        f"SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls FROM pg_roles "
        f"WHERE rolname = '{OWNER_ROLE}'"
    )
    assert flags == "f|f|f|f|f"
    for forbidden in (
        "CREATE ROLE intruder LOGIN",
        f"ALTER ROLE {DB_USER} PASSWORD 'taken'",
        "CREATE DATABASE another",
        "ALTER SYSTEM SET work_mem = '1GB'",
        f"SET ROLE {DB_USER}",
        "SELECT rolpassword FROM pg_authid",
        *(["CREATE EXTENSION pg_stat_statements"] if has_pg_stat_statements(server) else []),
    ):
        with pytest.raises(RuntimeError, match=r"permission denied|must be|not allowed|only superuser"):
            server.psql(OWNER_ROLE, OWNER_PASSWORD, forbidden)
    # Another database on the same server: PUBLIC may connect (Postgres's default), but nothing in it is readable.
    with pytest.raises(RuntimeError, match="permission denied for table private_notes"):
        server.psql(OWNER_ROLE, OWNER_PASSWORD, "SELECT body FROM private_notes", database="other_app")
    with pytest.raises(RuntimeError, match="password authentication failed"):
        server.psql(OWNER_ROLE, MASTER_PASSWORD, "SELECT 1")


def test_a_failing_script_commits_nothing_and_fails_the_task(server: Server) -> None:
    broken = the_sql("Another0Password0cccccccccccccccc").replace("COMMIT;", "SELECT 1/0;\nCOMMIT;")
    failed = server.run_setup_task(broken)
    assert failed.returncode != 0
    assert "division by zero" in failed.stderr
    # The password was not changed: the transaction never committed.
    assert server.psql(OWNER_ROLE, OWNER_PASSWORD, "SELECT current_user") == OWNER_ROLE
    empty = server.run_setup_task("")
    assert empty.returncode != 0 and "OWNER_SQL is empty" in empty.stderr


def test_pg_stat_statements_is_made_by_the_master_where_it_is_loaded() -> None:
    """PgHero reads it; the owner may not create it. A superuser master (the Postgres task's shape) with the
    library preloaded (RDS's default) creates it; without the library the setup leaves it out and succeeds."""
    bindir = _bindir("15")
    for preload, expect in ((True, "1"), (False, "0")):
        srv = start_server(bindir, {"shared_preload_libraries": "pg_stat_statements"} if preload else None)
        try:
            srv.superuser(f"CREATE ROLE {DB_USER} SUPERUSER LOGIN PASSWORD '{MASTER_PASSWORD}'")
            srv.superuser(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")
            done = srv.run_setup_task(the_sql())
            assert done.returncode == 0, done.stderr
            made = "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"
            assert srv.psql(OWNER_ROLE, OWNER_PASSWORD, made) == expect
            if preload:
                srv.psql(OWNER_ROLE, OWNER_PASSWORD, "SELECT count(*) FROM pg_stat_statements")
        finally:
            stop_server(srv)
