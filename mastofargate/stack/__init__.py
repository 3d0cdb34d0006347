"""Assemble the CloudFormation templates for one config: a pure function, no AWS calls.

Builders run in dependency order; each adds its resources to the data or app template.
"""

from __future__ import annotations

from troposphere import Template

from mastofargate.config import Config
from mastofargate.stack import (
    backups,
    cache,
    cluster,
    database,
    edge,
    iam,
    jobs,
    media,
    network,
    observability,
    registry,
    secrets,
    services,
)
from mastofargate.stack.context import Build

DATA_BUILDERS = (network, secrets, registry, database, cache, media, backups)
APP_BUILDERS = (iam, cluster, edge, services, jobs, observability)


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
                }
            }
        )
    return {"data": b.data, "app": b.app}
