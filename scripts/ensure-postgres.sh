#!/usr/bin/env bash
# ensure-postgres.sh - Debian's PostgreSQL 15 and pgBackRest for the tests that run a real Postgres (each
# test starts its own postmaster on a temporary data directory and loopback port), and python3-boto3, what
# the backup image runs mastofargate/data/backup/pgtask.py with.
# Installs only, idempotently (scripts/apt-install.sh).
set -euo pipefail
exec bash "$(dirname "$0")/apt-install.sh" postgres postgresql-15 postgresql-client-15 pgbackrest openssl python3-boto3
