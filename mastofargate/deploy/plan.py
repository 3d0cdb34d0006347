"""Deploy step 3, the plan: change sets for both stacks, shown for people, and whether there is work.

The data stack is planned first. The app stack is planned against the data stack as it is; when the data
stack's update will publish exports the app stack needs, CloudFormation cannot plan the app stack yet
(`aws.ExportsNotPublished`), and it is planned again after the data stack update.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mastofargate import cost
from mastofargate.aws import ExportsNotPublished
from mastofargate.deploy import bootstrap, downtime, exports, stacks
from mastofargate.deploy.ci_roles import change_set_role_arn
from mastofargate.deploy.context import Run
from mastofargate.deploy.options import Tags
from mastofargate.deploy.preflight import State
from mastofargate.errors import MastofargateError
from mastofargate.target import Target

NOT_YET = "(decided after the data stack)"


@dataclass
class Plans:
    data: stacks.Plan
    app: stacks.Plan
    secrets: bootstrap.SecretsReport | None
    app_params: dict[str, str] = field(default_factory=dict)
    templates: dict[str, Any] | None = None  # the troposphere templates (for the cost estimate)

    def all(self) -> list[stacks.Plan]:
        return [self.data, self.app]


def app_parameters(arn: str | None, tags: Tags | None, services_enabled: bool) -> dict[str, str]:
    return {
        "MastodonImageTag": tags.mastodon if tags else NOT_YET,
        "StreamingImageTag": tags.streaming if tags else NOT_YET,
        "BackupImageTag": tags.backup if tags and tags.backup else NOT_YET,
        "SecretArn": arn or "(created by deploy)",
        "ServicesEnabled": "true" if services_enabled else "false",
    }


def data_parameters(arn: str | None) -> dict[str, str]:
    """The data stack's one parameter: the server's secret, whose database password its setup task reads."""
    return {"SecretArn": arn or "(created by deploy)"}


def make_plans(run: Run, state: State, secrets: bootstrap.SecretsReport | None, *, dry_run: bool) -> Plans:
    """Change sets for both stacks (the data stack first). A stack that does not exist yet is planned
    from its template; change sets are made only when something will be executed."""
    from mastofargate.stack import build

    target = run.target
    run.out.step("Plan")
    built = build(target.config)
    templates = {k: json.loads(stacks.render(t)) for k, t in built.items()}
    arn = secrets.arn if secrets and secrets.arn else bootstrap.existing_arn(target)
    role = change_set_role_arn(target)
    data_params = data_parameters(arn)
    params = app_parameters(arn, state.tags, services_enabled=not state.installing)
    if state.data_exists and state.app_exists:
        app_now = stacks.deployed_template(target, target.app_stack)
        for export in exports.keep_imported_exports(target, templates["data"], app_now):
            run.out.line(f"  {target.data_stack} keeps exporting {export} while {target.app_stack} imports it")
    if arn is None and state.data_exists:
        # A dry run of a server still on the three legacy secrets: the one secret its templates reference is
        # made by the real deploy's secrets step, so CloudFormation cannot plan against it yet (the dynamic
        # references would not resolve; the ARN's suffix is not known).
        note = f"planned once {target.secret_name} exists (the deploy makes it from the legacy secrets first)"
        data_plan = stacks.deferred_plan(target.data_stack, templates["data"], data_params, note)
        app_plan = stacks.deferred_plan(target.app_stack, templates["app"], params, note)
        return Plans(data_plan, app_plan, secrets, params, built)
    if state.data_exists or not dry_run:
        kind: stacks.Kind = "UPDATE" if state.data_exists else "CREATE"
        data_plan = stacks.create_change_set(
            target, target.data_stack, templates["data"], data_params, kind=kind, role_arn=role
        )
    else:
        data_plan = stacks.template_plan(target.data_stack, templates["data"], data_params)
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
    role = change_set_role_arn(target)
    try:
        return stacks.create_change_set(
            target, target.app_stack, template, params, kind="UPDATE", bucket=bucket, role_arn=role
        )
    except ExportsNotPublished:
        if not data_plan.has_changes:
            raise
        note = "planned after the data stack update (it uses new data-stack outputs)"
        return stacks.deferred_plan(target.app_stack, template, params, note)


def app_change_set(
    run: Run, template: dict[str, Any], params: dict[str, str], *, allow_data_replacement: bool, show: bool = True
) -> stacks.Plan:
    """A fresh change set of the app stack (the template the plan was made from) with these parameters
    (CREATE when it does not exist); refused before anything runs when it would lose data."""
    target = run.target
    kind: stacks.Kind = "UPDATE" if stacks.exists(stacks.read_state(target, target.app_stack)) else "CREATE"
    bucket = target.stack_outputs(target.data_stack).get("DeployBucketName")
    role = change_set_role_arn(target)
    p = stacks.create_change_set(target, target.app_stack, template, params, kind=kind, bucket=bucket, role_arn=role)
    for line in p.summary() if show else p.summary()[:1]:
        run.out.line(line)
    try:
        stacks.refuse_data_loss([p], allow_data_replacement)
    except stacks.DataLossRefused:
        stacks.discard(target, p)
        raise
    return p


def show_plan(run: Run, state: State, plans: Plans) -> None:
    for p in plans.all():
        for line in p.summary():
            run.out.line(line)
    if state.tags and state.deployed_tags and state.tags != state.deployed_tags:
        run.out.line(f"images: {state.deployed_tags.describe()}  ->  {state.tags.describe()}")
    offline = downtime.warning(run.target, plans.app, installing=state.installing)
    if offline:
        run.out.warn(offline)
    if plans.templates is not None:
        config = run.target.config
        try:
            run.out.line(cost.summary_line(cost.estimate(config, plans.templates), config))
        except MastofargateError as e:  # an estimate that cannot be made is reported, never fatal to a deploy
            run.out.warn(f"no cost estimate: {e.what}")


def nothing_to_do(state: State, plans: Plans) -> bool:
    secrets_changed = plans.secrets is not None and plans.secrets.changed
    return not (
        plans.data.has_changes or plans.app.has_changes or plans.app.deferred or secrets_changed or state.installing
    )


def discard(run: Run, plans: Plans) -> None:
    for p in plans.all():
        stacks.discard(run.target, p)
