"""`mastofargate deploy`, step by step: preflight, secrets, plan, confirm, migrate and roll out, report.

Each step is one function; `deploy()` reads as the list of them. The steps lean on stacks.py (change
sets and CloudFormation's verdict), bootstrap.py (secrets) and ecs.py (one-off tasks and rollouts).

Safety rules this module keeps (DESIGN invariants):
  - nothing changes before the plan is shown and confirmed (--yes in CI; never a prompt without a TTY),
    and nothing at all when LOCAL_DOMAIN would change (1) or a data-bearing resource would be replaced (3);
  - an upgrade runs the pre-deployment migrations on the NEW image before the services roll; if they
    fail, the app change set is dropped and the old version keeps serving (4);
  - every failure says what failed, why (ResourceStatusReason, service events, stoppedReason, exit code,
    log lines) and the next command.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mastofargate import aws
from mastofargate.deploy import bootstrap, stacks
from mastofargate.deploy.target import Target
from mastofargate.errors import EXIT_FAILED, EXIT_USAGE, MastofargateError, UsageError

if TYPE_CHECKING:
    from mastofargate.config import Config
    from mastofargate.deploy.ecs import ServiceProgress, TaskResult

DEFAULT_TIMEOUT = 3600.0
HISTORY_KEEP = 10
PREPARE = ["bundle", "exec", "rails", "db:prepare"]
JOB_COMMANDS = {
    "migrate-pre": "pre-deployment migrations: SKIP_POST_DEPLOYMENT_MIGRATIONS=true rails db:migrate",
    "migrate": "post-deployment migrations: rails db:migrate",
}
LOG_LINES_SHOWN = 15


SMTP_PASSWORD_ENV = "MASTOFARGATE_SMTP_PASSWORD"


def poll_seconds() -> float:
    """How often ECS and CloudFormation are polled (5 s; emulators and tests set MASTOFARGATE_POLL_SECONDS)."""
    try:
        return max(0.05, float(os.environ.get("MASTOFARGATE_POLL_SECONDS", "5")))
    except ValueError:
        return 5.0


@dataclass
class Options:
    """What the verbs pass in (flags of deploy, plan and rollback)."""

    config_path: Path = Path("mastofargate.toml")
    mastodon_tag: str | None = None
    streaming_tag: str | None = None
    build: bool = False
    images_json: Path | None = None
    yes: bool = False
    dry_run: bool = False
    allow_data_replacement: bool = False
    admin: bool = True
    admin_username: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    no_wait: bool = False
    data_only: bool = False
    skip_assets: bool = False
    rollback: bool = False  # skip migrations (they are not reverted; older code runs on the newer schema)


@dataclass(frozen=True)
class Tags:
    mastodon: str
    streaming: str

    def describe(self) -> str:
        return f"mastodon {self.mastodon}, streaming {self.streaming}"


@dataclass
class State:
    """What preflight found on AWS."""

    data: dict[str, Any] | None
    app: dict[str, Any] | None
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
        return not self.app_exists or stacks.parameters(self.app).get("ServicesEnabled") == "false"


@dataclass
class Plans:
    data: stacks.Plan
    app: stacks.Plan
    secrets: bootstrap.SecretsReport | None
    app_params: dict[str, str] = field(default_factory=dict)
    templates: dict[str, Any] | None = None  # the troposphere templates (for the cost estimate)

    def all(self) -> list[stacks.Plan]:
        return [self.data, self.app]


@dataclass
class Outcome:
    changed: bool
    url: str = ""
    tags: Tags | None = None
    version: str = ""
    elapsed: float = 0.0
    notes: list[str] = field(default_factory=list)


# --- output --------------------------------------------------------------------------------------------


def out(text: str = "") -> None:
    from mastofargate.ui import console

    console().print(text, markup=False, highlight=False)


class Reporter:
    """Progress: on a terminal a Rich live table of services under scrolling events; in CI (or when
    stdout is not a terminal) one plain line per event."""

    def __init__(self) -> None:
        from mastofargate.ui import is_ci

        self.ci = is_ci()
        self._live: Any = None
        self._services: dict[str, ServiceProgress] = {}
        self._last_line: dict[str, str] = {}

    def step(self, text: str) -> None:
        self._print(f"==> {text}")

    def event(self, event: stacks.StackEvent, stack: str) -> None:
        self._print(f"  {stack}: {event.line()}")

    def task_line(self, job: str, line: str) -> None:
        self._print(f"  {job} | {line}")

    def service(self, p: ServiceProgress) -> None:
        self._services[p.service] = p
        line = (
            f"  {p.service}: {p.running}/{p.desired} running, {p.pending} pending, {p.failed_tasks} failed "
            f"({p.rollout_state})"
        )
        if self._live is not None:
            self._live.update(self._table())
        elif self._last_line.get(p.service) != line:
            self._last_line[p.service] = line
            out(line)

    def _print(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            out(text)

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title="services", expand=False)
        for col in ("service", "desired", "running", "pending", "failed", "rollout"):
            table.add_column(col)
        for p in self._services.values():
            table.add_row(
                p.service, str(p.desired), str(p.running), str(p.pending), str(p.failed_tasks), p.rollout_state
            )
        return table

    @contextmanager
    def live(self) -> Iterator[None]:
        if self.ci:
            yield
            return
        from rich.live import Live

        from mastofargate.ui import console

        with Live(self._table(), console=console(), refresh_per_second=4, transient=False) as live:
            self._live = live
            try:
                yield
            finally:
                self._live = None


# --- 0: may we ask? ------------------------------------------------------------------------------------


def require_confirmation_possible(opts: Options, verb: str = "deploy") -> None:
    """Fail before touching anything when a confirmation would be needed and nobody can give it."""
    from mastofargate.ui import stdin_is_tty

    if not opts.yes and not opts.dry_run and not stdin_is_tty():
        raise UsageError(
            f"Refusing to {verb} without confirmation: stdin is not a terminal. Nothing was changed.",
            why="a plan must be confirmed before it is applied, and there is nobody to ask",
            fix=f"review 'mastofargate plan', then run 'mastofargate {verb} --yes' (or --dry-run to only plan)",
        )


# --- 1: preflight --------------------------------------------------------------------------------------


def preflight(target: Target, opts: Options, reporter: Reporter) -> State:
    """Credentials, certificate or zone, LOCAL_DOMAIN unchanged, image tags (checked in ECR when the
    repositories exist). Changes nothing."""
    reporter.step(f"Preflight: {target.config.server.domain} in {target.region}")
    account = aws.account_id(target.region)
    out(f"  AWS account {account}, region {target.region}")
    check_certificate(target)
    data = stacks.describe(target, target.data_stack)
    app = stacks.describe(target, target.app_stack)
    _refuse_broken_data_stack(target, data)
    check_local_domain(target, data, app)
    deployed = deployed_tags(app)
    tags = requested_tags(target, opts, deployed)
    if tags is None and not (opts.build or opts.data_only or opts.dry_run):
        raise UsageError(
            "No image tags to deploy (nothing is deployed yet). Nothing was changed.",
            why="the services need images in the stack's ECR repositories, which the data stack creates",
            fix="first install: 'mastofargate deploy --data-only' (creates the data stack and the repositories), "
            "'mastofargate images push', then 'mastofargate deploy --mastodon-tag T --streaming-tag T' (or "
            "--images-json, or --build to do both)",
        )
    state = State(data, app, tags, deployed)
    if tags is not None and stacks.exists(data):
        check_images(target, tags)
        state.images_verified = True
    if tags is not None:
        out(f"  images: {tags.describe()}" + (f" (deployed: {deployed.describe()})" if deployed else ""))
        warn_version_mismatch(target, tags)
    return state


def check_certificate(target: Target) -> None:
    from botocore.exceptions import ClientError

    cfg = target.config
    if cfg.aws.certificate_arn:
        with aws.aws_errors("reading the certificate"):
            try:
                cert = target.client("acm").describe_certificate(CertificateArn=cfg.aws.certificate_arn)["Certificate"]
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
                raise UsageError(
                    f"Certificate {cfg.aws.certificate_arn} does not exist.",
                    fix="request one in ACM for the web host, or set aws.hosted_zone_id instead",
                ) from None
        out(f"  certificate {cfg.aws.certificate_arn.rsplit('/', 1)[-1]}: {cert.get('Status', '?')}")
        return
    zone_id = str(cfg.aws.hosted_zone_id)
    with aws.aws_errors("reading the hosted zone"):
        try:
            zone = target.client("route53").get_hosted_zone(Id=zone_id)["HostedZone"]
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "NoSuchHostedZone":
                raise
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
    out(f"  hosted zone {zone_id} ({zone_name})")


def _refuse_broken_data_stack(target: Target, data: dict[str, Any] | None) -> None:
    if data is not None and data.get("StackStatus") == "ROLLBACK_COMPLETE":
        raise MastofargateError(
            f"Stack {target.data_stack} is in ROLLBACK_COMPLETE: its first creation failed and it holds nothing.",
            why="CloudFormation cannot update a stack whose creation was rolled back",
            fix=f"delete it (aws cloudformation delete-stack --stack-name {target.data_stack}), then deploy again",
            exit_code=EXIT_USAGE,
        )


def check_local_domain(target: Target, data: dict[str, Any] | None, app: dict[str, Any] | None) -> None:
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


def web_task_domains(target: Target) -> dict[str, str]:
    """family -> LOCAL_DOMAIN of the latest web task definition(s), where one exists."""
    from botocore.exceptions import ClientError

    found = {}
    for size in target.config.all_services:
        if size.role != "web":
            continue
        family = f"{target.name}-{size.name}"
        with aws.aws_errors(f"reading task definition {family}"):
            try:
                td = target.client("ecs").describe_task_definition(taskDefinition=family)["taskDefinition"]
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") in ("ClientException", "InvalidParameterException"):
                    continue
                raise
        for container in td.get("containerDefinitions", []):
            for env in container.get("environment", []):
                if env.get("name") == "LOCAL_DOMAIN":
                    found[family] = str(env.get("value"))
    return found


def deployed_tags(app: dict[str, Any] | None) -> Tags | None:
    params = stacks.parameters(app)
    if stacks.exists(app) and params.get("MastodonImageTag") and params.get("StreamingImageTag"):
        return Tags(params["MastodonImageTag"], params["StreamingImageTag"])
    return None


def requested_tags(target: Target, opts: Options, deployed: Tags | None) -> Tags | None:
    """Tags to deploy: flags, else --images-json, else what runs now. None when they can only be known
    after the data stack exists (--build on a first install, or nothing given yet)."""
    if opts.images_json is not None:
        tags = tags_from_images_json(opts.images_json)
        return Tags(opts.mastodon_tag or tags.mastodon, opts.streaming_tag or tags.streaming)
    if opts.build:
        if opts.mastodon_tag or opts.streaming_tag:
            raise UsageError("--build makes its own tags; leave out --mastodon-tag/--streaming-tag")
        images_module()  # fail now (nothing changed) when the image pipeline is not installed
        return None
    if opts.mastodon_tag or opts.streaming_tag:
        mastodon = opts.mastodon_tag or (deployed.mastodon if deployed else None)
        streaming = opts.streaming_tag or (deployed.streaming if deployed else None)
        if not mastodon or not streaming:
            raise UsageError(
                "Only one image tag was given and none is deployed yet.",
                fix="pass both --mastodon-tag and --streaming-tag (as printed by 'mastofargate images push')",
            )
        return Tags(mastodon, streaming)
    return deployed


def tags_from_images_json(path: Path) -> Tags:
    """Tags from `mastofargate images push --json` output: each image's entry may be a full reference
    (repo:tag), a bare tag, or an object with a tag/ref/image/uri field; a top-level "images" wraps it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"Cannot read image tags from {path}: {e}") from None
    if isinstance(data, dict) and "images" in data:
        data = data["images"]
    if isinstance(data, list):
        data = {str(item.get("name") or item.get("image")): item for item in data if isinstance(item, dict)}
    found: dict[str, str] = {}
    for image in ("mastodon", "streaming"):
        entry = data.get(image) if isinstance(data, dict) else None
        if isinstance(entry, dict):
            entry = entry.get("tag") or entry.get("ref") or entry.get("reference") or entry.get("uri")
        if isinstance(entry, str) and entry:
            found[image] = entry.rsplit(":", 1)[-1] if ":" in entry.rsplit("/", 1)[-1] else entry
    if set(found) != {"mastodon", "streaming"}:
        raise UsageError(
            f"{path} does not name both images (mastodon and streaming).",
            fix="pass the output of 'mastofargate images push --json', or --mastodon-tag and --streaming-tag",
        )
    return Tags(found["mastodon"], found["streaming"])


