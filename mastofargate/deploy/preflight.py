"""Deploy step 1, preflight: everything that can be checked before anything changes.

Credentials, the certificate or hosted zone, the data stack's health, LOCAL_DOMAIN unchanged (DESIGN
invariant 1), and the image tags to deploy (checked in ECR once the repositories exist). Nothing here
writes anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mastofargate import aws
from mastofargate.aws import NotFound
from mastofargate.deploy import stacks
from mastofargate.deploy.context import Run
from mastofargate.deploy.options import ImageChoice, Tags
from mastofargate.errors import EXIT_USAGE, MastofargateError, UsageError
from mastofargate.target import StackState, Target


@dataclass
class State:
    """What preflight found on AWS."""

    data: StackState | None
    app: StackState | None
    tags: Tags | None  # None: decided once the data stack (and so the image repositories) exists
    deployed_tags: Tags | None
    images_verified: bool = False

    @property
    def data_exists(self) -> bool:
        return stacks.exists(self.data)

    @property
    def app_exists(self) -> bool:
        return stacks.exists(self.app)

    @property
    def installing(self) -> bool:
        """A first install, or one that stopped before the services were switched on."""
        return self.app is None or not self.app.exists or self.app.parameters.get("ServicesEnabled") == "false"


def preflight(run: Run, images: ImageChoice, *, need_tags: bool) -> State:
    """Read the world and check it; `need_tags` is False where tags may be settled later (--build,
    --data-only, --dry-run)."""
    target, out = run.target, run.out
    out.step(f"Preflight: {target.config.server.domain} in {target.region}")
    out.line(f"  AWS account {aws.account_id(target.region)}, region {target.region}")
    check_certificate(run)
    check_mail(run)
    data = stacks.read_state(target, target.data_stack)
    app = stacks.read_state(target, target.app_stack)
    refuse_broken_data_stack(target, data)
    check_local_domain(target, data, app)
    check_edge_unchanged(target, data)
    deployed = deployed_tags(app)
    tags = requested_tags(images, deployed)
    if tags is None and need_tags and not images.build:
        raise UsageError(
            "No image tags to deploy (nothing is deployed yet). Nothing was changed.",
            why="the services need images in the stack's ECR repositories, which the data stack creates",
            fix="first install: 'mastofargate deploy --data-only' (creates the data stack and the repositories), "
            "'mastofargate images push', then 'mastofargate deploy --mastodon-tag T --streaming-tag T' (or "
            "--images-json, or --build to do both)",
        )
    if tags is not None and stacks.exists(data):
        tags = settle_backup_tag(target, tags)
    state = State(data, app, tags, deployed)
    if tags is not None and stacks.exists(data):
        check_images(target, tags)
        state.images_verified = True
    if tags is not None:
        out.line(f"  images: {tags.describe()}" + (f" (deployed: {deployed.describe()})" if deployed else ""))
        if tags.backup:
            out.line(f"  backup image: {tags.backup}" + (f" (deployed: {deployed.backup})" if deployed else ""))
        warn_version_mismatch(run, tags)
    return state


def check_certificate(run: Run) -> None:
    """The existing certificate exists, or the hosted zone exists and holds the web host's name."""
    target = run.target
    cfg = target.config
    if cfg.aws.certificate_arn:
        try:
            with aws.aws_errors("reading the certificate"):
                cert = target.client("acm").describe_certificate(CertificateArn=cfg.aws.certificate_arn)["Certificate"]
        except NotFound:
            raise UsageError(
                f"Certificate {cfg.aws.certificate_arn} does not exist.",
                fix="request one in ACM for the web host, or set aws.hosted_zone_id instead",
            ) from None
        status = str(cert.get("Status", "?"))
        run.out.line(f"  certificate {cfg.aws.certificate_arn.rsplit('/', 1)[-1]}: {status}")
        if status not in ("ISSUED", "PENDING_VALIDATION"):
            raise UsageError(
                f"Certificate {cfg.aws.certificate_arn} is {status}; the load balancer cannot use it.",
                fix="request a new certificate for the web host (or renew this one), then deploy again",
            )
        return
    zone_id = str(cfg.aws.hosted_zone_id)
    try:
        with aws.aws_errors("reading the hosted zone"):
            zone = target.client("route53").get_hosted_zone(Id=zone_id)["HostedZone"]
    except NotFound:
        raise UsageError(
            f"Route 53 hosted zone {zone_id} does not exist in this account.",
            fix="check aws.hosted_zone_id in the config (aws route53 list-hosted-zones)",
        ) from None
    zone_name = str(zone["Name"]).rstrip(".")
    host = cfg.server.host
    if host != zone_name and not host.endswith("." + zone_name):
        raise UsageError(
            f"{host} is not in hosted zone {zone_id} ({zone_name}).",
            fix="use the zone that holds the web host's DNS name",
        )
    run.out.line(f"  hosted zone {zone_id} ({zone_name})")
    if cfg.deployment.edge == "direct":
        run.out.line(f"  direct edge: the DNS follower keeps {host}'s A/AAAA record in it; Let's Encrypt certificate")


