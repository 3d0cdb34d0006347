#!/usr/bin/env bash
# apt-install.sh LABEL PACKAGE... - install Debian packages the tests need, for the scripts/ensure-*.sh
# wrappers. Idempotent: prints a line only when it installs something. Starts NOTHING: a temporary
# policy-rc.d keeps a package's postinst from starting its service (each test starts its own server on
# loopback ports and stops it). Needs root (apt-get).
set -euo pipefail
label=$1; shift
say() { echo "ensure-$label: $*"; }
die() { echo "ensure-$label: ERROR: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root"

missing=()
for p in "$@"; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" = installed ] || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

apt-cache show "${missing[@]}" >/dev/null 2>&1 || apt-get update -qq >/dev/null || die "apt-get update failed"
tmp_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\n# temporary, from mastofargate scripts/apt-install.sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  tmp_policy=1
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
log=/tmp/ensure-$label-apt.log
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 \
  "${missing[@]}" >"$log" 2>&1 || { tail -n 20 "$log" >&2; die "apt-get install ${missing[*]} failed"; }
[ "$tmp_policy" -eq 0 ] || rm -f /usr/sbin/policy-rc.d
say "installed ${missing[*]}"