def images_module() -> Any:
    """The image pipeline (mastofargate.images), or a usage error when it is not installed."""
    import importlib

    try:
        return importlib.import_module("mastofargate.images")
    except ImportError:
        raise UsageError(
            "--build needs the image pipeline (mastofargate.images), which this installation lacks.",
            fix="build and push with your own pipeline, then pass --mastodon-tag/--streaming-tag",
        ) from None


def check_images(target: Target, tags: Tags) -> None:
    """Both tags must be in the stack's ECR repositories before anything rolls."""
    from botocore.exceptions import ClientError

    from mastofargate.stack.registry import repository_names

    repos = repository_names(target.name)
    ecr = target.client("ecr")
    missing = []
    for image, tag in (("mastodon", tags.mastodon), ("streaming", tags.streaming)):
        with aws.aws_errors(f"looking up image {repos[image]}:{tag}"):
            try:
                ecr.describe_images(repositoryName=repos[image], imageIds=[{"imageTag": tag}])
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") not in (
                    "ImageNotFoundException",
                    "RepositoryNotFoundException",
                ):
                    raise
                missing.append(f"{repos[image]}:{tag}")
    if missing:
        raise UsageError(
            f"Image(s) not in ECR: {', '.join(missing)}. Nothing was rolled out.",
            why="the services can only run images that are in the stack's repositories",
            fix="push them ('mastofargate images push', or 'mastofargate deploy --build'), or pass the tags "
            "'mastofargate images push' printed",
        )


