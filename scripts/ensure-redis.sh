#!/usr/bin/env bash
# ensure-redis.sh - make Debian's redis-server and redis-cli available for the tests that run Lua and
# Sidekiq-shaped data in a real Redis (tests/test_queue_metrics.py). Idempotent: prints one line per thing it
# actually did and nothing otherwise. Installs only; it starts no daemon: each test starts its own
# redis-server on 127.0.0.1 and a free port, and stops it. Needs root for apt-get.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-redis: redis-server is missing and only root can install it (apt-get install redis-server)" >&2
  exit 1
fi
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  # keep the package's postinst from starting a system-wide Redis on port 6379
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  policy=1
fi
trap '[ -n "$policy" ] && rm -f /usr/sbin/policy-rc.d' EXIT
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server >/dev/null \
  || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server >/dev/null; }
echo "ensure-redis: installed $(redis-server --version | cut -d' ' -f3)"
