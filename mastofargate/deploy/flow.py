"""`mastofargate deploy`, `plan` and `rollback`: the sequence of steps, and nothing else.

    preflight ► secrets ► plan ► confirm ► data stack ► images ► (install | upgrade) ► history ► report

The database owner setup (deploy/dbsetup.py) runs inside install (before db:prepare) and upgrade (before
the app change set switches Mastodon to the owner role), and only when the database secret's record says so.

Each step lives in its own module (preflight, bootstrap, plan, handoff, jobs, rollout, history); this
module only orders them. Safety rules it keeps (DESIGN invariants):
  - nothing changes before the plan is shown and confirmed, and nothing at all when LOCAL_DOMAIN would
    change (1) or a data-bearing resource would be replaced (3);
  - an upgrade first takes a backup named for the versions (waited for; deploy.backup_run), then runs the
    pre-deployment migrations on the NEW image before the services roll; if either fails, the app change
    set is dropped and the old version keeps serving (4, 6);
  - a failed rollout is rolled back by CloudFormation, and the error says so, why, and what to run next (4).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from mastofargate import validate
from mastofargate.deploy import bootstrap, dbsetup, exec_key, handoff, history, jobs, mail, rollout, spot, stacks
from mastofargate.deploy.context import Run
from mastofargate.deploy.options import DeployOptions, ImageChoice, PlanOptions, RollbackOptions, Tags
from mastofargate.deploy.plan import Plans, app_change_set, discard, make_plans, nothing_to_do, show_plan
from mastofargate.deploy.preflight import State, deployed_tags, preflight
from mastofargate.errors import EXIT_FAILED, MastofargateError, UsageError

Confirm = Callable[[str], bool]


@dataclass
class Outcome:
    changed: bool
    url: str = ""
    tags: Tags | None = None
    version: str = ""
    elapsed: float = 0.0
    notes: list[str] = field(default_factory=list)


def deploy(run: Run, opts: DeployOptions, confirm: Confirm, smtp_password: str | None = None) -> Outcome:
    """The whole deploy. Raises MastofargateError with the exit code of the failure."""
    started = run.poller.clock.monotonic()
    target = run.target
    validate.deploy_flags(
        mastodon_tag=opts.images.mastodon_tag,
        streaming_tag=opts.images.streaming_tag,
        images_json=opts.images.images_json,
        admin_username_value=opts.admin_username,
        build=opts.images.build,
    )
    need_tags = not (opts.images.build or opts.data_only or opts.dry_run)
    state = preflight(run, opts.images, need_tags=need_tags)
    if state.data_exists:
        exec_key.settle(run, dry_run=opts.dry_run, remind=True)
    secrets = bootstrap.secrets_step(run, dry_run=opts.dry_run, smtp_password=smtp_password)
    plans = make_plans(run, state, secrets, dry_run=opts.dry_run)
    show_plan(run, state, plans)
    if not state.installing:
        spot.announce(run)
    owner = dbsetup.read_state(target)
    dbsetup.show(run, owner, dry_run=opts.dry_run)
    if nothing_to_do(state, plans) and not owner.needed:
        if not opts.dry_run:
            protect_data_stack(run)
        run.out.line("No changes: the deployed server matches the config and images.")
        return Outcome(False, url=target.stack_outputs(target.app_stack).get("Url", ""), tags=state.tags)
    try:
        stacks.refuse_data_loss(plans.all(), opts.allow_data_replacement)
    except stacks.DataLossRefused:
        discard(run, plans)
        raise
    if opts.dry_run:
        discard(run, plans)
        run.out.line("Dry run: nothing was changed.")
        return Outcome(False, tags=state.tags)
    if not opts.yes and not confirm("Apply this plan?"):
        discard(run, plans)
        raise MastofargateError("Cancelled; nothing was deployed.", exit_code=EXIT_FAILED)
    if opts.data_only:
        stacks.discard(target, plans.app)
    data_changed = apply_data(run, plans.data, opts)
    bootstrap.fill_redis_url(run)
    smtp = mail.ensure_smtp_credentials(target)  # before any task starts: the task definitions read both keys
    if smtp == "created":
        run.out.line(f"  {target.secret_name}: SES SMTP credentials created (never shown)")
    if opts.data_only:
        run.out.line(
            f"Data stack {target.data_stack} is {'ready' if data_changed else 'unchanged'} (--data-only); its image "
            "repositories exist. Next: push the images, then deploy with their tags."
        )
        return Outcome(False)
    tags = handoff.settle_images(run, state, opts)
    rollout_started = run.poller.clock.monotonic()
    if state.installing:
        handoff.export_assets(run, tags, skip=opts.skip_assets)  # an upgrade exports beside its migrations
        outcome = install(run, state, plans, tags, opts)
    else:
        outcome = upgrade(run, state, plans, tags, opts)
        outcome.changed = outcome.changed or data_changed or (secrets.changed if secrets else False)
    if not opts.no_wait:
        exec_key.settle(run, dry_run=False, remind=False)  # the app stack may have let go of the old Exec key
    if outcome.changed and not opts.no_wait:
        history.record_history(target, tags, seconds=run.poller.clock.monotonic() - rollout_started)
    outcome.url = target.stack_outputs(target.app_stack, refresh=True).get("Url", "")
    outcome.version = target.config.deployment.mastodon_version
    outcome.elapsed = run.poller.clock.monotonic() - started
    return outcome


def apply_data(run: Run, plan: stacks.Plan, opts: DeployOptions) -> bool:
    """Create or update the data stack; protect it from deletion whenever it exists. True if it changed."""
    target = run.target
    if plan.has_changes:
        run.out.step(f"{'Creating' if plan.kind == 'CREATE' else 'Updating'} {target.data_stack}")
        execute_watched(run, plan, timeout=opts.timeout)
    protect_data_stack(run)
    if plan.has_changes:
        target.stack_outputs(target.data_stack, refresh=True)
    return plan.has_changes


def execute_watched(run: Run, plan: stacks.Plan, *, timeout: float) -> None:
    """Execute a stack's change set (one without ECS services to watch), its events streamed; an interrupt
    says that CloudFormation carries on."""
    with run.pending(f"CloudFormation is changing {plan.stack}; it carries on without mastofargate"):
        stacks.execute(
            run.target,
            plan,
            run.poller,
            timeout=timeout,
            on_event=lambda e: run.out.stack_event(plan.stack, e.line()),
        )


def protect_data_stack(run: Run) -> None:
    """Termination protection on the data stack whenever it exists (DESIGN invariant 3): also after a first
    deploy interrupted between creating the stack and protecting it, or protection removed by hand."""
    target = run.target
    state = stacks.read_state(target, target.data_stack)
    if state is not None and state.exists and not state.termination_protection:
        stacks.set_termination_protection(target, target.data_stack, True)
        run.out.line(f"  termination protection enabled on {target.data_stack}")


def image_parameters(tags: Tags) -> dict[str, str]:
    """The app stack's image-tag parameters: a release changes these and nothing else."""
    return {"MastodonImageTag": tags.mastodon, "StreamingImageTag": tags.streaming, "BackupImageTag": tags.backup}


