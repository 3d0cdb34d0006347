"""When the deploy starts the database setup task (deploy/dbsetup.py), and what it passes to it.

The task itself, its SQL and Mastodon as the owner run against real PostgreSQL in test_dbsetup_postgres.py;
the deploy's sequence against the emulator in test_sandbox_e2e.py. Here: the record that spares every later
deploy a Fargate task, and the size of what the task gets (ECS refuses overrides over 8 KiB).
"""

from __future__ import annotations

import json

from mastofargate.deploy import dbsetup
from mastofargate.deploy.dbowner import SETUP_VERSION, owner_setup_sql, scram_sha256_verifier
from mastofargate.stack.database import DB_NAME, DB_USER

PASSWORD = "Owner0Password0Of0Mastodon0bbbbb"


def test_a_record_of_this_version_and_password_means_no_task() -> None:
    secret = {"password": "m", "owner_password": PASSWORD, "owner_setup": dbsetup.record_for(PASSWORD)}
    state = dbsetup.setup_state(secret)
    assert state.needed is False and "is set up" in state.why
    assert PASSWORD not in dbsetup.record_for(PASSWORD)
    assert dbsetup.record_for(PASSWORD).startswith(f"{SETUP_VERSION}:")


def test_every_other_state_runs_the_task_and_says_why() -> None:
    cases = {
        "no secret yet": (None, "does not exist yet"),
        "an older secret": ({"password": "m"}, "does not exist yet"),
        "never set up": ({"password": "m", "owner_password": PASSWORD}, "still logs in as the master user"),
        "an older setup": (
            {"password": "m", "owner_password": PASSWORD, "owner_setup": "1:" + dbsetup.record_for(PASSWORD)[2:]},
            f"version 1 -> {SETUP_VERSION}",
        ),
        "a new password": (
            {"password": "m", "owner_password": PASSWORD, "owner_setup": dbsetup.record_for("another")},
            "password of mastodon_owner in the secret is new",
        ),
    }
    for case, (secret, why) in cases.items():
        state = dbsetup.setup_state(secret)
        assert state.needed is True, case
        assert why in state.why, case


def test_the_override_fits_ecs_and_carries_no_password() -> None:
    sql = owner_setup_sql(database=DB_NAME, master=DB_USER, verifier=scram_sha256_verifier(PASSWORD))
    overrides = {"containerOverrides": [{"name": "dbsetup", "environment": [{"name": "OWNER_SQL", "value": sql}]}]}
    assert len(json.dumps(overrides)) < 8192
    assert PASSWORD not in sql
