#!/usr/bin/env bash
# mastofargate's Postgres entrypoint for `database = "task"` (Postgres on EFS, in ECS).
#
# Why not the official image's entrypoint alone:
#  * Only one Postgres may ever own a data directory (DESIGN invariant 5). ECS' maximumPercent 100 is not
#    enough: a task ECS believes stopped may still be running, and two postmasters on one data directory over
#    NFS corrupt it (Postgres' own postmaster.pid interlock only sees processes on the same host). So before
#    anything touches the data directory this script takes an exclusive flock(2) on a lock file on the same
#    EFS volume and keeps it for the life of every Postgres process. Over NFSv4 Linux emulates flock with a
#    whole-file byte-range lock held by the server (EFS supports NFSv4.1 locking); the lock belongs to the
#    open file description (fd 9 below), which the postmaster and every backend inherit, so it is released
#    only when the last Postgres process is gone — or, if the whole task dies, when the NFS lease of the dead
#    client expires (EFS: about a minute), which is why a new copy WAITS for the lock (POSTGRES_LOCK_WAIT)
#    instead of failing at once.
#  * Because every copy holds that lock before starting, a postmaster.pid found after acquiring it is stale
#    by construction (a killed task, a Spot interruption). In a new container the pid it names can belong to
#    an unrelated live process, and Postgres then refuses to start ("is another postmaster running?"), so it
#    is removed — only ever while the lock is held.
#  * `docker stop`/ECS send SIGTERM, which is Postgres' *smart* shutdown: it waits for every client to
#    disconnect, and Mastodon's connection pools never do, so the task would be SIGKILLed at stopTimeout.
#    This script turns SIGTERM into a *fast* shutdown (SIGINT to the postmaster, which is exactly what
#    `pg_ctl stop -m fast` sends: https://www.postgresql.org/docs/15/server-shutdown.html), with an
#    immediate shutdown (SIGQUIT) if that has not finished after POSTGRES_STOP_WAIT seconds, both inside
#    ECS' stopTimeout (120 s).
#  * TLS across the VPC when Postgres is a separate task (issue 10): a self-signed certificate made on first
#    start and kept on EFS next to the data directory; every TCP connection must then use TLS. Clients use
#    sslmode=require (encrypted; the certificate is not verified — the security group is what admits them).
#  * No password on any command line (argv is visible to every process via /proc): the superuser password
#    reaches initdb through a pipe (--pwfile=/dev/fd/N), never as an argument.
#  * Settings for a small memory budget, derived from the container's memory (see settings below).
#  * Backups with pgBackRest (issue 11) when PGBACKREST_STANZA is set (the task definition sets every
#    PGBACKREST_* option and passes archive_mode/archive_command/archive_timeout as `-c` arguments, so every
#    WAL segment goes to S3 within a minute): a keeper process (pgtask.py pgbackrest-keeper) runs beside the
#    postmaster, creates the stanza (idempotent) and takes a full backup at the first start and then every
#    POSTGRES_FULL_BACKUP_DAYS. Only this task can: pgBackRest reads the data directory and reaches Postgres
#    over its Unix socket. The keeper does not inherit the lock (fd 9) and is stopped before Postgres is.
#
# Environment (names compatible with the official image):
#   PGDATA                  data directory (default /var/lib/postgresql/data/pgdata)
#   POSTGRES_USER           role Mastodon connects as, created by initdb (default postgres)
#   POSTGRES_PASSWORD       its password, or POSTGRES_PASSWORD_FILE: a file holding it (first start only)
#   POSTGRES_DB             database created on first start (default: POSTGRES_USER)
#   POSTGRES_MEMORY_MB      the container's memory budget in MiB (default: the cgroup limit)
#   POSTGRES_MAX_CONNECTIONS  (default 100)
#   POSTGRES_TLS            on | off (default on; off only where clients connect over loopback)
#   POSTGRES_LOCK_FILE      (default: the data directory's parent/postgres.lock, i.e. on the same volume)
#   POSTGRES_LOCK_WAIT      seconds to wait for the lock (default 150: longer than an NFS lease)
#   POSTGRES_STOP_WAIT      seconds of fast shutdown before an immediate one (default 90)
#   PGBACKREST_STANZA       set: run the pgBackRest keeper (with the other PGBACKREST_* options)
#   POSTGRES_FULL_BACKUP_DAYS  days between pgBackRest full backups (default 7)
#   POSTGRES_BACKUP_CHECK   seconds between the keeper's checks (default 600)
#   POSTGRES_PGTASK         the task script (default /usr/local/bin/pgtask.py); POSTGRES_PYTHON (python3)
#   POSTGRES_METRICS_NAMESPACE, POSTGRES_METRICS_SERVER  both set: the keeper puts WalArchiveFailing 1/0 there
# Arguments are extra `-c name=value` settings appended to the postgres command line (they win).
# Run as root it drops to the `postgres` user for every Postgres program (Postgres refuses to run as root).
set -Eeuo pipefail