def install(run: Run, state: State, plans: Plans, tags: Tags, opts: DeployOptions) -> Outcome:
    """First install: the app stack with services at zero (data tasks start), db:prepare, the Owner account,
    then the services switched on."""
    target = run.target
    params = {**plans.app_params, **image_parameters(tags)}
    params.update(SecretArn=bootstrap.require_arn(target))
    run.out.step(f"{'Creating' if not state.app_exists else 'Updating'} {target.app_stack} with services at zero")
    template = plans.app.template
    at_zero = app_change_set(
        run,
        template,
        {**params, "ServicesEnabled": "false"},
        allow_data_replacement=opts.allow_data_replacement,
        show=False,
    )
    rollout.apply(run, at_zero, timeout=opts.timeout)
    dbsetup.ensure_owner(
        run,
        timeout=opts.timeout,
        failed="The database setup failed (Mastodon's owner role could not be made); the services stay at zero "
        "and the database was not prepared.",
        fix="read the log lines above ('mastofargate logs dbsetup' has all), fix the cause, run 'mastofargate "
        "deploy' again",
    )
    result = jobs.run_job(run, "migrate", jobs.PREPARE, timeout=opts.timeout)
    if not result.ok:
        raise jobs.task_failure(
            "migrate",
            result,
            "The database could not be prepared (rails db:prepare failed); the services stay at zero.",
            "read the log lines above ('mastofargate logs migrate' has all), fix the cause, run 'mastofargate deploy'",
        )
    notes = jobs.create_owner(run, opts.admin_username, timeout=opts.timeout) if opts.admin else []
    if target.config.deployment.edge == "direct":
        from mastofargate.deploy.edgecheck import first_install_note

        notes.append(first_install_note(target.config))
    run.out.step("Starting the services")
    switch_on = app_change_set(
        run, template, {**params, "ServicesEnabled": "true"}, allow_data_replacement=opts.allow_data_replacement
    )
    if opts.no_wait:
        return start_without_waiting(run, switch_on, tags, notes)
    rollout.apply(run, switch_on, timeout=opts.timeout)
    return Outcome(True, tags=tags, notes=notes)


