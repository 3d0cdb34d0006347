"""Writing mastofargate.toml: the chosen values, each with a comment saying what it means and why the
default is what it is. Sections left at their defaults are written commented out, as documentation."""

from __future__ import annotations

from typing import Any

import tomli_w

from mastofargate.config import Config

_COMMENTS: dict[str, str] = {
    "server.domain": "LOCAL_DOMAIN: the domain in handles (@you@DOMAIN). It can NEVER change after the first deploy.",
    "server.web_domain": "WEB_DOMAIN: serve the web UI from another host (permanent too; needs a webfinger redirect).",
    "server.admin_email": "Owner account's email; alarms are sent here.",
    "aws.name": "Prefix of stack and resource names: stacks NAME-data (data, long-lived) and NAME-app (services).",
    "aws.region": "AWS region for everything.",
    "aws.hosted_zone_id": "Route 53 zone: a certificate is validated and a DNS record created in it.",
    "aws.certificate_arn": "An existing ACM certificate for the web host (instead of a Route 53 zone).",
    "deployment.profile": "personal (1-5 users) | community (up to ~500) | large: documented sizing, see README.",
    "deployment.database": "rds (managed, point-in-time recovery) | task (Postgres on encrypted EFS, same cost).",
    "deployment.cache": "elasticache (managed, TLS) | task (Redis persisting to EFS; losing Redis is nearly harmless).",
    "deployment.arch": "arm64 (Graviton, ~20 % cheaper) | x86_64.",
    "deployment.edge": "alb (load balancer, ACM certificate, ~$24/month) | direct (Caddy in the web task, Let's "
    "Encrypt certificate on EFS, DNS follows the task; needs aws.hosted_zone_id).",
    "deployment.spot": "Fargate Spot (~70 % cheaper) for stateless services; a Postgres task of its own never.",
    "deployment.layout": "split (a task per process) | one-task (all in one singleton task: cheapest; a rollout "
    "takes the server offline for a few minutes).",
    "media.domain": "Host serving media and assets; PERMANENT once posts exist (other servers store its URLs).",
    "media.certificate_arn": "A us-east-1 ACM certificate for media.domain.",
    "deployment.mastodon_version": "ghcr.io/mastodon/mastodon(-streaming) tag; to upgrade, change this and deploy.",
    "ci.repository": "GitHub repository (owner/name) whose workflows may plan, push images and deploy: CI roles.",
    "ci.branch": "Pushes to this branch build the images and deploy.",
    "ci.oidc_provider_arn": "Your account's existing GitHub OIDC provider (else the CI stack creates one).",
}

_TRAILER = """
# Everything below is optional; uncomment to change a default ('mastofargate schema' lists all settings).
#
# [rds]
# postgres_version = "17.6"        # an RDS PostgreSQL version
# backup_retention_days = 7        # automated backups (point-in-time recovery window)
# multi_az = false                 # a standby in a second zone doubles the instance price
#
# [media]
# cleanup_days = 7                 # tootctl media remove --days (operators with a relay use 3)
# preview_card_days = 30           # tootctl preview_cards remove --days (never below 14)
# domain = "files.example.org"     # media host, default files.DOMAIN with a hosted zone; PERMANENT once posts exist
#
# [smtp]                           # default: Amazon SES, set up by the stacks and the deploy
# server = "smtp.example.net"      # your own provider instead
# login = "smtp-user"              # the password goes into Secrets Manager, never here
# from_address = "notifications@example.org"
#
# [services.web]                   # override one service's documented size
# cpu = 512
# memory = 2048
"""


def _line(key: str, value: Any) -> str:
    rendered = tomli_w.dumps({key.split(".")[-1]: value}).strip()
    comment = _COMMENTS.get(key)
    return f"# {comment}\n{rendered}" if comment else rendered


def render(config: Config) -> str:
    """The TOML text for a validated config (round-trips to the same Config)."""
    data = config.model_dump(mode="json", exclude_none=True)
    out = ["# mastofargate.toml: one Mastodon server on AWS ECS Fargate. Written by 'mastofargate init'."]
    for section in ("server", "aws", "deployment"):
        out.append(f"\n[{section}]")
        for key, value in data[section].items():
            if section == "deployment" and key == "container_insights" and not value:
                continue
            if section == "server" and key == "single_user_mode" and not value:
                continue
            out.append(_line(f"{section}.{key}", value))
    media = {k: v for k, v in data["media"].items() if k in ("domain", "certificate_arn")}
    if media:  # the permanent media name, written down when chosen
        out.append("\n[media]")
        out += [_line(f"media.{k}", v) for k, v in media.items()]
    if config.ci.repository:
        out.append("\n[ci]")
        for key, value in data["ci"].items():
            if key == "provider" or (key == "branch" and value == "main"):
                continue
            out.append(_line(f"ci.{key}", value))
    return "\n".join(out) + "\n" + _TRAILER