def warn_version_mismatch(target: Target, tags: Tags) -> None:
    from mastofargate.ui import warn

    version = target.config.deployment.mastodon_version
    for image, tag in (("mastodon", tags.mastodon), ("streaming", tags.streaming)):
        if not tag.startswith(version):
            warn(f"the {image} tag {tag} does not start with the pinned version {version}")


# --- 2: secrets ----------------------------------------------------------------------------------------


def ensure_secrets(target: Target, opts: Options, reporter: Reporter) -> bootstrap.SecretsReport:
    reporter.step("Secrets")
    report = bootstrap.ensure_secrets(target, dry_run=opts.dry_run)
    for kind, action in report.actions.items():
        out(f"  {target.secret_names[kind]}: {action}")
    if target.config.smtp.login and not opts.dry_run:
        store_smtp_password(target)
    return report


def store_smtp_password(target: Target) -> None:
    """SMTP needs a password Mastodon reads from the app secret: taken from MASTOFARGATE_SMTP_PASSWORD (never
    from the config file), stored once, replaced when the variable holds a new one."""
    name = target.secret_names["app"]
    password = os.environ.get(SMTP_PASSWORD_ENV)
    if password:
        changed = bootstrap.set_operator_value(target, "SMTP_PASSWORD", password)
        out(f"  {name}: SMTP_PASSWORD {'stored' if changed else 'unchanged'}")
    elif not bootstrap.has_key(target, "app", "SMTP_PASSWORD"):
        raise UsageError(
            f"smtp.login is set but {name} holds no SMTP password; nothing was deployed.",
            why="the tasks would fail to start without SMTP_PASSWORD",
            fix=f"export {SMTP_PASSWORD_ENV}='...' and run the command again (it is stored in Secrets Manager, "
            "never printed)",
        )


# --- 3: plan -------------------------------------------------------------------------------------------


def app_parameters(arns: bootstrap.SecretArns | None, tags: Tags | None, services_enabled: bool) -> dict[str, str]:
    return {
        "MastodonImageTag": tags.mastodon if tags else "(decided after the data stack)",
        "StreamingImageTag": tags.streaming if tags else "(decided after the data stack)",
        "AppSecretArn": arns.app if arns else "(created by deploy)",
        "DatabaseSecretArn": arns.database if arns else "(created by deploy)",
        "RedisSecretArn": arns.redis if arns else "(created by deploy)",
        "ServicesEnabled": "true" if services_enabled else "false",
    }


