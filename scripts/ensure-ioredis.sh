#!/usr/bin/env bash
# ensure-ioredis.sh - the Redis client of Mastodon's streaming server, ioredis, at the version Mastodon's
# yarn.lock pins (5.11.1 for 4.5), for tests/test_redis_tls_live.py: it connects to a TLS Redis through the
# Mastodon containers' start wrapper exactly as the streaming server does. Installs only, idempotently, into
# MASTOFARGATE_NODE_MODULES (default /opt/mastofargate-test/node), from the npm registry; needs node and npm.
set -euo pipefail
VERSION=5.11.1
dir="${MASTOFARGATE_NODE_MODULES:-/opt/mastofargate-test/node}"
die() { echo "ensure-ioredis: ERROR: $*" >&2; exit 1; }
if [ -f "$dir/node_modules/ioredis/package.json" ] &&
  grep -q "\"version\": \"$VERSION\"" "$dir/node_modules/ioredis/package.json"; then
  exit 0
fi
command -v npm >/dev/null || bash "$(dirname "$0")/apt-install.sh" ioredis nodejs npm
command -v npm >/dev/null || die "npm is missing"
mkdir -p "$dir"
log=/tmp/ensure-ioredis-npm.log
npm install --prefix "$dir" --no-audit --no-fund --no-save "ioredis@$VERSION" >"$log" 2>&1 ||
  { tail -n 20 "$log" >&2; die "npm install ioredis@$VERSION failed"; }
echo "ensure-ioredis: installed ioredis $VERSION in $dir"
