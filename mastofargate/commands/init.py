"""`mastofargate init`: write mastofargate.toml, asking on a terminal, from flags everywhere else."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption

Opt = typer.Option


def _default_name(domain: str) -> str:
    label = re.sub(r"[^a-z0-9-]", "-", domain.split(".")[0].lower()).strip("-") or "mastodon"
    if not label[0].isalpha():
        label = "m-" + label
    return label[:20].rstrip("-")


# What `init` proposes for a NEW server, per profile. Only written configs carry it: a config without these keys
# keeps config.PROFILE_DEFAULTS (RDS, ElastiCache, split, ALB), so no deployed server ever changes shape.
# - personal: everything in one task (Postgres and Redis in it, backed up by pgBackRest's WAL archive, a nightly
#   dump and a monthly restore drill) and no load balancer (~$16/month instead of ~$71 on a dedicated account).
# - community: no load balancer either (the DNS record lists every healthy front task), and Redis as a task
#   (twice ElastiCache micro's memory, verified TLS, an append-only file on EFS so a Spot stop loses nothing) for
#   less than the cache node; Postgres stays on RDS, where a community's data is best looked after.
# The direct edge needs the domain's zone in Route 53; a certificate ARN says the ALB was meant.
PROPOSALS: dict[str, dict[str, str]] = {
    "personal": {"database": "task", "cache": "task", "layout": "one-task", "edge": "direct"},
    "community": {"cache": "task", "edge": "direct"},
}


def init(
    domain: Annotated[str | None, Opt("--domain", help="LOCAL_DOMAIN: the domain in handles. Permanent.")] = None,
    web_domain: Annotated[str | None, Opt("--web-domain", help="WEB_DOMAIN, if the web UI lives elsewhere.")] = None,
    region: Annotated[str | None, Opt("--region", help="AWS region (default us-east-1).")] = None,
    name: Annotated[str | None, Opt("--name", help="Stack name prefix (default: the domain's first label).")] = None,
    profile: Annotated[str | None, Opt("--profile", help="personal | community | large.")] = None,
    database: Annotated[str | None, Opt("--database", help="rds | task (default per profile).")] = None,
    cache: Annotated[str | None, Opt("--cache", help="elasticache | task (default per profile).")] = None,
    arch: Annotated[str | None, Opt("--arch", help="arm64 | x86_64 (default arm64).")] = None,
    spot: Annotated[bool | None, Opt("--spot/--no-spot", help="Fargate Spot for stateless services.")] = None,
    edge: Annotated[
        str | None, Opt("--edge", help="alb | direct (Caddy + DNS following the task; needs --hosted-zone-id).")
    ] = None,
    layout: Annotated[
        str | None, Opt("--layout", help="split | one-task (everything in one singleton task; personal only).")
    ] = None,
    hosted_zone_id: Annotated[str | None, Opt("--hosted-zone-id", help="Route 53 zone for the certificate.")] = None,
    certificate_arn: Annotated[str | None, Opt("--certificate-arn", help="Existing ACM certificate ARN.")] = None,
    admin_email: Annotated[str | None, Opt("--admin-email", help="Owner email and alarm address.")] = None,
    mastodon_version: Annotated[
        str | None, Opt("--mastodon-version", help="Mastodon release tag, e.g. v4.5.15.")
    ] = None,
    repository: Annotated[
        str | None, Opt("--repository", help="GitHub owner/name of this repository (for the CI roles).")
    ] = None,
    yes: Annotated[bool, Opt("--yes", "-y", help="Ask nothing; use defaults for what no flag gives.")] = False,
    force: Annotated[bool, Opt("--force", help="Overwrite an existing config file.")] = False,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Write mastofargate.toml (interactive on a terminal; non-interactive with --yes or without a TTY)."""
    from mastofargate.config import DEFAULT_MASTODON_VERSION, MEDIA_ON_CLOUDFRONT, PROFILE_DEFAULTS, parse_config
    from mastofargate.configfile import render
    from mastofargate.errors import UsageError
    from mastofargate.sizing import PROFILES
    from mastofargate.ui import say, stdin_is_tty

    if config.exists() and not force:
        raise UsageError(
            f"{config} already exists; nothing was written.",
            fix="pass --force to overwrite it, or --config to write elsewhere",
        )
    interactive = stdin_is_tty() and not yes

    def ask(label: str, value: Any, default: Any = None, flag: str = "") -> Any:
        if value is not None:
            return value
        if interactive:
            return typer.prompt(label, default=default) if default is not None else typer.prompt(label)
        if default is None:
            raise UsageError(
                f"{flag} is required when init cannot ask (no terminal or --yes).", fix=f"pass {flag} VALUE"
            )
        return default

    domain = str(ask("Domain (LOCAL_DOMAIN, permanent)", domain, flag="--domain")).strip().lower()
    profile = ask("Profile (personal/community/large)", profile, "personal")
    defaults = {**PROFILE_DEFAULTS.get(profile, PROFILE_DEFAULTS["personal"]), **PROPOSALS.get(profile, {})}
    edge = ask("Edge (alb/direct)", edge, defaults.get("edge", "alb") if certificate_arn is None else "alb")
    if edge == "direct" and hosted_zone_id is None and certificate_arn is None and interactive:
        hosted_zone_id = typer.prompt("Route 53 hosted zone id (the direct edge keeps the record in it)")
    if hosted_zone_id is None and certificate_arn is None:
        if not interactive:
            raise UsageError(
                "neither --hosted-zone-id nor --certificate-arn was given; nothing was written.",
                why="the direct edge keeps the domain's record in a Route 53 zone"
                if edge == "direct"
                else "the load balancer needs a TLS certificate for the web host",
                fix="pass --hosted-zone-id Z... (a Route 53 zone)"
                + ("" if edge == "direct" else " or --certificate-arn arn:aws:acm:..."),
            )
        answer = typer.prompt("Route 53 hosted zone id (or an ACM certificate ARN)")
        certificate_arn, hosted_zone_id = (answer, None) if answer.startswith("arn:") else (None, answer)
    data: dict[str, Any] = {
        "server": {"domain": domain, "admin_email": ask("Admin email", admin_email, f"admin@{domain}")},
        "aws": {
            "name": ask("Stack name prefix", name, _default_name(str(domain))),
            "region": ask("AWS region", region, "us-east-1"),
        },
        "deployment": {
            "profile": profile,
            "database": ask("Database (rds/task)", database, defaults["database"]),
            "cache": ask("Cache (elasticache/task)", cache, defaults["cache"]),
            "arch": ask("CPU architecture (arm64/x86_64)", arch, "arm64"),
            "spot": spot
            if spot is not None
            else (typer.confirm("Use Fargate Spot?", default=defaults["spot"]) if interactive else defaults["spot"]),
            "mastodon_version": ask("Mastodon version", mastodon_version, DEFAULT_MASTODON_VERSION),
            "edge": edge,
            # asked only where the profile offers a choice; a flag is always validated (a clear error if not)
            "layout": layout
            if layout is not None or "one-task" not in PROFILES.get(profile, PROFILES["personal"]).packings
            else ask(
                "Layout (split/one-task: one task, offline for minutes during a rollout)",
                None,
                defaults.get("layout", "split"),
            ),
        },
    }
    if data["deployment"]["layout"] is None:
        del data["deployment"]["layout"]
    if repository is None and interactive:
        repository = typer.prompt("GitHub repository for CI (owner/name, empty for none)", default="") or None
    if repository:
        data["ci"] = {"repository": repository.strip()}
    if web_domain:
        data["server"]["web_domain"] = web_domain
    if hosted_zone_id:
        data["aws"]["hosted_zone_id"] = hosted_zone_id
    if certificate_arn:
        data["aws"]["certificate_arn"] = certificate_arn
    media_note = ""
    if hosted_zone_id and data["aws"]["region"] != "us-east-1":
        # files.DOMAIN needs a us-east-1 certificate the stacks cannot make from another region: write the
        # choice down (it is permanent once posts exist) instead of failing later.
        data["media"] = {"domain": MEDIA_ON_CLOUDFRONT}
        media_note = (
            f"Media will be served on *.cloudfront.net ({data['aws']['region']} cannot make the us-east-1 "
            "certificate files.DOMAIN needs). To use your own name, set [media] domain and certificate_arn "
            "BEFORE the first deploy: the media name never changes once posts exist."
        )
    cfg = parse_config(data, source="the given values")
    text = render(cfg)
    Path(config).parent.mkdir(parents=True, exist_ok=True)
    Path(config).write_text(text, encoding="utf-8")
    say(
        f"Wrote {config} ({cfg.deployment.profile} profile, {cfg.deployment.database} Postgres, "
        f"{cfg.deployment.cache} Redis, {cfg.deployment.arch}{', Spot' if cfg.deployment.spot else ''}"
        f"{', one task' if cfg.one_task else ''}, {cfg.deployment.edge} edge)."
    )
    readme = write_overlay_readme(Path(config).parent)
    if readme is not None:
        say(f"Wrote {readme} (files there customise the web image).")
    if media_note:
        say(media_note)
    elif cfg.media_domain:
        say(
            f"Media and assets will be served on {cfg.media_domain} (its own certificate). Like the domain, this "
            "name is permanent once posts exist: set [media] domain now if you want another one."
        )
    say("Next: mastofargate synth   (writes cfn/ and task_definitions/ for review)")


def write_overlay_readme(repo: Path) -> Path | None:
    """Create images/mastodon/overlay/ next to the config with the README saying what may go there (the text
    ships in the package); an existing README is the user's and is left alone. Returns the path written."""
    from mastofargate.images.context import OVERLAY_DIR, OVERLAY_README, bundled_images_dir

    target = repo / "images" / "mastodon" / OVERLAY_DIR / OVERLAY_README
    if target.exists():
        return None
    source = bundled_images_dir() / "mastodon" / OVERLAY_DIR / OVERLAY_README
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    return target


def register(app: typer.Typer) -> None:
    app.command("init")(init)
