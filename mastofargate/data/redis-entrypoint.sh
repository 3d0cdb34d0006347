#!/usr/bin/env bash
# mastofargate's Redis entrypoint for `cache = "task"` (Redis on EFS, in ECS).
#
# Why:
#  * Sidekiq's queues live in Redis, outgoing federation included: a crash must not lose an hour of them
#    (issue 12). So Redis keeps an append-only file with `appendfsync everysec` on EFS instead of an hourly
#    snapshot. Every acknowledged write is in the kernel before the reply (Redis writes the AOF buffer before
#    answering), so a killed Redis loses nothing acknowledged; a lost host loses at most about a second.
#    No RDB snapshots on top: each rewrites the whole data set, and EFS bills every byte written. The AOF's
#    own rewrites (multi-part AOF, Redis >= 7) start from an RDB preamble and only when it has doubled.
#  * A volume that holds only an RDB snapshot from the previous (snapshot-only) shape is switched over
#    without losing it: starting with `appendonly yes` would load the (missing) AOF and ignore dump.rdb, so
#    Redis first starts from the snapshot and then turns the AOF on at runtime (CONFIG SET appendonly yes),
#    which writes the whole data set into the new AOF (https://redis.io/docs/latest/operate/oss_and_stack/
#    management/persistence/#how-i-can-switch-to-aof-if-im-currently-using-dumprdb-snapshots).
#  * TLS for every client (issue 10; issue 12 for the one-task layout): TLS only, no plaintext port; clients
#    do not present certificates but verify this server's. Also where Mastodon shares the task and connects
#    over loopback: one-off tasks reach the same Redis across the VPC, and Redis' one `bind` covers every
#    listener (port and tls-port alike), so a plaintext port for loopback would be open to the VPC too. The certificate comes from REDIS_TLS_CERT/REDIS_TLS_KEY
#    (PEM, from the redis secret, signed by the server's private CA that every Mastodon process trusts; the
#    official image has no openssl). It is written at every start to a private directory outside the data
#    volume (the secret is the source of truth: a re-issued certificate takes effect on the next start, and
#    no key lands on EFS). Without them, a self-signed one is made with openssl where it exists and kept on
#    the data volume (hand runs; no client of mastofargate's would trust it).
#  * No password on any command line: the configuration, password included, reaches redis-server on its
#    standard input (`redis-server -`), hex-escaped so any byte is safe.
#
# Environment:
#   REDIS_PASSWORD or REDIS_PASSWORD_FILE   required
#   REDIS_DIR          data directory on EFS (default /data)
#   REDIS_PORT         (default 6379; the TLS port when TLS is on)
#   REDIS_MAXMEMORY_MB memory limit for data (default: none); never evicts (Sidekiq needs noeviction)
#   REDIS_TLS          on | off (default on; off serves plaintext bound to loopback only: hand runs, tests)
#   REDIS_TLS_CERT, REDIS_TLS_KEY   PEM certificate and key (optional, see above)
# Arguments are appended to the configuration as extra lines (e.g. "loglevel warning").
set -Eeuo pipefail

log() { printf 'mastofargate-redis: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

DIR="${REDIS_DIR:-/data}"
PORT="${REDIS_PORT:-6379}"
TLS="${REDIS_TLS:-on}"
TLS_DIR="$DIR/tls"
case "$PORT" in '' | *[!0-9]*) die "REDIS_PORT must be a port number, got '$PORT'" ;; esac
case "${REDIS_MAXMEMORY_MB:-0}" in *[!0-9]*) die "REDIS_MAXMEMORY_MB must be a whole number, got '$REDIS_MAXMEMORY_MB'" ;; esac
case "$TLS" in on | off) ;; *) die "REDIS_TLS must be on or off, got '$TLS'" ;; esac

# Never run as root: as the official image does, switch to the `redis` user (uid 999, the owner that the EFS
# access point imposes anyway). Works whether this script runs from a file or as `bash -c "$SCRIPT"`.
if [ "$(id -u)" -eq 0 ] && id redis >/dev/null 2>&1; then
  [ -d "$DIR" ] || { mkdir -p "$DIR" && chown redis: "$DIR"; }
  if [ -n "${BASH_EXECUTION_STRING:-}" ]; then
    exec setpriv --reuid=redis --regid=redis --init-groups -- bash -c "$BASH_EXECUTION_STRING" "$0" "$@"
  fi
  exec setpriv --reuid=redis --regid=redis --init-groups -- bash "$0" "$@"
fi

if [ -n "${REDIS_PASSWORD_FILE:-}" ]; then
  [ -r "$REDIS_PASSWORD_FILE" ] || die "REDIS_PASSWORD_FILE=$REDIS_PASSWORD_FILE is not readable"
  PASSWORD="$(cat "$REDIS_PASSWORD_FILE")"