def plan(
    target: Target, state: State, secrets: bootstrap.SecretsReport | None, opts: Options, reporter: Reporter
) -> Plans:
    """Change sets for both stacks (the data stack first). A stack that does not exist yet is planned
    from its template; change sets are made only when something will be executed."""
    from mastofargate.stack import build

    reporter.step("Plan")
    built = build(target.config)
    templates = {k: json.loads(stacks.render(t)) for k, t in built.items()}
    arns = secrets.arns if secrets and secrets.arns.app else bootstrap.existing_arns(target)
    if state.data_exists:
        data_plan = stacks.create_change_set(target, target.data_stack, templates["data"], {}, kind="UPDATE")
    elif opts.dry_run:
        data_plan = stacks.template_plan(target.data_stack, templates["data"], {})
    else:
        data_plan = stacks.create_change_set(target, target.data_stack, templates["data"], {}, kind="CREATE")
    params = app_parameters(arns, state.tags, services_enabled=not state.installing)
    app_plan = plan_app(target, state, templates["app"], params, data_plan)
    return Plans(data_plan, app_plan, secrets, params, built)


def plan_app(
    target: Target, state: State, template: dict[str, Any], params: dict[str, str], data_plan: stacks.Plan
) -> stacks.Plan:
    if not state.app_exists:
        note = "created after the data stack" if not state.data_exists else "new stack"
        return stacks.template_plan(target.app_stack, template, params, note)
    if state.tags is None:
        return stacks.deferred_plan(target.app_stack, template, params, "planned once the images are built")
    bucket = target.stack_outputs(target.data_stack).get("DeployBucketName")
    try:
        return stacks.create_change_set(target, target.app_stack, template, params, kind="UPDATE", bucket=bucket)
    except MastofargateError as e:
        if data_plan.has_changes and "export" in (e.why or "").lower():
            note = "planned after the data stack update (it uses new data-stack outputs)"
            return stacks.deferred_plan(target.app_stack, template, params, note)
        raise


def show_plan(target: Target, state: State, plans: Plans) -> None:
    for p in plans.all():
        for line in p.summary():
            out(line)
    if state.tags and state.deployed_tags and state.tags != state.deployed_tags:
        out(f"images: {state.deployed_tags.describe()}  ->  {state.tags.describe()}")
    line = cost_line(target.config, plans.templates)
    if line:
        out(line)


def cost_line(config: Config, templates: dict[str, Any] | None = None) -> str | None:
    """The one-line monthly estimate, when the cost module is installed (optional here; never fatal)."""
    try:
        from mastofargate import cost  # type: ignore[attr-defined]
    except ImportError:
        return None
    try:
        if templates is not None and hasattr(cost, "estimate") and hasattr(cost, "summary_line"):
            return str(cost.summary_line(cost.estimate(config, templates), config))
        if hasattr(cost, "summary_line"):
            return str(cost.summary_line(config))
    except Exception:  # an estimate must never break a deploy
        return None
    return None


def nothing_to_do(state: State, plans: Plans) -> bool:
    secrets_changed = plans.secrets is not None and plans.secrets.changed
    return not (
        plans.data.has_changes or plans.app.has_changes or plans.app.deferred or secrets_changed or state.installing
    )


def discard(target: Target, plans: Plans) -> None:
    for p in plans.all():
        stacks.discard(target, p)


# --- 4: confirm ----------------------------------------------------------------------------------------


def confirm(target: Target, plans: Plans, opts: Options) -> None:
    if opts.yes:
        return
    import typer

    if not typer.confirm("Apply this plan?", default=False):
        discard(target, plans)
        raise MastofargateError("Cancelled; nothing was deployed.", exit_code=EXIT_FAILED)


# --- 5/6: apply ----------------------------------------------------------------------------------------


def apply_data(target: Target, plan_: stacks.Plan, opts: Options, reporter: Reporter) -> bool:
    """Create or update the data stack; protect it from deletion once created. True if it changed."""
    if not plan_.has_changes:
        return False
    reporter.step(f"{'Creating' if plan_.kind == 'CREATE' else 'Updating'} {target.data_stack}")
    stacks.execute(target, plan_, timeout=opts.timeout, on_event=lambda e: reporter.event(e, target.data_stack))
    if plan_.kind == "CREATE":
        stacks.set_termination_protection(target, target.data_stack, True)
        out(f"  termination protection enabled on {target.data_stack}")
    target.stack_outputs(target.data_stack, refresh=True)
    return True


def fill_redis_url(target: Target) -> None:
    if target.config.deployment.cache != "elasticache":
        return
    host = target.stack_outputs(target.data_stack).get("CacheHost")
    if host:
        action = bootstrap.ensure_redis_url(target, host)
        if action != "unchanged":
            out(f"  {target.secret_names['redis']}: {action}")


def settle_images(target: Target, state: State, opts: Options, reporter: Reporter) -> Tags:
    """Tags to deploy, now that the repositories exist: built (--build) or checked in ECR."""
    if state.tags is None and opts.build:
        reporter.step("Building and pushing images")
        state.tags = build_images(target, opts)
    if state.tags is None:
        raise UsageError(
            f"The data stack {target.data_stack} is ready (its image repositories exist), but no image tags "
            "were given.",
            fix="push the images ('mastofargate images push'), then run 'mastofargate deploy' again with "
            "--mastodon-tag/--streaming-tag or --images-json (or use --build)",
        )
    if not state.images_verified:
        check_images(target, state.tags)
        state.images_verified = True
    return state.tags