log() { printf 'mastofargate-postgres: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

PGDATA="${PGDATA:-/var/lib/postgresql/data/pgdata}"
export PGDATA
PARENT="$(dirname "$PGDATA")"
LOCK_FILE="${POSTGRES_LOCK_FILE:-$PARENT/postgres.lock}"
LOCK_WAIT="${POSTGRES_LOCK_WAIT:-150}"
STOP_WAIT="${POSTGRES_STOP_WAIT:-90}"
TLS="${POSTGRES_TLS:-on}"
TLS_DIR="$PARENT/tls"
DB_USER="${POSTGRES_USER:-postgres}"
DB_NAME="${POSTGRES_DB:-$DB_USER}"
MAX_CONNECTIONS="${POSTGRES_MAX_CONNECTIONS:-100}"

FULL_BACKUP_DAYS="${POSTGRES_FULL_BACKUP_DAYS:-7}"
BACKUP_CHECK="${POSTGRES_BACKUP_CHECK:-600}"
PGTASK="${POSTGRES_PGTASK:-/usr/local/bin/pgtask.py}"
PYTHON="${POSTGRES_PYTHON:-python3}"

for n in LOCK_WAIT STOP_WAIT MAX_CONNECTIONS FULL_BACKUP_DAYS BACKUP_CHECK; do
  case "${!n}" in '' | *[!0-9]*) die "$n must be a whole number, got '${!n}'" ;; esac
done
case "$TLS" in on | off) ;; *) die "POSTGRES_TLS must be on or off, got '$TLS'" ;; esac

# Debian keeps the server programs off PATH; the official image adds them. Newest version last = first on PATH.
if ! command -v initdb >/dev/null 2>&1; then
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && PATH="$d:$PATH"; done
  command -v initdb >/dev/null 2>&1 || die "no PostgreSQL server programs (initdb) found"
fi

# as_pg CMD...: run a Postgres program as the postgres user when this script runs as root.
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || die "running as root and there is no 'postgres' user to run Postgres as"
  PG_UID="$(id -u postgres)"
  PG_GID="$(id -g postgres)"
  as_pg() { setpriv --reuid="$PG_UID" --regid="$PG_GID" --init-groups -- "$@"; }
  exec_pg() { exec setpriv --reuid="$PG_UID" --regid="$PG_GID" --init-groups -- "$@"; }
  OS_USER=postgres
else
  as_pg() { "$@"; }
  exec_pg() { exec "$@"; }
  OS_USER="$(id -un)"
fi

# ---------------------------------------------------------------- the lock
as_pg mkdir -p "$PARENT"
# fd 9 stays open in this script and is inherited by the postmaster and every backend (no close-on-exec).
exec 9>>"$LOCK_FILE"
if ! flock -n 9; then
  log "waiting up to ${LOCK_WAIT}s for $LOCK_FILE: another Postgres holds this data directory"
  flock -w "$LOCK_WAIT" 9 || die "another Postgres still holds $LOCK_FILE after ${LOCK_WAIT}s; refusing to start a second copy on $PGDATA"
fi
log "holding $LOCK_FILE: this is the only Postgres on $PGDATA"

if [ -f "$PGDATA/postmaster.pid" ]; then
  log "removing stale postmaster.pid (it named pid $(head -n 1 "$PGDATA/postmaster.pid" 2>/dev/null || echo '?'); no other copy can hold the lock)"
  rm -f "$PGDATA/postmaster.pid"
fi