def upgrade(run: Run, state: State, plans: Plans, tags: Tags, opts: DeployOptions) -> Outcome:
    """An update of a running server: pre-deployment migrations on the new image, the rollout (watched
    while CloudFormation updates the services), post-deployment migrations. Only the rollout step runs
    when the images are unchanged."""
    target = run.target
    new_images = state.deployed_tags != tags
    migrate = new_images and not opts.skip_migrations
    app_plan = plans.app
    if app_plan.deferred:
        params = {**plans.app_params, **image_parameters(tags)}
        app_plan = app_change_set(run, app_plan.template, params, allow_data_replacement=opts.allow_data_replacement)
    serving = state.deployed_tags.describe() if state.deployed_tags else ""
    if not app_plan.has_changes:
        return Outcome(ensure_owner_before_rollout(run, app_plan, serving, opts), tags=tags)
    new_image, _ = handoff.image_refs(target, tags)
    if new_images and opts.skip_migrations:
        run.out.warn("rollback: migrations are not reverted; the older version runs on the newer database schema")
    # The asset export depends on nothing but the new image: it runs beside the pre-upgrade backup and the
    # pre-deployment migrations, which wait for the backup; the rollout waits for all (bench/upgrade.py).
    notes: list[str] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        export = pool.submit(handoff.export_assets, run, tags, skip=opts.skip_assets) if new_images else None
        try:
            if migrate:
                notes.append(pre_upgrade_backup(run, state, tags, opts, serving))
        except BaseException:
            stacks.discard(target, app_plan)
            raise
        result = jobs.run_job(run, "migrate-pre", None, timeout=opts.timeout, image=new_image) if migrate else None
        try:
            if export is not None:
                export.result()
        except BaseException:
            stacks.discard(target, app_plan)
            raise
    if result is not None and not result.ok:
        stacks.discard(target, app_plan)
        raise jobs.task_failure(
            "migrate-pre",
            result,
            "Pre-deployment migrations failed on the new image; nothing was rolled out and the old version "
            f"({serving or '?'}) is still serving.",
            "read the log lines ('mastofargate logs migrate-pre'), fix the cause, then run 'mastofargate deploy' again",
        )
    ensure_owner_before_rollout(run, app_plan, serving, opts)
    run.out.step(f"Updating {target.app_stack}")
    if opts.no_wait:
        if migrate:
            run.out.warn(
                "post-deployment migrations not run (--no-wait): when the rollout is done, run "
                "'mastofargate run -- bundle exec rails db:migrate'"
            )
            notes.append("post-deployment migrations NOT run")
        return start_without_waiting(run, app_plan, tags, notes)
    spot.return_to_spot(run, app_plan.template, rollout.touched_services(app_plan))
    rollout.apply(run, app_plan, timeout=opts.timeout, serving=serving)
    if migrate:
        result = jobs.run_job(run, "migrate", None, timeout=opts.timeout)
        if not result.ok:
            raise jobs.task_failure(
                "migrate",
                result,
                "Post-deployment migrations failed; the new version is serving.",
                "read the log lines ('mastofargate logs migrate'), fix the cause, then run "
                "'mastofargate run -- bundle exec rails db:migrate'",
            )
    return Outcome(True, tags=tags, notes=notes)


