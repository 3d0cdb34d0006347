#!/bin/sh
# mastofargate's start wrapper for Mastodon containers (web, Sidekiq, streaming, one-off tasks) when Redis is
# a separate task serving TLS with a certificate signed by the server's private CA (stack/cache.py).
#
# Why: Mastodon's Redis clients verify the server against the process's trust store and have no setting to
# relax or extend it. Ruby's OpenSSL reads SSL_CERT_FILE, Node reads NODE_EXTRA_CA_CERTS, and both read the
# file once, when the process starts; so the file must exist before the process does. The CA comes from a
# secret (REDIS_CA_CERT, the certificate only, never its key); this script writes it, then execs the command.
#   SSL_CERT_FILE        (Ruby) the image's public roots followed by the Redis CA: federation, S3 and SMTP
#                        still need the public roots, because the file REPLACES OpenSSL's default bundle
#   NODE_EXTRA_CA_CERTS  (Node) the Redis CA alone: Node adds it to its built-in roots
# Only the variables that are set are written. The paths are in /tmp (writable by the mastodon user); ECS
# Exec sessions (a Rails console) inherit the same variables and find the files the task wrote.
#
# Environment: REDIS_CA_CERT (PEM, required), SSL_CERT_FILE and/or NODE_EXTRA_CA_CERTS (paths),
#              MASTOFARGATE_PUBLIC_ROOTS (default /etc/ssl/certs/ca-certificates.crt, Debian's bundle)
# Arguments: the command to run.
set -eu

die() { printf 'mastofargate-ca: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$#" -gt 0 ] || die "no command to run"
ca="${REDIS_CA_CERT:-}"
case "$ca" in
  *"-----BEGIN CERTIFICATE-----"*"-----END CERTIFICATE-----"*) ;;
  "") die "REDIS_CA_CERT is empty: the task definition must pass the redis secret's ca_cert" ;;
  *) die "REDIS_CA_CERT does not hold a PEM certificate" ;;
esac

# write FILE: standard input to FILE through a temporary file and a rename (never a half-written bundle)
write() {
  mkdir -p "$(dirname "$1")"
  cat >"$1.tmp.$$"
  chmod 644 "$1.tmp.$$"
  mv -f "$1.tmp.$$" "$1"
}

if [ -n "${SSL_CERT_FILE:-}" ]; then
  roots="${MASTOFARGATE_PUBLIC_ROOTS:-/etc/ssl/certs/ca-certificates.crt}"
  grep -q -- "-----BEGIN CERTIFICATE-----" "$roots" 2>/dev/null ||
    die "$roots holds no certificates: without the public roots federation would stop; install ca-certificates"
  { cat "$roots"; printf '\n%s\n' "$ca"; } | write "$SSL_CERT_FILE"
fi
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ]; then
  printf '%s\n' "$ca" | write "$NODE_EXTRA_CA_CERTS"
fi
[ -n "${SSL_CERT_FILE:-}${NODE_EXTRA_CA_CERTS:-}" ] || die "neither SSL_CERT_FILE nor NODE_EXTRA_CA_CERTS is set"
unset REDIS_CA_CERT
exec "$@"
