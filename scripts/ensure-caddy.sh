#!/usr/bin/env bash
# ensure-caddy.sh - Debian's Caddy (2.6) for the tests that run the generated edge configuration (each test
# runs its own `caddy run` on loopback ports).
# Installs only, idempotently (scripts/apt-install.sh).
set -euo pipefail
exec bash "$(dirname "$0")/apt-install.sh" caddy caddy