def pre_upgrade_backup(run: Run, state: State, tags: Tags, opts: DeployOptions, serving: str) -> str:
    """A backup named for the versions, waited for, before an upgrade's migrations change the schema: a failed
    migration can then be undone with 'mastofargate restore'. Its failure stops the deploy before anything
    changed. Returns the report's note."""
    from mastofargate.deploy import backup_jobs, backup_run

    label = backup_jobs.upgrade_label(state.deployed_tags.mastodon if state.deployed_tags else None, tags.mastodon)
    if run.target.config.deployment.database != "rds" and not backup_run.backup_task_exists(run):
        # The app stack predates the backup task (it arrives with this very update): nothing can dump yet.
        run.out.warn(
            "no pre-upgrade backup: the app stack has no backup task yet (this deploy adds it); after it, "
            "'mastofargate backup --wait' takes one"
        )
        return "pre-upgrade backup NOT taken (the backup task arrives with this deploy)"
    try:
        backup = backup_run.take(run, label, wait=True, timeout=opts.timeout)
    except MastofargateError as e:
        raise MastofargateError(
            f"The pre-upgrade backup failed; nothing was changed and the old version ({serving or '?'}) is still "
            "serving.",
            why=f"{e.what}{' ' + e.why if e.why else ''}",
            fix="fix the cause ('mastofargate backup --wait' tries the backup alone), then run 'mastofargate "
            "deploy' again",
            exit_code=e.exit_code,
        ) from None
    return f"pre-upgrade backup: {backup.describe()} (undo with 'mastofargate restore --from {backup.id}')"


def ensure_owner_before_rollout(run: Run, app_plan: stacks.Plan, serving: str, opts: DeployOptions) -> bool:
    """The database setup, when needed, before the app change set (which makes Mastodon log in as the owner
    role); a failure drops the change set, so the old version keeps serving. True if the setup task ran."""
    try:
        return dbsetup.ensure_owner(
            run,
            timeout=opts.timeout,
            failed="The database setup failed (Mastodon's owner role could not be made or handed the database); "
            f"nothing was rolled out and the old version ({serving or '?'}) is still serving.",
            fix="read the log lines ('mastofargate logs dbsetup'), fix the cause, then run 'mastofargate deploy' again",
        )
    except BaseException:
        stacks.discard(run.target, app_plan)
        raise


def start_without_waiting(run: Run, plan: stacks.Plan, tags: Tags, notes: list[str]) -> Outcome:
    """--no-wait: execute the change set and return; CloudFormation carries on."""
    stacks.start(run.target, plan)
    run.out.line("  rollout started (--no-wait): follow it with 'mastofargate status'")
    return Outcome(True, tags=tags, notes=[*notes, "rollout started, not watched (--no-wait)"])


