"""Mastodon's own Postgres role: the owner of its database, not the RDS master user (issue 10 item 4).

The RDS master user (`mastodon`, member of rds_superuser) may create roles, read every database and change
server settings; servers deployed before this module logged Mastodon in as it. Mastodon needs less: to own
its database and everything in it (migrations create, alter and drop tables). `owner_setup_sql` turns the
master-owned database into one owned by a plain LOGIN role, idempotently, so it can run on every deploy:

- the role is created if missing: LOGIN, and none of SUPERUSER, CREATEDB, CREATEROLE, REPLICATION, BYPASSRLS;
- its password is set from a SCRAM-SHA-256 verifier computed here (`scram_sha256_verifier`), so the SQL
  never carries the password itself (an ALTER ROLE ... PASSWORD 'x' can reach the server log);
- the database, its `public` schema and every table, sequence, view, materialized view, function and type in
  Mastodon's schemas that the master user owns pass to the role (a first install has none; an existing server
  has all of them), and the role gets CONNECT/TEMP on the database only;
- PUBLIC loses CREATE on the database (Postgres 15 already refuses CREATE on `public` to PUBLIC);
- where pg_stat_statements is preloaded (RDS), the master creates the extension: PgHero in Mastodon's admin
  reads it, and the owner may not create it (Mastodon itself needs no extension but plpgsql, which every
  database has: db/schema.rb enables only "pg_catalog.plpgsql").

Wiring: the secrets bootstrap stores an `owner_password` in the database secret; deploy/dbsetup.py runs this
SQL as the master user in the data stack's `{name}-dbsetup` task (stack/dbsetup.py: psql of the Postgres
image, PG* from its environment, PGPASSWORD from the secret's `password`, OWNER_SQL passed as a container
environment override and fed to psql on stdin) before any Mastodon task logs in as `OWNER_ROLE`, whose
DB_USER/DB_PASS the templates set (stack/environment.py, stack/secrets.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

from mastofargate.stack.database import DB_OWNER

OWNER_ROLE = DB_OWNER
# Raised whenever owner_setup_sql changes in a way an existing server must run again: the deploy records the
# version that ran (deploy/dbsetup.py) and runs the task only when the record differs.
SETUP_VERSION = 2
SCRAM_ITERATIONS = 4096  # Postgres's default (scram_iterations), what libpq would compute
_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def scram_sha256_verifier(password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The verifier Postgres stores for a SCRAM-SHA-256 password (RFC 5802/7677, as libpq's
    PQencryptPasswordConn makes it): giving it to ALTER ROLE ... PASSWORD sets the password without sending it.
    The password is used as given (Postgres applies SASLprep; plain ASCII passwords, as generated, are unchanged)."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


def _ident(name: str, what: str) -> str:
    if not _IDENT.fullmatch(name):
        raise ValueError(f"{what} {name!r} is not a plain Postgres identifier")
    return name


def owner_setup_sql(*, database: str, master: str, verifier: str, owner: str = OWNER_ROLE) -> str:
    """One idempotent SQL script (run as `master`, connected to `database`) making `owner` the owner of the
    database and of everything `master` owns in it. Raises ValueError for a name that is not a plain
    identifier or a verifier that is not SCRAM (the script quotes nothing it did not check)."""
    db, m, o = _ident(database, "database"), _ident(master, "master user"), _ident(owner, "owner role")
    if not re.fullmatch(r"SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+", verifier):
        raise ValueError("the password must be given as a SCRAM-SHA-256 verifier (scram_sha256_verifier)")
    return f"""\
BEGIN;
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{o}') THEN
    CREATE ROLE {o} LOGIN;
  END IF;
END
$$;
-- No SUPERUSER, REPLICATION or BYPASSRLS: a role the (non-superuser) master creates cannot have them, and
-- only a superuser may even name those attributes in ALTER ROLE.
ALTER ROLE {o} WITH LOGIN NOCREATEDB NOCREATEROLE INHERIT PASSWORD '{verifier}';
GRANT {o} TO {m};
ALTER DATABASE {db} OWNER TO {o};
REVOKE ALL ON DATABASE {db} FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {o};
DO $$
DECLARE
  r record;
BEGIN
  -- Postgres 15+ gives `public` to pg_database_owner (so to the new owner already); 14 gave it to the master.
  IF (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public') = '{m}' THEN
    ALTER SCHEMA public OWNER TO {o};
  END IF;
  FOR r IN
    SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE pg_get_userbyid(c.relowner) = '{m}' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
      AND NOT (c.relkind = 'S' AND EXISTS (
        SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i') AND d.classid = 'pg_class'::regclass
      ))
  LOOP
    EXECUTE format(
      'ALTER %s %I.%I OWNER TO {o}',
      CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
        WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
      r.nspname, r.relname);
  END LOOP;
  FOR r IN
    SELECT p.oid::regprocedure AS sig, p.prokind FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE pg_get_userbyid(p.proowner) = '{m}' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
  LOOP
    EXECUTE format('ALTER %s %s OWNER TO {o}', CASE r.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, r.sig);
  END LOOP;
  FOR r IN
    SELECT t.oid::regtype AS typ FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE pg_get_userbyid(t.typowner) = '{m}' AND t.typtype IN ('e', 'd', 'r', 'c')
      AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e')
  LOOP
    EXECUTE format('ALTER TYPE %s OWNER TO {o}', r.typ);
  END LOOP;
  -- PgHero (Mastodon's /pghero) reads query statistics from pg_stat_statements and offers to create it, which
  -- the owner may not (the extension is not trusted): the master creates it where the library is loaded (RDS
  -- preloads it by default; the Postgres task does not). Whether it is loaded shows only by reading the view
  -- (shared_preload_libraries itself is hidden from non-superusers): where it is not, or the master may not
  -- create it, the block's subtransaction undoes the CREATE and nothing else changes.
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements') THEN
    BEGIN
      CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
      PERFORM 1 FROM pg_stat_statements LIMIT 1;
    EXCEPTION WHEN object_not_in_prerequisite_state OR insufficient_privilege THEN
      NULL;
    END;
  END IF;
END
$$;
COMMIT;
"""