def build_images(target: Target, opts: Options) -> Tags:
    """Run the image pipeline (`images push`: build what is missing, push it) and take its tags."""
    module = images_module()
    from mastofargate.images.context import images_dir_for
    from mastofargate.images.progress import make_display

    request = module.Request(config=target.config, images_dir=images_dir_for(opts.config_path))
    with make_display(to_stderr=False) as display:
        results = module.push_images(request, display)
    tags = {r.image: r.tag for r in results}
    if "mastodon" not in tags or "streaming" not in tags:
        raise MastofargateError("The image pipeline did not return both images (mastodon and streaming).")
    return Tags(tags["mastodon"], tags["streaming"])


def export_assets(target: Target, image: str, opts: Options, reporter: Reporter) -> None:
    """Upload the new image's compiled assets to the media bucket before the rollout (CDN_HOST serves
    them), when the image pipeline offers it and a Docker engine runs; skipped with a warning otherwise."""
    from mastofargate.ui import warn

    if opts.skip_assets:
        out("  asset export skipped (--skip-assets)")
        return
    try:
        import importlib

        export = getattr(importlib.import_module("mastofargate.images"), "export_assets", None)
    except ImportError:
        export = None
    if export is None:
        warn("asset export skipped: the image pipeline (mastofargate.images.export_assets) is not installed")
        return
    if not docker_available():
        warn("asset export skipped: no Docker engine is reachable; upload public/packs and public/assets yourself")
        return
    bucket = target.stack_outputs(target.data_stack).get("MediaBucketName", "")
    reporter.step(f"Exporting assets of {image} to s3://{bucket}/assets")
    result = export(target.config, image, bucket)
    out(f"  {getattr(result, 'uploaded', '?')} files uploaded, {getattr(result, 'skipped', '?')} already there")


def docker_available() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        return True
    except Exception:
        return False


def image_refs(target: Target, tags: Tags) -> tuple[str, str]:
    out_ = target.stack_outputs(target.data_stack)
    return f"{out_['MastodonRepositoryUri']}:{tags.mastodon}", f"{out_['StreamingRepositoryUri']}:{tags.streaming}"


def app_change_set(
    target: Target, params: dict[str, str], opts: Options, reporter: Reporter, *, show: bool = True
) -> stacks.Plan:
    """A fresh change set of the app stack with these parameters (CREATE when it does not exist)."""
    from mastofargate.stack import build

    template = json.loads(stacks.render(build(target.config)["app"]))
    kind = "UPDATE" if stacks.exists(stacks.describe(target, target.app_stack)) else "CREATE"
    bucket = target.stack_outputs(target.data_stack).get("DeployBucketName")
    p = stacks.create_change_set(target, target.app_stack, template, params, kind=kind, bucket=bucket)  # type: ignore[arg-type]
    for line in p.summary() if show else p.summary()[:1]:
        out(line)
    stacks.refuse_data_loss([p], opts.allow_data_replacement)
    return p


def execute_app(target: Target, plan_: stacks.Plan, opts: Options, reporter: Reporter) -> None:
    try:
        stacks.execute(target, plan_, timeout=opts.timeout, on_event=lambda e: reporter.event(e, target.app_stack))
    except MastofargateError as e:
        raise explain_service_failure(target, plan_, e) from None


def explain_service_failure(target: Target, plan_: stacks.Plan, error: MastofargateError) -> MastofargateError:
    """When an ECS service made the stack fail, add the service's own story (events, stopped tasks)."""
    match = re.search(r" at (\w+) \(", error.what)
    if not match:
        return error
    resource = (plan_.template.get("Resources") or {}).get(match.group(1)) or {}
    if resource.get("Type") != "AWS::ECS::Service":
        return error
    service = str((resource.get("Properties") or {}).get("ServiceName", ""))
    from mastofargate.deploy.ecs import watch_services

    try:
        result = watch_services(target, [service], timeout=0, poll=poll_seconds())[0]
    except MastofargateError:
        return error
    details = rollout_details(result)
    return MastofargateError(error.what, why="; ".join([error.why, *details]), fix=error.fix, exit_code=error.exit_code)


def primary_deployments(target: Target, services: list[str]) -> dict[str, dict[str, Any]]:
    """service -> its PRIMARY deployment (id, desiredCount, taskDefinition), for the services that exist."""
    from mastofargate.deploy import ecs

    found: dict[str, dict[str, Any]] = {}
    for name, svc in ecs.describe_services(target, services).items():
        primary = ecs.primary_deployment(svc)
        found[name] = {
            "id": primary.get("id", ""),
            "desired": svc.get("desiredCount", 0),
            "taskDefinition": primary.get("taskDefinition", svc.get("taskDefinition", "")),
        }
    return found


