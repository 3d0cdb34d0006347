#!/usr/bin/env bash
# ensure-postgres.sh - install Debian's PostgreSQL 15 server binaries and pgBackRest for the tests that run a
# real Postgres. Idempotent: prints a line only when it installs something. Starts NOTHING: each test starts
# its own postmaster on a temporary data directory and loopback port (Debian's "main" cluster is not needed,
# and a policy-rc.d stops the package from starting one). Needs root (apt-get).
set -euo pipefail
say() { echo "ensure-postgres: $*"; }
die() { echo "ensure-postgres: ERROR: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root"

PKGS=(postgresql-15 postgresql-client-15 pgbackrest openssl python3-boto3)  # python3-boto3: what the backup image runs pgtask.py with
missing=()
for p in "${PKGS[@]}"; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" = installed ] || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

apt-cache show "${missing[@]}" >/dev/null 2>&1 || apt-get update -qq >/dev/null || die "apt-get update failed"
tmp_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\n# temporary, from mastofargate ensure-postgres.sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  tmp_policy=1
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 \
  "${missing[@]}" >/tmp/ensure-postgres-apt.log 2>&1 || { tail -n 20 /tmp/ensure-postgres-apt.log >&2; die "apt-get install ${missing[*]} failed"; }
[ "$tmp_policy" -eq 0 ] || rm -f /usr/sbin/policy-rc.d
say "installed ${missing[*]}"