# ---------------------------------------------------------------- first start
password() {
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    [ -r "$POSTGRES_PASSWORD_FILE" ] || die "POSTGRES_PASSWORD_FILE=$POSTGRES_PASSWORD_FILE is not readable"
    cat "$POSTGRES_PASSWORD_FILE"
  else
    printf '%s' "${POSTGRES_PASSWORD:-}"
  fi
}

sql_ident() { local s="${1//\"/\"\"}"; printf '"%s"' "$s"; }

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw="$(password)"
  [ -n "$pw" ] || die "first start needs POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (the data directory $PGDATA is empty)"
  log "initialising $PGDATA"
  # C.UTF-8: byte-order collation that does not change with glibc upgrades (a changed collation silently
  # corrupts text indexes). The password goes through a pipe, never argv: it reaches the shell below in its
  # corrupts text indexes). The pipe is made by a shell already running as the postgres user (a pipe made
  # by root cannot be reopened through /dev/fd after the switch).
  MF_PW="$pw" as_pg bash -c 'exec initdb "$@" --pwfile=<(printf "%s\n" "$MF_PW")' initdb \
    -D "$PGDATA" --username="$DB_USER" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  unset pw
  if [ "$DB_NAME" != postgres ]; then  # initdb made "postgres" already
    # Single-user mode: no network, no password; the statement arrives on stdin.
    printf 'CREATE DATABASE %s OWNER %s\n' "$(sql_ident "$DB_NAME")" "$(sql_ident "$DB_USER")" |
      as_pg postgres --single -D "$PGDATA" postgres >/dev/null
  fi
fi

# Access rules, rewritten on every start so they always match this script: over the socket only the OS
# user running Postgres (as the app role or itself); over TCP a password, and TLS when it is on.
host_kind=host
[ "$TLS" = on ] && host_kind=hostssl
as_pg tee "$PGDATA/pg_hba.conf" >/dev/null <<EOF
# written by mastofargate's Postgres entrypoint on every start; edits are overwritten
local   all  all                 peer map=local
$host_kind all  all  0.0.0.0/0    scram-sha-256
$host_kind all  all  ::/0         scram-sha-256
EOF
as_pg tee "$PGDATA/pg_ident.conf" >/dev/null <<EOF
# written by mastofargate's Postgres entrypoint on every start
local  $OS_USER  $OS_USER
local  $OS_USER  $DB_USER
EOF

tls_args=(-c ssl=off)
if [ "$TLS" = on ]; then
  if [ ! -s "$TLS_DIR/server.key" ] || [ ! -s "$TLS_DIR/server.crt" ]; then
    log "making a self-signed TLS certificate in $TLS_DIR (kept on the data volume)"
    as_pg mkdir -p "$TLS_DIR"
    as_pg openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -subj "/CN=postgres.mastofargate.internal" -keyout "$TLS_DIR/server.key.new" -out "$TLS_DIR/server.crt.new" 2>/dev/null
    as_pg chmod 600 "$TLS_DIR/server.key.new"
    as_pg mv "$TLS_DIR/server.crt.new" "$TLS_DIR/server.crt"
    as_pg mv "$TLS_DIR/server.key.new" "$TLS_DIR/server.key"
  fi
  tls_args=(-c ssl=on -c "ssl_cert_file=$TLS_DIR/server.crt" -c "ssl_key_file=$TLS_DIR/server.key"
    -c ssl_min_protocol_version=TLSv1.2)
fi