def watch_rollout(
    target: Target,
    before: dict[str, dict[str, Any]],
    opts: Options,
    reporter: Reporter,
    only: list[str] | None = None,
) -> list[str]:
    """Wait for the services the stack update touched: a new deployment must reach COMPLETED (the
    circuit breaker's FAILED stops the deploy); a count change must reach running == desired."""
    from mastofargate.deploy.ecs import watch_services

    names = only or service_names(target)
    after = primary_deployments(target, names)
    rolling = {n: before[n]["id"] for n in names if n in after and n in before and after[n]["id"] != before[n]["id"]}
    new = [n for n in names if n in after and n not in before]
    scaling = [
        n
        for n in names
        if n in after and n in before and n not in rolling and after[n]["desired"] != before[n]["desired"]
    ]
    watched = [*rolling, *new, *scaling]
    if not watched:
        return []
    reporter.step(f"Rolling out: {', '.join(watched)}")
    deadline = time.monotonic() + opts.timeout
    latest: dict[str, ServiceProgress] = {}

    def progress(p: ServiceProgress) -> None:
        latest[p.service] = p
        reporter.service(p)

    with reporter.live():
        results = watch_services(
            target, watched, timeout=opts.timeout, poll=poll_seconds(), since_deployment=rolling, on_progress=progress
        )
        check_rollout(target, results)
        waiting = [n for n in watched if latest.get(n) and latest[n].running < latest[n].desired]
        while waiting and time.monotonic() < deadline:
            time.sleep(poll_seconds())
            check_rollout(target, watch_services(target, waiting, timeout=0, poll=poll_seconds(), on_progress=progress))
            waiting = [n for n in waiting if latest[n].running < latest[n].desired]
    if waiting:
        raise MastofargateError(
            f"Gave up waiting after {opts.timeout:.0f} s: {', '.join(waiting)} not yet at the desired task count.",
            why="; ".join(f"{n}: {latest[n].running}/{latest[n].desired} running" for n in waiting),
            fix="see 'mastofargate status' and 'mastofargate logs SERVICE'; run deploy again when they are up",
            exit_code=3,
        )
    return watched


def check_rollout(target: Target, results: list[Any]) -> None:
    failed = [r for r in results if r.state == "FAILED"]
    stuck = [r for r in results if r.state == "IN_PROGRESS"]
    if failed:
        r = failed[0]
        raise MastofargateError(
            f"The rollout of {r.service} failed; ECS's circuit breaker rolled it back to the previous version.",
            why="; ".join(rollout_details(r)),
            fix=f"read 'mastofargate logs {r.service}', fix the cause (image, config, memory), then run "
            "'mastofargate deploy' again (or 'mastofargate rollback')",
            exit_code=EXIT_FAILED,
        )
    if stuck:
        r = stuck[0]
        raise MastofargateError(
            f"Gave up waiting for the rollout of {', '.join(s.service for s in stuck)}; it is still in progress.",
            why="; ".join(rollout_details(r)),
            fix="watch it with 'mastofargate status'; ECS keeps going (and its circuit breaker rolls back a "
            "broken version by itself)",
            exit_code=3,
        )


def rollout_details(result: Any) -> list[str]:
    details = [result.reason] if result.reason else []
    for t in result.stopped[:2]:
        code = f", exit code {t.exit_code}" if t.exit_code is not None else ""
        reason = getattr(t, "summary", None) or t.stopped_reason
        details.append(f"stopped task {t.task_arn.rsplit('/', 1)[-1][:12]}: {reason}{code}")
    details += [f"event {e}" for e in result.events[:3]]
    return details


def service_names(target: Target) -> list[str]:
    return [s.name for s in target.config.all_services]


def run_job(
    target: Target,
    job: str,
    command: list[str] | None,
    opts: Options,
    reporter: Reporter,
    *,
    image: str | None = None,
    show_lines: bool = True,
) -> TaskResult:
    from mastofargate.deploy.ecs import run_one_off

    family = f"{target.name}-{job}"
    what = " ".join(command) if command else JOB_COMMANDS.get(job, "its own command")
    reporter.step(f"Running {job} ({what})" + (f" on {image.rsplit('/', 1)[-1]}" if image else ""))
    return run_one_off(
        target,
        family,
        command,
        image=image,
        timeout=opts.timeout,
        poll=poll_seconds(),
        on_line=(lambda line: reporter.task_line(job, line)) if show_lines else None,
    )


def task_failure(job: str, result: TaskResult, what: str, fix: str, hide: str | None = None) -> MastofargateError:
    lines = [ln for ln in result.log_tail if not (hide and hide in ln.lower())][-LOG_LINES_SHOWN:]
    tail = ("\nlast log lines:\n  " + "\n  ".join(lines)) if lines else "\n(no log lines)"
    return MastofargateError(
        what,
        why=f"task {result.task_arn.rsplit('/', 1)[-1]} stopped: {result.stopped_reason or '?'}, exit code "
        f"{result.exit_code}{tail}",
        fix=fix,
        exit_code=EXIT_FAILED,
    )


def install(target: Target, state: State, plans: Plans, tags: Tags, opts: Options, reporter: Reporter) -> Outcome:
    """First install: app stack with services at zero, db:prepare, the admin account, then scale up."""
    params = {**plans.app_params, "MastodonImageTag": tags.mastodon, "StreamingImageTag": tags.streaming}
    arns = bootstrap.existing_arns(target)
    assert arns is not None, "secrets exist after bootstrap"
    params.update(AppSecretArn=arns.app, DatabaseSecretArn=arns.database, RedisSecretArn=arns.redis)
    reporter.step(f"{'Creating' if not state.app_exists else 'Updating'} {target.app_stack} with services at zero")
    before = primary_deployments(target, service_names(target))
    execute_app(
        target,
        app_change_set(target, {**params, "ServicesEnabled": "false"}, opts, reporter, show=False),
        opts,
        reporter,
    )
    data_tasks = [s.name for s in target.config.all_services if s.role in ("postgres", "redis")]
    if data_tasks:
        watch_rollout(target, before, opts, reporter, only=data_tasks)
    result = run_job(target, "migrate", PREPARE, opts, reporter)
    if not result.ok:
        raise task_failure(
            "migrate",
            result,
            "The database could not be prepared (rails db:prepare failed); the services stay at zero.",
            "read the log lines above ('mastofargate logs migrate' has all), fix the cause, run 'mastofargate deploy'",
        )
    notes = []
    if opts.admin:
        notes += create_admin(target, opts, reporter)
    reporter.step("Starting the services")
    before = primary_deployments(target, service_names(target))
    execute_app(target, app_change_set(target, {**params, "ServicesEnabled": "true"}, opts, reporter), opts, reporter)
    if not opts.no_wait:
        watch_rollout(target, before, opts, reporter)
    return Outcome(True, tags=tags, notes=notes)


