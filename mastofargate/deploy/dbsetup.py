"""Deploy step: Mastodon's database owner role, set up before Mastodon first logs in as it (issue 10 item 4).

The templates point every Mastodon process at `mastodon_owner` (stack/environment.py, stack/secrets.py). That
role is made, and handed the database, by the data stack's `{name}-dbsetup` task (stack/dbsetup.py), running
deploy/dbowner.py's SQL as the master user. When it runs:

  install   after the app stack exists with its services at zero (a Postgres task is up), before db:prepare;
  upgrade   after the pre-deployment migrations (on the first upgrade of an older server they still log in
            as the master user, through the task definition the services run now, so what they create must
            pass to the owner too) and before the app change set, which switches the user.

A Fargate task costs 40-60 s, so it runs only when needed: after a successful run the secret gets (database_)
`owner_setup` = "<SETUP_VERSION>:<fingerprint of owner_password>". A later deploy whose record matches runs
nothing; a new SQL version, or an owner password made afresh (a recreated secret), runs it again. The SQL is
idempotent, so running it again is always safe. To force a run, remove `owner_setup` from the secret.

Nothing secret reaches a command line or a log: the override carries the SCRAM verifier of the owner's
password, never the password, and the master password reaches the task only through its `secrets`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from mastofargate import aws
from mastofargate.deploy import bootstrap, jobs
from mastofargate.deploy.context import Run
from mastofargate.deploy.dbowner import OWNER_ROLE, SETUP_VERSION, owner_setup_sql, scram_sha256_verifier
from mastofargate.errors import MastofargateError
from mastofargate.stack.database import DB_NAME, DB_USER
from mastofargate.stack.dbsetup import JOB, SQL_ENV
from mastofargate.stack.secrets import OWNER_PASSWORD, OWNER_SETUP_RECORD, flat_key
from mastofargate.target import Target

WHAT = f"create role {OWNER_ROLE} and hand it the database, as the master user"


def record_for(owner_password: str) -> str:
    """What the secret records (database_owner_setup) after a successful run: the SQL's version and which
    password it set (a truncated SHA-256 of a 32-character random password, kept in the same secret as the password)."""
    return f"{SETUP_VERSION}:{hashlib.sha256(owner_password.encode('utf-8')).hexdigest()[:16]}"


@dataclass(frozen=True)
class SetupState:
    """Whether the setup task has to run: True, False, or None when it cannot be told (a role that may not
    read the secret's value); `why` says which, for the plan."""

    needed: bool | None
    why: str


def setup_state(secret: dict[str, Any] | None) -> SetupState:
    if secret is None or OWNER_PASSWORD not in secret:
        return SetupState(True, f"{OWNER_ROLE} does not exist yet")
    record = secret.get(OWNER_SETUP_RECORD)
    if record == record_for(str(secret[OWNER_PASSWORD])):
        return SetupState(False, f"{OWNER_ROLE} is set up (setup version {SETUP_VERSION})")
    if record is None:
        return SetupState(True, f"Mastodon still logs in as the master user; {OWNER_ROLE} is not set up")
    version = str(record).split(":", 1)[0]
    if version != str(SETUP_VERSION):
        return SetupState(True, f"the setup changed (version {version} -> {SETUP_VERSION})")
    return SetupState(True, f"the password of {OWNER_ROLE} in the secret is new")


def read_state(target: Target) -> SetupState:
    """The state from the secret's database keys (read-only: `plan` and `--dry-run` use it)."""
    try:
        secret = bootstrap.read_kind(target, "database")
    except aws.NotFound:
        secret = None
    except aws.AccessDenied:
        return SetupState(None, "the secret is not readable with these credentials; deploy runs it if needed")
    return setup_state(secret)


def show(run: Run, state: SetupState, *, dry_run: bool) -> None:
    """One plan line: what the database setup step will (or would) do."""
    if state.needed is False:
        run.out.line(f"database owner: {state.why}; no setup task")
    elif state.needed is None:
        run.out.line(f"database owner: unknown ({state.why})")
    else:
        verb = "would run" if dry_run else "runs"
        run.out.line(f"database owner: {target_family(run.target)} {verb} ({WHAT}): {state.why}")


def target_family(target: Target) -> str:
    return f"{target.name}-{JOB}"


def ensure_owner(run: Run, *, timeout: float, failed: str, fix: str, restored: bool = False) -> bool:
    """Run the setup task if the secret's record (database_owner_setup) says so; record success. True if it ran.
    On failure raises with the task's stopped reason and last log lines, `failed` saying what state the server
    is in and `fix` what to run. `restored`: the live database was just replaced by a restored one (a dump
    restored with --no-owner belongs to the master; a snapshot may predate the owner role or its password),
    so the setup runs whatever the record says."""
    target = run.target
    name = target.secret_name
    secret = bootstrap.read_kind(target, "database")
    state = setup_state(secret)
    if restored and OWNER_PASSWORD in secret:
        state = SetupState(True, f"the database was restored: its objects pass to {OWNER_ROLE}")
        if OWNER_SETUP_RECORD in secret:  # forget the old record first: if the task fails, the next deploy runs it
            pending = {k: v for k, v in secret.items() if k != OWNER_SETUP_RECORD}
            bootstrap.update_kind(target, "database", pending, secret)
            secret = pending
    if not state.needed:
        return False
    if OWNER_PASSWORD not in secret:  # the secrets step adds it before any step that gets here
        raise MastofargateError(
            f"Secret {name} has no {flat_key('database', OWNER_PASSWORD)}.",
            why="it was removed while the deploy ran",
            fix="run 'mastofargate deploy' again (the missing key is added)",
        )
    sql = owner_setup_sql(database=DB_NAME, master=DB_USER, verifier=scram_sha256_verifier(str(secret[OWNER_PASSWORD])))
    result = jobs.run_job(run, JOB, None, timeout=timeout, environment={SQL_ENV: sql}, describe=f"{WHAT}; {state.why}")
    if not result.ok:
        raise jobs.task_failure(JOB, result, failed, fix)
    current = bootstrap.read_kind(target, "database")  # re-read: the password must still be the one set
    if current.get(OWNER_PASSWORD) != secret[OWNER_PASSWORD]:
        raise MastofargateError(
            f"The owner password in secret {name} changed while the database setup ran.",
            why="someone edited the secret during the deploy",
            fix="run 'mastofargate deploy' again: the setup runs again with the password the secret holds",
        )
    bootstrap.update_kind(
        target, "database", {**current, OWNER_SETUP_RECORD: record_for(str(secret[OWNER_PASSWORD]))}, current
    )
    run.out.line(f"  {OWNER_ROLE} owns the database; Mastodon logs in as it (recorded in {name})")
    return True