# ---------------------------------------------------------------- memory settings
memory_mb() {
  if [ -n "${POSTGRES_MEMORY_MB:-}" ]; then echo "$POSTGRES_MEMORY_MB"; return; fi
  local limit=max
  if [ -r /sys/fs/cgroup/memory.max ]; then limit="$(cat /sys/fs/cgroup/memory.max)"
  elif [ -r /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then limit="$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"; fi
  local total=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) * 1024 ))
  if [ "$limit" = max ] || [ "$limit" -gt "$total" ]; then limit="$total"; fi
  echo $(( limit / 1048576 ))
}
MEM="$(memory_mb)"
case "$MEM" in '' | *[!0-9]*) die "POSTGRES_MEMORY_MB must be a whole number of MiB, got '$MEM'" ;; esac
[ "$MEM" -ge 128 ] || die "Postgres needs at least 128 MiB; its memory budget is ${MEM} MiB"
clamp() { local v=$1; [ "$v" -lt "$2" ] && v=$2; [ "$v" -gt "$3" ] && v=$3; echo "$v"; }
# shared_buffers 25 %: "a reasonable starting value for shared_buffers is 25% of the memory in your system"
#   (https://www.postgresql.org/docs/15/runtime-config-resource.html#GUC-SHARED-BUFFERS).
# effective_cache_size 50 %: only a planner hint; in a container the page cache shares the same limit.
# work_mem 4 MB (the default) and maintenance_work_mem 1/16 (16–256 MB): each sort of each connection may
#   use work_mem, so it must stay small when the budget is a few hundred MiB (operator field notes: shrink
#   Postgres first; it copes well with little memory).
# No parallel query: each worker takes its own work_mem and the dynamic shared memory lives in /dev/shm,
#   which Fargate fixes at 64 MB. No huge pages on Fargate.
# checkpoint_timeout 15 min: fewer checkpoints mean fewer full-page images in WAL; EFS bills every byte.
settings=(
  -c listen_addresses='*'
  -c "max_connections=$MAX_CONNECTIONS"
  -c "shared_buffers=$(clamp $((MEM / 4)) 16 8192)MB"
  -c "effective_cache_size=$(clamp $((MEM / 2)) 64 65536)MB"
  -c work_mem=4MB
  -c "maintenance_work_mem=$(clamp $((MEM / 16)) 16 256)MB"
  -c max_parallel_workers_per_gather=0
  -c max_parallel_maintenance_workers=0
  -c huge_pages=off
  -c checkpoint_timeout=15min
  -c log_min_duration_statement=2000
  "${tls_args[@]}"
)

# ---------------------------------------------------------------- run, and stop fast
# exec_pg: the background subshell BECOMES the postmaster, so $! is the postmaster's pid.
exec_pg postgres -D "$PGDATA" "${settings[@]}" "$@" &
pid=$!
keeper=""
if [ -n "${PGBACKREST_STANZA:-}" ]; then
  # pgBackRest connects over the socket as the role initdb made (peer auth maps this OS user to it)
  export PGBACKREST_PG1_PATH="${PGBACKREST_PG1_PATH:-$PGDATA}" PGBACKREST_PG1_USER="${PGBACKREST_PG1_USER:-$DB_USER}"
  log "pgBackRest: stanza $PGBACKREST_STANZA, a full backup every ${FULL_BACKUP_DAYS} days"
  metrics=()
  if [ -n "${POSTGRES_METRICS_NAMESPACE:-}" ] && [ -n "${POSTGRES_METRICS_SERVER:-}" ]; then
    metrics=(--publish "$POSTGRES_METRICS_NAMESPACE" --server "$POSTGRES_METRICS_SERVER")
  fi
  exec_pg "$PYTHON" "$PGTASK" pgbackrest-keeper --full-days "$FULL_BACKUP_DAYS" --interval "$BACKUP_CHECK" \
    --retry "$(( BACKUP_CHECK < 60 ? BACKUP_CHECK : 60 ))" "${metrics[@]}" 9>&- &
  keeper=$!
fi
watchdog=""
stop() {
  [ -n "$watchdog" ] && return 0
  [ -n "$keeper" ] && kill -TERM "$keeper" 2>/dev/null
  log "stop requested: fast shutdown (disconnects clients, aborts their transactions, checkpoints)"
  kill -INT "$pid" 2>/dev/null || true
  (
    trap 'kill "$s" 2>/dev/null; exit 0' TERM
    sleep "$STOP_WAIT" & s=$!
    wait "$s"
    log "fast shutdown still running after ${STOP_WAIT}s: immediate shutdown"
    kill -QUIT "$pid" 2>/dev/null
  ) 9>&- &
  watchdog=$!
}
trap stop TERM INT
set +e
while :; do
  wait "$pid"
  rc=$?
  kill -0 "$pid" 2>/dev/null || break
done
[ -n "$watchdog" ] && kill "$watchdog" 2>/dev/null
[ -n "$keeper" ] && kill -TERM "$keeper" 2>/dev/null
log "postgres exited with status $rc"
exit "$rc"
