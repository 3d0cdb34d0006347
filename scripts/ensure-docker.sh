#!/usr/bin/env bash
# ensure-docker.sh - make a real Docker engine and a local image registry
# available for mastofargate's image tests. Idempotent: run it as often as you
# like; it prints one line per thing it actually did and nothing otherwise.
# Needs root (apt-get, dockerd). No systemd is assumed: daemons are started by
# hand and recorded in pid files that scripts/stop-docker.sh uses.
#
#   engine:   Debian's docker.io (dockerd 20.10) started as
#             dockerd --bridge=none --iptables=false --ip6tables=false
#             -> no docker0, no 172.x addresses, no iptables rules.
#   registry: Debian's docker-registry (distribution 2.8) on 127.0.0.1:PORT
#             only, PORT = $MASTOFARGATE_REGISTRY_PORT (default 5000); config
#             and storage in /var/lib/mastofargate-registry/{config,storage}-PORT*
#             (one registry per port, each with its own storage).
#
# Networking with --bridge=none (checked on Debian 12, docker.io 20.10.24):
#   * `docker build .` works, RUN steps included; no --network flag is needed.
#     The RUN containers get only a loopback interface, exactly as with
#     `docker build --network=none .`. Say --network=none to be explicit.
#     `--network=host` also works but shows the host's interfaces to RUN steps;
#     don't use it (there is no internet here anyway).
#   * `docker run` likewise defaults to loopback-only (= --network none).
#     `-p HOST:CONTAINER` is accepted but the port is unreachable (publishing
#     needs the bridge): a container that must serve a port to the host uses
#     --network host (and binds 127.0.0.1 itself).
#   * BuildKit is unavailable (no buildx plugin is packaged for bookworm, and
#     /usr/local/bin/docker is CLI 28 whose `docker build` then falls back to
#     the legacy builder with a "DEPRECATED" notice on stderr; harmless).
#     DOCKER_BUILDKIT=1 fails. The Python SDK's client.api.build() uses the
#     same legacy builder and works.
#   * Push/pull to 127.0.0.1:PORT needs no "insecure-registries" setting:
#     127.0.0.0/8 is treated as insecure (plain HTTP) by default.
#   * Storage driver: overlay2 on the ext4 root here (dockerd chooses it
#     itself, falling back to vfs where overlay is unavailable). cgroup v1,
#     cgroupfs driver; only harmless "no blkio weight" warnings in the log.
#   * PID 1 here reaps orphans lazily: a killed daemon lingers as a zombie
#     for a while, so liveness is checked via /proc/PID/exe, and stale
#     /run/docker.pid files are removed before starting dockerd.
#   * Packages are installed with --no-install-recommends and, if the machine
#     has no /usr/sbin/policy-rc.d, a temporary one that stops their postinst
#     from starting docker/docker-registry the Debian way (bridge, :5000).
#
# Environment:
#   MASTOFARGATE_REGISTRY_PORT      registry port (default 5000)
#   MASTOFARGATE_DOCKERD_TIMEOUT    seconds to wait for dockerd (default 60)
#   MASTOFARGATE_REGISTRY_TIMEOUT   seconds to wait for registry (default 30)
set -euo pipefail

REGISTRY_PORT="${MASTOFARGATE_REGISTRY_PORT:-5000}"
DOCKERD_TIMEOUT="${MASTOFARGATE_DOCKERD_TIMEOUT:-60}"
REGISTRY_TIMEOUT="${MASTOFARGATE_REGISTRY_TIMEOUT:-30}"

DOCKERD_BIN=/usr/sbin/dockerd            # the engine from docker.io
REGISTRY_BIN=/usr/bin/docker-registry    # from docker-registry
BUSYBOX_BIN=/bin/busybox                 # from busybox-static (test base image)