def check_mail(run: Run) -> None:
    """A new account's SES sandbox mails only verified addresses: say so (a warning, not a refusal: the
    server works, and AWS lifts the sandbox on request)."""
    from mastofargate.deploy import mail

    try:
        notice = mail.ses_sandbox_notice(run.target)
    except aws.AccessDenied:
        run.out.warn("could not check SES's sandbox status (ses:GetAccount refused to these credentials)")
        return
    if notice:
        run.out.warn(notice)


def refuse_broken_data_stack(target: Target, data: StackState | None) -> None:
    if data is not None and data.status == "ROLLBACK_COMPLETE":
        raise MastofargateError(
            f"Stack {target.data_stack} is in ROLLBACK_COMPLETE: its first creation failed and it holds nothing.",
            why="CloudFormation cannot update a stack whose creation was rolled back",
            fix=f"delete it (aws cloudformation delete-stack --stack-name {target.data_stack}), then deploy again",
            exit_code=EXIT_USAGE,
        )


def check_local_domain(target: Target, data: StackState | None, app: StackState | None) -> None:
    """DESIGN invariant 1: LOCAL_DOMAIN never changes. Read it from the deployed templates' metadata
    and from the running web task definition; refuse (nothing changed) if any differs."""
    want = target.config.server.domain
    found: dict[str, str] = {}
    for stack, info in ((target.data_stack, data), (target.app_stack, app)):
        if stacks.exists(info):
            meta = ((stacks.deployed_template(target, stack) or {}).get("Metadata") or {}).get("mastofargate") or {}
            if meta.get("local_domain"):
                found[f"stack {stack}"] = str(meta["local_domain"])
    for family, domain in web_task_domains(target).items():
        found[f"task definition {family}"] = domain
    wrong = {where: domain for where, domain in found.items() if domain != want}
    if wrong:
        where, domain = next(iter(wrong.items()))
        raise UsageError(
            f"REFUSED: LOCAL_DOMAIN would change from {domain} to {want}. Nothing was changed.",
            why=f"{where} runs LOCAL_DOMAIN={domain}; a Mastodon server's domain is permanent (every account, "
            "post and federation signature carries it)",
            fix=f'set server.domain = "{domain}" in the config again; a new domain needs a new server (a new aws.name)',
        )


def check_edge_unchanged(target: Target, data: StackState | None) -> None:
    """Refuse (nothing changed) to switch a deployed server between the ALB and the direct edge: the data
    stack's security-group exports would change while the app stack still imports them, which CloudFormation
    refuses half-way. Stacks from before the setting existed have the ALB."""
    if not stacks.exists(data):
        return
    meta = ((stacks.deployed_template(target, target.data_stack) or {}).get("Metadata") or {}).get("mastofargate") or {}
    deployed = str(meta.get("edge") or "alb")
    want = target.config.deployment.edge
    if deployed != want:
        raise UsageError(
            f"REFUSED: deployment.edge would change from {deployed!r} to {want!r}. Nothing was changed.",
            why="switching edges replaces security groups the running services use; it needs a staged migration "
            "mastofargate does not do yet",
            fix=f'set deployment.edge = "{deployed}" again (or deploy a new server, a new aws.name, with {want!r})',
        )


def web_task_domains(target: Target) -> dict[str, str]:
    """family -> LOCAL_DOMAIN of the latest web task definition(s), where one exists."""
    found = {}
    for task in target.config.tasks:
        if not task.has("web"):
            continue
        family = f"{target.name}-{task.name}"
        try:
            with aws.aws_errors(f"reading task definition {family}"):
                td = target.ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
        except NotFound:
            continue
        for container in td.get("containerDefinitions", []):
            for env in container.get("environment", []):
                if env.get("name") == "LOCAL_DOMAIN":
                    found[family] = str(env.get("value"))
    return found


def deployed_tags(app: StackState | None) -> Tags | None:
    if app is None or not app.exists:
        return None
    params = app.parameters
    if params.get("MastodonImageTag") and params.get("StreamingImageTag"):
        return Tags(params["MastodonImageTag"], params["StreamingImageTag"], params.get("BackupImageTag", ""))
    return None


def requested_tags(images: ImageChoice, deployed: Tags | None) -> Tags | None:
    """Tags to deploy: flags, else --images-json, else what runs now. None when they can only be known
    after the data stack exists (--build on a first install, or nothing given yet)."""
    if images.images_json is not None:
        tags = tags_from_images_json(images.images_json)
        backup = tags.backup or (deployed.backup if deployed else "")
        return Tags(images.mastodon_tag or tags.mastodon, images.streaming_tag or tags.streaming, backup)
    if images.build:
        if images.mastodon_tag or images.streaming_tag:
            raise UsageError("--build makes its own tags; leave out --mastodon-tag/--streaming-tag")
        return None
    if images.mastodon_tag or images.streaming_tag:
        mastodon = images.mastodon_tag or (deployed.mastodon if deployed else None)
        streaming = images.streaming_tag or (deployed.streaming if deployed else None)
        if not mastodon or not streaming:
            raise UsageError(
                "Only one image tag was given and none is deployed yet.",
                fix="pass both --mastodon-tag and --streaming-tag (as printed by 'mastofargate images push')",
            )
        return Tags(mastodon, streaming, deployed.backup if deployed else "")
    return deployed