else
  PASSWORD="${REDIS_PASSWORD:-}"
fi
[ -n "$PASSWORD" ] || die "REDIS_PASSWORD or REDIS_PASSWORD_FILE is required"

# Redis' config parser reads "\xHH" inside double quotes: escape every byte.
quoted() { printf '"'; printf '%s' "$1" | od -An -v -tx1 | tr -s ' \n' ' ' | sed -e 's/^ //' -e 's/ $//' -e 's/\([0-9a-f][0-9a-f]\)/\\x\1/g' -e 's/ //g'; printf '"'; }

mkdir -p "$DIR"
cd "$DIR"

# Plaintext only ever on loopback: nothing from another host may talk to Redis without TLS.
tls_conf="bind 127.0.0.1 -::1
port $PORT"
if [ "$TLS" = on ]; then
  if [ -n "${REDIS_TLS_CERT:-}" ] && [ -n "${REDIS_TLS_KEY:-}" ]; then
    TLS_DIR="$(umask 077 && mktemp -d "${TMPDIR:-/tmp}/mastofargate-redis-tls.XXXXXX")"
    log "using the TLS certificate from REDIS_TLS_CERT/REDIS_TLS_KEY"
    (umask 077 && printf '%s\n' "$REDIS_TLS_KEY" >"$TLS_DIR/redis.key" && printf '%s\n' "$REDIS_TLS_CERT" >"$TLS_DIR/redis.crt")
    unset REDIS_TLS_KEY REDIS_TLS_CERT
  elif [ ! -s "$TLS_DIR/redis.key" ] || [ ! -s "$TLS_DIR/redis.crt" ]; then
    (umask 077 && mkdir -p "$TLS_DIR")
    if command -v openssl >/dev/null 2>&1; then
      log "making a self-signed TLS certificate in $TLS_DIR (kept on the data volume)"
      (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -subj "/CN=redis.mastofargate.internal" -keyout "$TLS_DIR/redis.key.new" -out "$TLS_DIR/redis.crt.new" 2>/dev/null)
    else
      die "REDIS_TLS=on needs a certificate: set REDIS_TLS_CERT and REDIS_TLS_KEY (PEM), or install openssl"
    fi
    mv "$TLS_DIR/redis.crt.new" "$TLS_DIR/redis.crt"
    mv "$TLS_DIR/redis.key.new" "$TLS_DIR/redis.key"
  fi
  tls_conf="bind * -::*
port 0
tls-port $PORT
tls-cert-file $TLS_DIR/redis.crt
tls-key-file $TLS_DIR/redis.key
tls-auth-clients no
tls-protocols \"TLSv1.2 TLSv1.3\""
fi

migrating=no
if [ -f dump.rdb ] && [ ! -d appendonlydir ]; then
  migrating=yes
  log "found only an RDB snapshot: loading it, then switching to the append-only file"
fi

config() {
  cat <<EOF
protected-mode no
$tls_conf
dir $DIR
requirepass $(quoted "$PASSWORD")
maxmemory-policy noeviction
$([ "${REDIS_MAXMEMORY_MB:-0}" -gt 0 ] && echo "maxmemory ${REDIS_MAXMEMORY_MB}mb")
appendonly $([ "$migrating" = yes ] && echo no || echo yes)
appendfsync everysec
appenddirname appendonlydir
aof-use-rdb-preamble yes
save ""
EOF
  local extra
  for extra in "$@"; do printf '%s\n' "$extra"; done
}

if [ "$migrating" = no ]; then
  # Redis handles SIGTERM itself: it flushes and fsyncs the AOF, then exits.
  exec redis-server - < <(config "$@")
fi

redis-server - < <(config "$@") &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' TERM INT
cli() {
  local tls=()
  [ "$TLS" = on ] && tls=(--tls --insecure)
  REDISCLI_AUTH="$PASSWORD" redis-cli -h 127.0.0.1 -p "$PORT" "${tls[@]}" "$@"
}
until cli ping 2>/dev/null | grep -q PONG; do
  kill -0 "$pid" 2>/dev/null || { wait "$pid"; die "redis-server exited while loading the snapshot"; }
  sleep 0.2
done
cli config set appendonly yes >/dev/null
until cli info persistence | tr -d '\r' | grep -qx 'aof_rewrite_in_progress:0' &&
  cli info persistence | tr -d '\r' | grep -qx 'aof_rewrite_scheduled:0' &&
  cli info persistence | tr -d '\r' | grep -qx 'aof_enabled:1' &&
  [ -d appendonlydir ]; do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
[ -d appendonlydir ] && log "the append-only file now holds the snapshot's data; dump.rdb is kept as it was"
set +e
while :; do
  wait "$pid"
  rc=$?
  kill -0 "$pid" 2>/dev/null || break
done
exit "$rc"