RUN_DIR=/run/mastofargate
DOCKERD_PID="$RUN_DIR/dockerd.pid"
DOCKERD_LOG=/var/log/mastofargate-dockerd.log
REGISTRY_DIR=/var/lib/mastofargate-registry
REGISTRY_CONF="$REGISTRY_DIR/config-$REGISTRY_PORT.yml"
REGISTRY_STORAGE="$REGISTRY_DIR/storage-$REGISTRY_PORT"
REGISTRY_PID="$RUN_DIR/registry-$REGISTRY_PORT.pid"
REGISTRY_LOG="/var/log/mastofargate-registry-$REGISTRY_PORT.log"

say() { echo "ensure-docker: $*"; }
die() { echo "ensure-docker: ERROR: $*" >&2; exit 1; }

case "$REGISTRY_PORT" in
  ''|*[!0-9]*) die "MASTOFARGATE_REGISTRY_PORT must be a number, got '$REGISTRY_PORT'" ;;
esac
[ "$(id -u)" -eq 0 ] || die "must run as root"

mkdir -p "$RUN_DIR"
# Serialise concurrent runs (e.g. several test processes starting at once).
exec 9>"$RUN_DIR/ensure-docker.lock"
flock -w 300 9 || die "timed out waiting for $RUN_DIR/ensure-docker.lock"

# pid_alive FILE EXE: the pid recorded in FILE is a running EXE. Checking
# /proc/PID/exe (not kill -0) rejects reused pids and zombies: PID 1 here
# reaps orphans only lazily, so a killed daemon can linger as a zombie.
pid_alive() {
  local pid
  [ -s "$1" ] || return 1
  pid="$(cat "$1")"
  [ -n "$pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null || true)" = "$2" ]
}