def tags_from_images_json(path: Path) -> Tags:
    """Tags from `mastofargate images push --json` output: each image's entry may be a full reference
    (repo:tag), a bare tag, or an object with a tag/ref/image/uri field; a top-level "images" wraps it."""
    try:
        data: Any = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"Cannot read image tags from {path}: {e}") from None
    if isinstance(data, dict) and "images" in data:
        data = data["images"]
    if isinstance(data, list):
        data = {str(item.get("name") or item.get("image")): item for item in data if isinstance(item, dict)}
    found: dict[str, str] = {}
    for image in ("mastodon", "streaming", "backup"):
        entry = data.get(image) if isinstance(data, dict) else None
        if isinstance(entry, dict):
            entry = entry.get("tag") or entry.get("ref") or entry.get("reference") or entry.get("uri")
        if isinstance(entry, str) and entry:
            found[image] = entry.rsplit(":", 1)[-1] if ":" in entry.rsplit("/", 1)[-1] else entry
    if not {"mastodon", "streaming"} <= set(found):
        raise UsageError(
            f"{path} does not name both images (mastodon and streaming).",
            fix="pass the output of 'mastofargate images push --json', or --mastodon-tag and --streaming-tag",
        )
    return Tags(found["mastodon"], found["streaming"], found.get("backup", ""))


def settle_backup_tag(target: Target, tags: Tags) -> Tags:
    """`tags` with the backup image's tag: the one given (--images-json, --build) or deployed, else the newest
    image `mastofargate images push` put into the backup repository (it pushes all three images)."""
    if tags.backup:
        return tags
    from mastofargate.stack.registry import repository_names

    repo = repository_names(target.name)["backup"]
    newest: tuple[Any, str] | None = None
    try:
        with aws.aws_errors(f"listing the images of {repo}"):
            for page in (
                target.client("ecr")
                .get_paginator("describe_images")
                .paginate(repositoryName=repo, filter={"tagStatus": "TAGGED"})
            ):
                for detail in page.get("imageDetails", []):
                    for tag in detail.get("imageTags", []):
                        if newest is None or detail["imagePushedAt"] > newest[0]:
                            newest = (detail["imagePushedAt"], tag)
    except NotFound:
        newest = None
    if newest is None:
        raise UsageError(
            f"The backup image is not in {repo}. Nothing was rolled out.",
            why="the backup tasks (and a Postgres task) run it; 'mastofargate images push' builds and pushes it "
            "with the Mastodon images",
            fix="run 'mastofargate images push' (or 'mastofargate deploy --build'), then deploy again",
        )
    return Tags(tags.mastodon, tags.streaming, newest[1])


def check_images(target: Target, tags: Tags) -> None:
    """Every tag must be in the stack's ECR repositories before anything rolls."""
    from mastofargate.stack.registry import repository_names

    repos = repository_names(target.name)
    ecr = target.client("ecr")
    missing = []
    wanted = [("mastodon", tags.mastodon), ("streaming", tags.streaming)] + (
        [("backup", tags.backup)] if tags.backup else []
    )
    for image, tag in wanted:
        try:
            with aws.aws_errors(f"looking up image {repos[image]}:{tag}"):
                ecr.describe_images(repositoryName=repos[image], imageIds=[{"imageTag": tag}])
        except NotFound:
            missing.append(f"{repos[image]}:{tag}")
    if missing:
        raise UsageError(
            f"Image(s) not in ECR: {', '.join(missing)}. Nothing was rolled out.",
            why="the services can only run images that are in the stack's repositories",
            fix="push them ('mastofargate images push', or 'mastofargate deploy --build'), or pass the tags "
            "'mastofargate images push' printed",
        )


def warn_version_mismatch(run: Run, tags: Tags) -> None:
    version = run.target.config.deployment.mastodon_version
    for image, tag in (("mastodon", tags.mastodon), ("streaming", tags.streaming)):
        if not tag.startswith(version):
            run.out.warn(f"the {image} tag {tag} does not start with the pinned version {version}")


def require_confirmation_possible(*, yes: bool, dry_run: bool, interactive: bool, verb: str = "deploy") -> None:
    """Fail before touching anything when a confirmation would be needed and nobody can give it."""
    if not yes and not dry_run and not interactive:
        raise UsageError(
            f"Refusing to {verb} without confirmation: stdin is not a terminal. Nothing was changed.",
            why="a plan must be confirmed before it is applied, and there is nobody to ask",
            fix=f"review 'mastofargate plan', then run 'mastofargate {verb} --yes' (or --dry-run to only plan)",
        )
