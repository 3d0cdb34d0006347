#!/usr/bin/env bash
# stop-docker.sh - stop the dockerd and registry(s) that scripts/ensure-docker.sh
# started, using its pid files under /run/mastofargate. Leaves alone any
# daemon it did not start. Idempotent; prints one line per thing it stopped.
# Images and registry storage are kept (/var/lib/docker,
# /var/lib/mastofargate-registry).
set -euo pipefail

RUN_DIR=/run/mastofargate

say() { echo "stop-docker: $*"; }

# running PID EXE: PID is a live (not zombie) process of program EXE.
running() { [ "$(readlink "/proc/$1/exe" 2>/dev/null || true)" = "$2" ]; }

# stop PIDFILE EXPECTED_EXE TIMEOUT NAME
stop() {
  local pidfile="$1" exe="$2" timeout="$3" name="$4" pid i
  [ -s "$pidfile" ] || { rm -f "$pidfile"; return 0; }
  pid="$(cat "$pidfile")"
  # Only signal the process if it is still the program we started (pids get
  # reused).
  if [ -z "$pid" ] || ! running "$pid" "$exe"; then
    rm -f "$pidfile"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 5; i++)); do
    running "$pid" "$exe" || break
    sleep 0.2
  done
  if running "$pid" "$exe"; then
    kill -KILL "$pid" 2>/dev/null || true
    say "killed $name (pid $pid) after ${timeout}s"
  else
    say "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
}

shopt -s nullglob
for f in "$RUN_DIR"/registry-*.pid; do
  port="${f##*/registry-}"; port="${port%.pid}"
  stop "$f" /usr/bin/docker-registry 10 "registry on 127.0.0.1:$port"
done
stop "$RUN_DIR/dockerd.pid" /usr/sbin/dockerd 30 dockerd
