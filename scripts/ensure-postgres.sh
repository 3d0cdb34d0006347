#!/usr/bin/env bash
# ensure-postgres.sh - the real PostgreSQL 15 and pgBackRest the backup tests run, as the backup task's
# image has them. Idempotent: prints one line per thing it actually did and nothing otherwise. Needs root
# (apt-get).
#
#   postgresql     Debian's PostgreSQL 15 (programs in /usr/lib/postgresql/15/bin, user `postgres`)
#   pgbackrest     Debian's pgBackRest 2.45 (WAL archiving and base backups to S3)
#   python3-boto3  what the backup image runs mastofargate/data/backup/pgtask.py with
#
# No server is started here, and none is left running: each test creates its own clusters with initdb in
# temporary directories, listening on 127.0.0.1 on free ports, as the `postgres` user (PostgreSQL refuses
# to run as root), and stops them. The packages' own main cluster is not started: a temporary
# /usr/sbin/policy-rc.d keeps their postinst from starting anything.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(postgresql-15 postgresql-client-15 pgbackrest python3-boto3)
BINDIR=/usr/lib/postgresql/15/bin

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "ensure-postgres: need root to install ${missing[*]}" >&2
    exit 1
  fi
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    added_policy=1
  fi
  trap '[[ $added_policy -eq 1 ]] && rm -f "$policy"' EXIT
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/ensure-postgres-apt.log 2>&1; then
    apt-get update -q >/dev/null 2>&1
    apt-get install -y -q --no-install-recommends "${missing[@]}" \
      >/tmp/ensure-postgres-apt.log 2>&1 || { cat /tmp/ensure-postgres-apt.log >&2; exit 1; }
  fi
  echo "ensure-postgres: installed ${missing[*]}"
fi

for prog in initdb pg_ctl postgres pg_dump pg_restore psql; do
  [[ -x $BINDIR/$prog ]] || { echo "ensure-postgres: $BINDIR/$prog is missing" >&2; exit 1; }
done
command -v pgbackrest >/dev/null || { echo "ensure-postgres: pgbackrest is missing" >&2; exit 1; }
id postgres >/dev/null 2>&1 || { echo "ensure-postgres: no 'postgres' user" >&2; exit 1; }