def admin_username(target: Target, opts: Options) -> str:
    if opts.admin_username:
        if not re.fullmatch(r"[A-Za-z0-9_]{1,30}", opts.admin_username):
            raise UsageError(f"{opts.admin_username!r} is not a Mastodon username; allowed: letters, digits, _")
        return opts.admin_username
    local = target.config.server.admin_email.split("@", 1)[0].lower()
    name = re.sub(r"[^a-z0-9_]", "_", local).strip("_")[:30]
    return name or "admin"


def create_admin(target: Target, opts: Options, reporter: Reporter) -> list[str]:
    """The Owner account. tootctl prints its password to stdout, so it is shown here once, and it also sits in
    the tootctl job's log group (KMS-encrypted, readable only with the account's permissions, expiring with
    logs.retention_days): the message says to change it after the first login."""
    from mastofargate.ui import warn

    user = admin_username(target, opts)
    email = target.config.server.admin_email
    create = ["tootctl", "accounts", "create", user, "--email", email, "--confirmed", "--role", "Owner"]
    result = run_job(target, "tootctl", create, opts, reporter, show_lines=False)
    password = next((ln.split("New password:", 1)[1].strip() for ln in result.log_tail if "New password:" in ln), "")
    if not result.ok or not password:
        taken = any("taken" in ln.lower() for ln in result.log_tail)
        if taken:
            out(f"  @{user} exists already; left as it is")
            return [f"admin account @{user} already existed"]
        warn(
            f"the admin account @{user} was not created (exit code {result.exit_code}); create it later with "
            f"'mastofargate tootctl accounts create {user} --email {email} --confirmed --role Owner'"
        )
        return []
    approve = run_job(target, "tootctl", ["tootctl", "accounts", "modify", user, "--approve"], opts, reporter)
    if not approve.ok:
        warn(f"approving @{user} failed; run 'mastofargate tootctl accounts modify {user} --approve'")
    from mastofargate.ui import console

    console().print(
        f"\n  Admin account @{user} <{email}> (Owner). Password, shown only now — store it:\n\n      {password}\n\n"
        "  Change it after the first login: tootctl also wrote it to the tootctl job's log (encrypted, expires "
        f"after {target.config.logs.retention_days} days).\n",
        markup=False,
        highlight=False,
    )
    return [f"admin account @{user} created"]


def upgrade(target: Target, state: State, plans: Plans, tags: Tags, opts: Options, reporter: Reporter) -> Outcome:
    """An update of a running server: pre-deployment migrations on the new image, rollout, post-deployment
    migrations. Only the rollout step runs when the images are unchanged."""
    from mastofargate.ui import warn

    changed_images = state.deployed_tags != tags
    app_plan = plans.app
    if app_plan.deferred:
        params = {**plans.app_params, "MastodonImageTag": tags.mastodon, "StreamingImageTag": tags.streaming}
        app_plan = app_change_set(target, params, opts, reporter)
    if not app_plan.has_changes:
        return Outcome(False, tags=tags)
    new_image, _ = image_refs(target, tags)
    if changed_images and opts.rollback:
        warn("rollback: migrations are not reverted; the older version runs on the newer database schema")
    if changed_images and not opts.rollback:
        result = run_job(target, "migrate-pre", None, opts, reporter, image=new_image)
        if not result.ok:
            stacks.discard(target, app_plan)
            raise task_failure(
                "migrate-pre",
                result,
                "Pre-deployment migrations failed on the new image; nothing was rolled out and the old version "
                f"({state.deployed_tags.describe() if state.deployed_tags else '?'}) is still serving.",
                "read the log lines ('mastofargate logs migrate-pre'), fix the cause, then run 'mastofargate deploy' "
                "again",
            )
    reporter.step(f"Updating {target.app_stack}")
    before = primary_deployments(target, service_names(target))
    if opts.no_wait:
        with aws.aws_errors(f"executing the change set of {target.app_stack}"):
            target.client("cloudformation").execute_change_set(ChangeSetName=app_plan.change_set_id)
        out("  rollout started (--no-wait): follow it with 'mastofargate status'")
        if changed_images and not opts.rollback:
            warn(
                "post-deployment migrations not run (--no-wait): when the rollout is done, run "
                "'mastofargate run -- bundle exec rails db:migrate'"
            )
        return Outcome(True, tags=tags, notes=["rollout started, not watched (--no-wait)"])
    execute_app(target, app_plan, opts, reporter)
    watch_rollout(target, before, opts, reporter)
    if changed_images and not opts.rollback:
        result = run_job(target, "migrate", None, opts, reporter)
        if not result.ok:
            raise task_failure(
                "migrate",
                result,
                "Post-deployment migrations failed; the new version is serving.",
                "read the log lines ('mastofargate logs migrate'), fix the cause, then run "
                "'mastofargate run -- bundle exec rails db:migrate'",
            )
    return Outcome(True, tags=tags)


# --- history (for rollback) ----------------------------------------------------------------------------


def history_parameter(target: Target) -> str:
    return f"/mastofargate/{target.name}/deploy-history"


