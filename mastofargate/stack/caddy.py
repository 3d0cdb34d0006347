"""The direct edge's Caddy configuration (`edge = "direct"`): a pure function of the config.

Caddy replaces the ALB: it terminates TLS for the server's host with a certificate it obtains over ACME
(Let's Encrypt by default), sends the streaming API to the streaming server and everything else to Puma,
exactly as the ALB's rules do (edge.py). Caddy's native JSON is produced rather than a Caddyfile so that
every setting is explicit and reviewable in `task_definitions/`; `caddy run --config FILE` runs it as is.

Decisions, each with its reason:
- Certificates and ACME account live in `storage_dir`, which must be on EFS, never on the task's disk:
  Let's Encrypt refuses a seventh certificate for the same names within a week
  (https://letsencrypt.org/docs/rate-limits/, "5 duplicate certificates per week" plus renewals), and a task
  that re-issued on every start would hit that after a handful of deploys.
- HTTP -> HTTPS: Caddy's automatic HTTPS serves port 80 only to answer ACME HTTP-01 challenges and to
  redirect everything else to https (308, keeping method and body).
- Client address: reverse_proxy sets X-Forwarded-For to the connecting address and X-Forwarded-Proto to
  https, and (with no trusted_proxies) ignores whatever the client sent in those headers, so a client
  cannot spoof its address into Mastodon's rate limits and logs.
- Upload size: Mastodon accepts videos up to 99 MB (app/models/media_attachment.rb VIDEO_LIMIT =
  99.megabytes, v4.5; images 16 MB; dist/nginx.conf's client_max_body_size 99m). The multipart body carries
  the file plus its form fields, so the limit is the largest file plus 1 MiB of framing.
- Streaming: `/api/v1/streaming` and `/api/v1/streaming/*` (WebSocket upgrades and server-sent events) go
  to the streaming server with flush_interval -1 (every event sent at once, never buffered). Caddy sets no
  read/write timeouts by default, so a WebSocket stays open as long as both ends keep it.
- HTTP/1.1 and HTTP/2 only: HTTP/3 would need UDP 443, and the task's security group opens TCP 80/443 only.
- No admin endpoint: the configuration is fixed at task start; nothing may change it at runtime (and it is
  not saved to disk either: the next start reads it from the task definition again).
- Health: a plain-HTTP listener on loopback only (`HEALTH_PORT`) answers 200 while Caddy runs; the task's
  container health check asks it. HTTPS cannot be the health signal: on a first install there is no
  certificate until DNS points at the task, and a task killed for that would never get one.
- Several tasks, one certificate: every Caddy of the front (autoscaled tasks, and old and new task during a
  rolling deployment) uses the same `storage_dir` on EFS, and "any Caddy instances that are configured to
  use the same storage will automatically share those resources and coordinate certificate management as a
  cluster" (caddyserver.com/docs/automatic-https, Storage). Concretely (certmagic's FileStorage): issuance
  and renewal take a lock file in `storage_dir/locks`, created with O_EXCL (atomic on EFS, NFSv4.1) and
  refreshed every 5 s while held (stale after 10 s, so a task killed mid-issuance blocks nobody); the
  others wait, then load the certificate the holder stored instead of ordering their own. HTTP-01 and
  TLS-ALPN-01 challenge data is written to the storage too, so whichever task Let's Encrypt's validation
  reaches through the multi-value DNS record answers it (tests/test_caddy_edge.py runs both over real ACME
  against a local ACME CA: one task orders, the other answers the validation). What this needs of the
  configuration: the same storage for all (one `file_system` root on the shared EFS access point, one owner
  uid), which is all it has; no per-task storage, and no admin endpoint that could diverge one task's
  configuration.
- Shutdown: Caddy closes its listeners and gives open connections GRACE_SECONDS to finish, then closes
  them (the default waits for ever, and a WebSocket never finishes), so it stops inside its stop timeout.
- Logs: JSON on stderr (the awslogs driver ships them), so a metric filter can count failed certificate
  obtains and renewals (loggers `tls.obtain` / `tls.renew`, level `error`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mastofargate.config import Config
from mastofargate.errors import UsageError

LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
INTERNAL = "internal"  # Caddy's own local CA ("local_certs"): for a host no public CA can validate
STORAGE_DIR = "/data/caddy"  # the Caddy container's EFS mount
STREAMING_PATHS = ["/api/v1/streaming", "/api/v1/streaming/*"]
MIB = 1024 * 1024
# Mastodon's largest accepted upload (MAX_VIDEO_SIZE default, app/models/media_attachment.rb) plus framing.
MASTODON_MAX_UPLOAD = 99 * MIB
MAX_REQUEST_BODY = MASTODON_MAX_UPLOAD + 1 * MIB
HEALTH_PORT = 2020  # loopback only; 2019 is Caddy's (disabled) admin port
GRACE_SECONDS = 15  # open connections' time to finish once Caddy shuts down (then it closes them)


@dataclass(frozen=True)
class Upstreams:
    """Where Puma and the streaming server listen, as Caddy reaches them (host:port)."""

    web: str = "127.0.0.1:3000"
    streaming: str = "127.0.0.1:4000"


def caddy_config(
    cfg: Config,
    *,
    upstreams: Upstreams | None = None,
    storage_dir: str = STORAGE_DIR,
    ca: str = LETSENCRYPT,
    http_port: int = 80,
    https_port: int = 443,
    health_port: int = HEALTH_PORT,
) -> dict[str, Any]:
    """Caddy's JSON configuration for this server.

    `ca` is an ACME directory URL (Let's Encrypt by default; LETSENCRYPT_STAGING for dry runs that must not
    spend the weekly rate limit) or INTERNAL for Caddy's local CA. `http_port`/`https_port` are where Caddy
    listens (80/443 in the task: Caddy's redirect names no port, so the public HTTPS port must be 443).
    """
    up = upstreams or Upstreams()
    host = cfg.server.host
    if ca == INTERNAL:
        issuer: dict[str, Any] = {"module": "internal"}
    elif ca.startswith("https://"):
        issuer = {"module": "acme", "ca": ca, "email": cfg.server.admin_email}
    else:
        raise UsageError(
            f"certificate authority {ca!r} is not usable",
            why="Caddy needs an ACME directory URL over https, or its internal CA",
            fix=f"use {LETSENCRYPT} (the default), {LETSENCRYPT_STAGING} or {INTERNAL!r}",
        )

    def proxy(upstream: str, **extra: Any) -> dict[str, Any]:
        return {
            "handler": "reverse_proxy",
            "upstreams": [{"dial": upstream}],
            # Mastodon builds absolute URLs from Host and X-Forwarded-Proto (Rails' force_ssl).
            "headers": {"request": {"set": {"X-Forwarded-Proto": ["https"]}}},
            **extra,
        }

    site = {
        "match": [{"host": [host]}],
        "handle": [
            {
                "handler": "subroute",
                "routes": [
                    {
                        "match": [{"path": STREAMING_PATHS}],
                        "handle": [proxy(up.streaming, flush_interval=-1)],
                    },
                    {
                        # A declared body over the limit is refused before Puma sees a byte (413); a chunked
                        # one is cut at the limit by request_body below (Caddy 2.6 then answers 502).
                        "match": [{"expression": _declared_body_over(MAX_REQUEST_BODY)}],
                        "handle": [
                            {
                                "handler": "static_response",
                                "status_code": 413,
                                "headers": {"Connection": ["close"]},
                                "body": "Request body too large",
                                "close": True,
                            }
                        ],
                    },
                    {
                        "handle": [
                            {"handler": "request_body", "max_size": MAX_REQUEST_BODY},
                            {
                                "handler": "encode",
                                "encodings": {"gzip": {}, "zstd": {}},
                                "prefer": ["zstd", "gzip"],
                            },
                            proxy(up.web),
                        ]
                    },
                ],
            }
        ],
        "terminal": True,
    }
    config: dict[str, Any] = {
        "admin": {"disabled": True, "config": {"persist": False}},
        "logging": {"logs": {"default": {"writer": {"output": "stderr"}, "encoder": {"format": "json"}}}},
        "storage": {"module": "file_system", "root": storage_dir},
        "apps": {
            "http": {
                "grace_period": f"{GRACE_SECONDS}s",
                "http_port": http_port,
                "https_port": https_port,
                "servers": {
                    "mastodon": {
                        "listen": [f":{https_port}"],
                        "routes": [site],
                        "protocols": ["h1", "h2"],
                    },
                    "health": {
                        "listen": [f"127.0.0.1:{health_port}"],
                        "protocols": ["h1"],
                        "routes": [{"handle": [{"handler": "static_response", "status_code": 200, "body": "ok"}]}],
                        "automatic_https": {"disable": True},
                    },
                },
            },
            "tls": {"automation": {"policies": [{"subjects": [host], "issuers": [issuer]}]}},
        },
    }
    if ca == INTERNAL:  # a container has no trust store to install the local root into
        config["apps"]["pki"] = {"certificate_authorities": {"local": {"install_trust": False}}}
    return config


def _declared_body_over(limit: int) -> str:
    """A CEL expression true when Content-Length is a number above `limit` (false when absent: no error)."""
    length = "{http.request.header.Content-Length}"
    return f'{length}.matches("^[0-9]{{1,18}}$") && int({length}) > {limit}'


def caddy_json(cfg: Config, **options: Any) -> str:
    """caddy_config as deterministic JSON text (same config in, byte-identical file out)."""
    return json.dumps(caddy_config(cfg, **options), indent=2, sort_keys=True) + "\n"
