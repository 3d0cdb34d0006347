#!/usr/bin/env bash
# ensure-ruby.sh - Debian's Ruby (with its OpenSSL extension) for the test that starts Ruby through the
# Mastodon containers' start wrapper and connects to a TLS Redis as Mastodon's redis-client does
# (tests/test_redis_tls_live.py). Installs only, idempotently (scripts/apt-install.sh).
set -euo pipefail
exec bash "$(dirname "$0")/apt-install.sh" ruby ruby openssl ca-certificates