def read_history(target: Target) -> list[dict[str, str]]:
    """Recent successful deploys, newest first (an SSM parameter: stack tags would touch every resource)."""
    from botocore.exceptions import ClientError

    with aws.aws_errors("reading the deploy history"):
        try:
            value = target.client("ssm").get_parameter(Name=history_parameter(target))["Parameter"]["Value"]
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ParameterNotFound":
                return []
            raise
    try:
        entries = json.loads(value)
    except json.JSONDecodeError:
        return []
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def record_history(target: Target, tags: Tags) -> None:
    entries = read_history(target)
    if entries and entries[0].get("mastodon") == tags.mastodon and entries[0].get("streaming") == tags.streaming:
        return
    entry = {
        "mastodon": tags.mastodon,
        "streaming": tags.streaming,
        "version": target.config.deployment.mastodon_version,
        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    with aws.aws_errors("writing the deploy history"):
        target.client("ssm").put_parameter(
            Name=history_parameter(target),
            Value=json.dumps([entry, *entries][:HISTORY_KEEP]),
            Type="String",
            Overwrite=True,
            Description="mastofargate: image tags of recent deploys (for rollback)",
        )


def previous_tags(target: Target, current: Tags | None) -> Tags:
    for entry in read_history(target):
        tags = Tags(entry.get("mastodon", ""), entry.get("streaming", ""))
        if tags.mastodon and tags.streaming and tags != current:
            return tags
    raise UsageError(
        "There is no earlier deploy to roll back to.",
        why=f"the deploy history ({history_parameter(target)}) has no image tags other than the running ones",
        fix="deploy the tags you want with 'mastofargate deploy --mastodon-tag ... --streaming-tag ...'",
    )


# --- the whole thing -----------------------------------------------------------------------------------


def deploy(config: Config, opts: Options) -> Outcome:
    """Preflight, secrets, plan, confirm, apply (install or upgrade), report. Raises MastofargateError with
    the exit code of the failure; returns the outcome for the report."""
    started = time.monotonic()
    target = Target(config)
    reporter = Reporter()
    require_confirmation_possible(opts)
    state = preflight(target, opts, reporter)
    secrets = ensure_secrets(target, opts, reporter)
    plans = plan(target, state, secrets, opts, reporter)
    show_plan(target, state, plans)
    if nothing_to_do(state, plans):
        out("No changes: the deployed server matches the config and images.")
        return Outcome(False, url=target.stack_outputs(target.app_stack).get("Url", ""), tags=state.tags)
    try:
        stacks.refuse_data_loss(plans.all(), opts.allow_data_replacement)
    except MastofargateError:
        discard(target, plans)
        raise
    if opts.dry_run:
        discard(target, plans)
        out("Dry run: nothing was changed.")
        return Outcome(False, tags=state.tags)
    confirm(target, plans, opts)
    if opts.data_only:
        stacks.discard(target, plans.app)
    data_created = apply_data(target, plans.data, opts, reporter)
    fill_redis_url(target)
    if opts.data_only:
        out(
            f"Data stack {target.data_stack} is {'ready' if data_created else 'unchanged'} (--data-only); its image "
            "repositories exist. Next: push the images, then deploy with their tags."
        )
        return Outcome(False)
    tags = settle_images(target, state, opts, reporter)
    if state.installing or state.deployed_tags != tags:
        export_assets(target, image_refs(target, tags)[0], opts, reporter)
    if state.installing:
        outcome = install(target, state, plans, tags, opts, reporter)
    else:
        outcome = upgrade(target, state, plans, tags, opts, reporter)
        outcome.changed = outcome.changed or data_created or (secrets.changed if secrets else False)
    if outcome.changed and not opts.no_wait:
        record_history(target, tags)
    outcome.url = target.stack_outputs(target.app_stack, refresh=True).get("Url", "")
    outcome.version = config.deployment.mastodon_version
    outcome.elapsed = time.monotonic() - started
    return outcome


def rollback(config: Config, opts: Options) -> Outcome:
    """Deploy the image tags of the previous successful deploy, migrations skipped."""
    from mastofargate.ui import warn

    target = Target(config)
    current = deployed_tags(stacks.describe(target, target.app_stack))
    if current is None:
        raise UsageError(f"Stack {target.app_stack} is not deployed; there is nothing to roll back.")
    previous = previous_tags(target, current)
    out(f"Rolling back: {current.describe()}  ->  {previous.describe()}")
    warn("database migrations are not reverted: the previous version runs on the current schema")
    # The previous version's assets were exported when it was deployed (exports never delete).
    return deploy(
        config,
        replace(
            opts,
            mastodon_tag=previous.mastodon,
            streaming_tag=previous.streaming,
            rollback=True,
            build=False,
            skip_assets=True,
        ),
    )


def plan_only(config: Config, opts: Options) -> bool:
    """`mastofargate plan`: show what deploy would do, change nothing; True when there are changes."""
    target = Target(config)
    reporter = Reporter()
    opts = replace(opts, dry_run=True)
    state = preflight(target, opts, reporter)
    secrets = ensure_secrets(target, opts, reporter)
    plans = plan(target, state, secrets, opts, reporter)
    try:
        show_plan(target, state, plans)
    finally:
        discard(target, plans)
    changes = not nothing_to_do(state, plans)
    out("Changes planned; 'mastofargate deploy' applies them." if changes else "No changes.")
    return changes


def report(outcome: Outcome, config: Config) -> None:
    """The success summary: URL, versions, time taken."""
    if not outcome.changed:
        return
    minutes, seconds = divmod(int(outcome.elapsed), 60)
    out("")
    out(f"Deployed {config.server.domain} in {minutes}m {seconds:02d}s.")
    if outcome.url:
        out(f"  URL:      {outcome.url}")
    if outcome.tags:
        out(f"  Mastodon: {outcome.version or config.deployment.mastodon_version} ({outcome.tags.describe()})")
    for note in outcome.notes:
        out(f"  {note}")
