#!/usr/bin/env bash
# ensure-redis.sh - Debian's redis-server (7.0, built with TLS) for the tests that run a real Redis (each test
# starts its own redis-server on a temporary directory and loopback port).
# Installs only, idempotently (scripts/apt-install.sh).
set -euo pipefail
exec bash "$(dirname "$0")/apt-install.sh" redis redis-server redis-tools openssl
