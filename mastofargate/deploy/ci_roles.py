"""What `deploy --ci-roles` applies: the CI stack (mastofargate.stack.ci) — its name, template and
parameters — and the one thing every later deploy needs from it: the role CloudFormation must apply this
server's change sets with once the CI roles exist (the CI deploy role may only create change sets that
name it; see stack/ci.py).

The CI stack is applied with an administrator's credentials, never by the CI roles (they are denied any
action on it), and it holds no data: replacing it only replaces roles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mastofargate import names
from mastofargate.config import Config
from mastofargate.errors import UsageError

CAPABILITIES = ("CAPABILITY_NAMED_IAM",)  # the roles have fixed names (the workflows name them)
ROLE_OUTPUTS = {
    "plan": "PlanRoleArn",
    "images": "ImagesRoleArn",
    "deploy": "DeployRoleArn",
    "cloudformation": "CloudFormationRoleArn",
}


@dataclass(frozen=True)
class CiRolesStack:
    stack_name: str
    template: dict[str, Any]  # CloudFormation template as JSON-ready data
    parameters: dict[str, str] = field(default_factory=dict)  # none: everything comes from the config
    capabilities: tuple[str, ...] = CAPABILITIES

    @property
    def body(self) -> str:
        """The template text (well under the 51,200-byte inline limit)."""
        return json.dumps(self.template, sort_keys=True)


def ci_roles_stack(config: Config) -> CiRolesStack:
    """The CI stack for this config; a UsageError when `[ci] repository` is not set."""
    from mastofargate.stack import build, task_families
    from mastofargate.stack.ci import build_ci

    templates = build(config)
    template = build_ci(config, task_families(templates["app"], templates["data"]))
    if template is None:
        raise UsageError(
            "the config names no repository for the CI roles",
            why="the roles trust GitHub Actions runs of one repository only",
            fix="add [ci] repository = \"owner/name\" to mastofargate.toml (or run 'mastofargate init --repository')",
        )
    return CiRolesStack(names.ci_stack(config.aws.name), template.to_dict())


def change_set_role_arn(target: Any) -> str | None:
    """The role CloudFormation applies this server's change sets with: the CI stack's CloudFormation role
    once that stack exists, else None (CloudFormation then acts with the caller's credentials).

    Wire it into every CreateChangeSet of the data and app stacks (`RoleARN=`): the CI deploy and plan
    roles may only create change sets that name this role, and a stack remembers the role it was last
    updated with. `target` is a mastofargate.target.Target (its stack_outputs reads DescribeStacks)."""
    if not target.config.ci.repository:  # no CI roles configured: nothing to read
        return None
    outputs = target.stack_outputs(names.ci_stack(target.name))
    arn = outputs.get(ROLE_OUTPUTS["cloudformation"])
    return str(arn) if arn else None


def role_arns(target: Any) -> dict[str, str]:
    """{plan, images, deploy, cloudformation: ARN} of a deployed CI stack ({} when it does not exist), for the
    message after `deploy --ci-roles` (the workflows name the roles; the user sets AWS_ACCOUNT_ID)."""
    outputs = target.stack_outputs(names.ci_stack(target.name))
    return {kind: outputs[key] for kind, key in ROLE_OUTPUTS.items() if key in outputs}