docker_ok()   { docker info >/dev/null 2>&1; }
registry_ok() { curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$REGISTRY_PORT/v2/" 2>/dev/null; }

# ---------------------------------------------------------------- packages
APT_UPDATED=0
apt_update() {
  [ "$APT_UPDATED" -eq 1 ] && return 0
  apt-get update -qq >/dev/null || die "apt-get update failed"
  APT_UPDATED=1
  say "ran apt-get update"
}

# install_pkgs PKG...: install with apt, without starting any service.
install_pkgs() {
  local pkg need_update=0 tmp_policy=0
  for pkg in "$@"; do
    apt-cache show "$pkg" >/dev/null 2>&1 || need_update=1
  done
  [ "$need_update" -eq 1 ] && apt_update
  # The packages' postinst would start docker / docker-registry through
  # invoke-rc.d (dockerd WITH a bridge, registry on 0.0.0.0:5000). A
  # policy-rc.d that exits 101 forbids that; add a temporary one only if the
  # machine has none (and never touch an existing one).
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# temporary, from mastofargate ensure-docker.sh\nexit 101\n' \
      > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    tmp_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    trap 'rm -f /usr/sbin/policy-rc.d; exit 130' INT TERM
  fi
  local apt_log
  apt_log="$(mktemp)"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
        >"$apt_log" 2>&1; then
    # Stale package lists can point at files the mirror no longer has.
    if [ "$APT_UPDATED" -eq 0 ]; then
      apt_update
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
        >"$apt_log" 2>&1 || { tail -n 20 "$apt_log" >&2; die "apt-get install $* failed"; }
    else
      tail -n 20 "$apt_log" >&2; die "apt-get install $* failed"
    fi
  fi
  rm -f "$apt_log"
  if [ "$tmp_policy" -eq 1 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT INT TERM; fi
  say "installed $*"
}

pkg_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

# ---------------------------------------------------------------- engine
ensure_engine() {
  docker_ok && return 0

  if ! pkg_installed docker.io || [ ! -x "$DOCKERD_BIN" ]; then
    install_pkgs docker.io
  fi
  command -v docker >/dev/null 2>&1 || die "no docker client on PATH"

  # A dockerd already running (ours from an earlier run, or one that wrote
  # dockerd's own pid file) may still be coming up: wait for it rather than
  # starting a second one.
  local watch="$DOCKERD_PID"
  if ! pid_alive "$DOCKERD_PID" "$DOCKERD_BIN"; then
    if pid_alive /run/docker.pid "$DOCKERD_BIN"; then
      watch=/run/docker.pid
    else
      # Stale pid files of a dead (possibly zombie) dockerd/containerd make
      # a new dockerd refuse to start ("pid file found") or wait on a dead
      # containerd.
      rm -f /run/docker.pid
      pid_alive /run/docker/containerd/containerd.pid /usr/bin/containerd \
        || rm -f /run/docker/containerd/containerd.pid
      # setsid: detach from the caller's process group so that stopping the
      # caller (Ctrl-C, a test runner killing its job) leaves the daemon up.
      # 9>&-: don't let the daemon inherit (and hold) our flock.
      nohup setsid "$DOCKERD_BIN" --bridge=none --iptables=false --ip6tables=false \
        </dev/null >>"$DOCKERD_LOG" 2>&1 9>&- &
      echo $! >"$DOCKERD_PID"
      say "started dockerd (pid $(cat "$DOCKERD_PID"), log $DOCKERD_LOG)"
    fi
  fi

  local deadline=$((SECONDS + DOCKERD_TIMEOUT))
  until docker_ok; do
    if ! pid_alive "$watch" "$DOCKERD_BIN"; then
      tail -n 20 "$DOCKERD_LOG" >&2
      die "dockerd exited; see $DOCKERD_LOG"
    fi
    [ "$SECONDS" -lt "$deadline" ] || { tail -n 20 "$DOCKERD_LOG" >&2; die "dockerd not ready after ${DOCKERD_TIMEOUT}s"; }
    sleep 0.2
  done
}

# ---------------------------------------------------------------- registry
ensure_registry() {
  local missing=()
  pkg_installed busybox-static && [ -x "$BUSYBOX_BIN" ] || missing+=(busybox-static)
  command -v curl >/dev/null 2>&1 || missing+=(curl)

  if registry_ok; then
    [ "${#missing[@]}" -eq 0 ] || install_pkgs "${missing[@]}"
    return 0
  fi
  pkg_installed docker-registry && [ -x "$REGISTRY_BIN" ] || missing+=(docker-registry)
  [ "${#missing[@]}" -eq 0 ] || install_pkgs "${missing[@]}"

  mkdir -p "$REGISTRY_STORAGE"
  local conf
  conf="version: 0.1
log:
  level: warn
  fields:
    service: mastofargate-registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $REGISTRY_STORAGE
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGISTRY_PORT
  secret: mastofargate-local-registry
  headers:
    X-Content-Type-Options: [nosniff]
"
  printf '%s' "$conf" | cmp -s - "$REGISTRY_CONF" || printf '%s' "$conf" >"$REGISTRY_CONF"

  if ! pid_alive "$REGISTRY_PID" "$REGISTRY_BIN"; then
    nohup setsid "$REGISTRY_BIN" serve "$REGISTRY_CONF" \
      </dev/null >>"$REGISTRY_LOG" 2>&1 9>&- &
    echo $! >"$REGISTRY_PID"
    say "started registry on 127.0.0.1:$REGISTRY_PORT (pid $(cat "$REGISTRY_PID"), log $REGISTRY_LOG)"
  fi

  local deadline=$((SECONDS + REGISTRY_TIMEOUT))
  until registry_ok; do
    if ! pid_alive "$REGISTRY_PID" "$REGISTRY_BIN"; then
      tail -n 20 "$REGISTRY_LOG" >&2
      die "registry exited (port $REGISTRY_PORT taken?); see $REGISTRY_LOG"
    fi
    [ "$SECONDS" -lt "$deadline" ] || { tail -n 20 "$REGISTRY_LOG" >&2; die "registry not ready after ${REGISTRY_TIMEOUT}s"; }
    sleep 0.2
  done
}

ensure_engine
ensure_registry
