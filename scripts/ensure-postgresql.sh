#!/usr/bin/env bash
# ensure-postgresql.sh - make Debian's PostgreSQL 15 server binaries (initdb, pg_ctl, postgres) and psql
# available for mastofargate's database tests. Idempotent; prints a line only when it installs something.
# Starts nothing: each test creates its own throw-away cluster in a temporary folder, listening on
# 127.0.0.1 only, and stops it (tests/postgres_support.py). Needs root for apt-get.
set -euo pipefail

if [ -x /usr/lib/postgresql/15/bin/initdb ] && command -v psql >/dev/null; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "ensure-postgresql: installing postgresql-15 and postgresql-client-15"
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql-15 postgresql-client-15 >/dev/null
