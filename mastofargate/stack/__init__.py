"""Assemble the CloudFormation templates for one config: a pure function, no AWS calls.

Builders run in dependency order; each adds its resources to the data or app template.
"""

from __future__ import annotations

from troposphere import Template

from mastofargate.config import Config
from mastofargate.stack import (
    backup_tasks,
    backups,
    cache,
    cluster,
    database,
    dbsetup,
    edge,
    iam,
    jobs,
    keys,
    mail,
    media,
    network,
    observability,
    registry,
    services,
    spot,
    storage,
)
from mastofargate.stack.context import Build

DATA_BUILDERS = (network, keys, registry, database, dbsetup, cache, media, mail, backups)
APP_BUILDERS = (iam, cluster, edge, services, jobs, backup_tasks, observability, spot, storage)


def build(config: Config) -> dict[str, Template]:
    """{"data": template, "app": template} for the config."""
    b = Build(config)
    b.data.set_version("2010-09-09")
    b.app.set_version("2010-09-09")
    b.data.set_description(
        f"mastofargate {b.name}: network, data stores, media and images (long-lived; holds user data)"
    )
    # No version here: a release reaches the stack only through the image tag parameters.
    b.app.set_description(f"mastofargate {b.name}: Mastodon services on ECS Fargate (replaceable; holds no data)")
    for builder in DATA_BUILDERS:
        builder.add(b)
    for builder in APP_BUILDERS:
        builder.add(b)
    for t in (b.data, b.app):
        t.set_metadata(
            {
                "mastofargate": {
                    "stack": b.data_stack if t is b.data else b.app_stack,
                    "profile": config.deployment.profile,
                    "local_domain": config.server.domain,
                    "edge": config.deployment.edge,
                }
            }
        )
    return {"data": b.data, "app": b.app}


def task_families(*templates: Template) -> list[str]:
    """The task definition families of the templates (the CI deploy role may run exactly these: the app
    stack's, and the data stack's database setup task)."""
    return sorted(
        str(r.properties["Family"])
        for t in templates
        for r in t.resources.values()
        if r.resource_type == "AWS::ECS::TaskDefinition"
    )


def has_functions(app: Template) -> bool:
    """Whether the app template has Lambdas (the CI stack's CloudFormation role may then manage NAME-* functions)."""
    return any(r.resource_type == "AWS::Lambda::Function" for r in app.resources.values())


def build_all(config: Config) -> dict[str, Template]:
    """Every template synth writes: data and app, and the CI roles stack when `[ci] repository` is set.
    The CI stack is applied by an administrator (`deploy --ci-roles`), never by a deploy's change sets."""
    from mastofargate.stack.ci import build_ci

    templates = build(config)
    ci = build_ci(config, task_families(templates["app"], templates["data"]), functions=has_functions(templates["app"]))
    if ci is not None:
        templates["ci"] = ci
    return templates
