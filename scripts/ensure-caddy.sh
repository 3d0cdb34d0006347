#!/usr/bin/env bash
# ensure-caddy.sh - install Debian's Caddy (2.6) for the tests that run the generated edge configuration.
# Idempotent: prints a line only when it installs something. Starts NOTHING: each test runs its own
# `caddy run` on loopback ports (a policy-rc.d stops the package from starting the system service).
set -euo pipefail
say() { echo "ensure-caddy: $*"; }
die() { echo "ensure-caddy: ERROR: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root"

PKGS=(caddy)
missing=()
for p in "${PKGS[@]}"; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" = installed ] || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

apt-cache show "${missing[@]}" >/dev/null 2>&1 || apt-get update -qq >/dev/null || die "apt-get update failed"
tmp_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\n# temporary, from mastofargate ensure-caddy.sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  tmp_policy=1
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 \
  "${missing[@]}" >/tmp/ensure-caddy-apt.log 2>&1 || { tail -n 20 /tmp/ensure-caddy-apt.log >&2; die "apt-get install ${missing[*]} failed"; }
[ "$tmp_policy" -eq 0 ] || rm -f /usr/sbin/policy-rc.d
say "installed ${missing[*]}"