def rollback(run: Run, opts: RollbackOptions, confirm: Confirm) -> Outcome:
    """Deploy the image tags of the previous successful deploy, migrations skipped."""
    target = run.target
    current = deployed_tags(stacks.read_state(target, target.app_stack))
    if current is None:
        raise UsageError(f"Stack {target.app_stack} is not deployed; there is nothing to roll back.")
    previous = history.previous_tags(target, current)
    run.out.line(f"Rolling back: {current.describe()}  ->  {previous.describe()}")
    run.out.warn("database migrations are not reverted: the previous version runs on the current schema")
    # The previous version's assets were exported when it was deployed (exports never delete).
    deploy_opts = DeployOptions(
        config_path=opts.config_path,
        images=ImageChoice(mastodon_tag=previous.mastodon, streaming_tag=previous.streaming),
        yes=opts.yes,
        dry_run=opts.dry_run,
        timeout=opts.timeout,
        no_wait=opts.no_wait,
        admin=False,
        skip_assets=True,
        skip_migrations=True,
    )
    return deploy(run, deploy_opts, confirm)


@dataclass
class PlanResult:
    changes: bool
    plans: Plans
    state: State

    def summary(self) -> dict[str, object]:
        """Plain data for a pull-request comment (ci.comment)."""
        from mastofargate.ci.comment import plan_summary

        tags = self.state.tags
        return plan_summary(self.plans.all(), images=tags.describe() if tags else None)


def plan_only(run: Run, opts: PlanOptions) -> PlanResult:
    """`mastofargate plan`: show what deploy would do, change nothing. Needs no secret's value (the
    read-only CI role may not read them)."""
    state = preflight(run, opts.images, need_tags=False)
    secrets = bootstrap.secrets_step(run, dry_run=True)
    plans = make_plans(run, state, secrets, dry_run=True)
    try:
        show_plan(run, state, plans)
        if not state.installing:
            spot.announce(run)
    finally:
        discard(run, plans)
    owner = dbsetup.read_state(run.target)
    dbsetup.show(run, owner, dry_run=True)
    changes = not nothing_to_do(state, plans) or owner.needed is True
    run.out.line("Changes planned; 'mastofargate deploy' applies them." if changes else "No changes.")
    return PlanResult(changes, plans, state)


def apply_ci_roles(run: Run, opts: DeployOptions, confirm: Confirm) -> Outcome:
    """`deploy --ci-roles`: create or update the CI roles stack (with the caller's, an administrator's,
    credentials; the CI roles may not touch it) and print the role ARNs the workflows use."""
    from mastofargate.deploy import ci_roles

    target = run.target
    stack = ci_roles.ci_roles_stack(target.config)
    run.out.step(f"Plan: {stack.stack_name}")
    kind: stacks.Kind = "UPDATE" if stacks.exists(stacks.read_state(target, stack.stack_name)) else "CREATE"
    plan = stacks.create_change_set(target, stack.stack_name, stack.template, stack.parameters, kind=kind)
    for line in plan.summary():
        run.out.line(line)
    if not plan.has_changes:
        run.out.line("No changes.")
    elif opts.dry_run:
        stacks.discard(target, plan)
        run.out.line("Dry run: nothing was changed.")
        return Outcome(False)
    elif not opts.yes and not confirm("Apply this plan?"):
        stacks.discard(target, plan)
        raise MastofargateError("Cancelled; nothing was deployed.", exit_code=EXIT_FAILED)
    else:
        execute_watched(run, plan, timeout=opts.timeout)
        target.stack_outputs(stack.stack_name, refresh=True)
    for role, arn in ci_roles.role_arns(target).items():
        run.out.line(f"  {role} role: {arn}")
    return Outcome(plan.has_changes)


def report(run: Run, outcome: Outcome) -> None:
    """The success summary: URL, versions, time taken."""
    if not outcome.changed:
        return
    config = run.target.config
    minutes, seconds = divmod(int(outcome.elapsed), 60)
    run.out.line("")
    run.out.line(f"Deployed {config.server.domain} in {minutes}m {seconds:02d}s.")
    if outcome.url:
        run.out.line(f"  URL:      {outcome.url}")
    if outcome.tags:
        run.out.line(f"  Mastodon: {outcome.version or config.deployment.mastodon_version} ({outcome.tags.describe()})")
    for note in outcome.notes:
        run.out.line(f"  {note}")
