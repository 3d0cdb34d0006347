"""Where a deploy goes: the config's stacks, cluster and region, and the data stack's outputs.

Every deploy-time module takes a `Target` instead of re-deriving names, so the naming rules of the
stack builders (stack/context.py) are stated once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mastofargate import aws, names
from mastofargate.config import Config
from mastofargate.stack.secrets import secret_names


@dataclass
class Target:
    config: Config
    _outputs: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.config.aws.name

    @property
    def region(self) -> str:
        return self.config.aws.region

    @property
    def data_stack(self) -> str:
        return names.data_stack(self.name)

    @property
    def app_stack(self) -> str:
        return names.app_stack(self.name)

    @property
    def cluster(self) -> str:
        return names.cluster(self.name)

    @property
    def secret_names(self) -> dict[str, str]:
        return secret_names(self.name)

    def client(self, service: str) -> Any:
        return aws.client(service, self.region)

    def stack_outputs(self, stack: str, refresh: bool = False) -> dict[str, str]:
        """Outputs of a deployed stack ({} when it does not exist)."""
        if refresh or stack not in self._outputs:
            from botocore.exceptions import ClientError

            with aws.aws_errors(f"reading stack {stack}"):
                try:
                    stacks = self.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
                except ClientError as e:
                    if "does not exist" not in str(e):
                        raise
                    stacks = []
            outputs = stacks[0].get("Outputs", []) if stacks else []
            self._outputs[stack] = {o["OutputKey"]: o["OutputValue"] for o in outputs}
        return self._outputs[stack]

    def network_configuration(self) -> dict[str, Any]:
        """awsvpcConfiguration for one-off tasks: the data stack's subnets and the tasks' security group."""
        out = self.stack_outputs(self.data_stack)
        if "SubnetIds" not in out or "TaskSecurityGroupId" not in out:
            from mastofargate.errors import MastofargateError

            raise MastofargateError(
                f"Stack {self.data_stack} is not deployed (or lacks its network outputs).",
                why="one-off tasks run in the data stack's subnets and the tasks' security group",
                fix="run 'mastofargate deploy' first",
            )
        return {
            "awsvpcConfiguration": {
                "subnets": out["SubnetIds"].split(","),
                "securityGroups": [out["TaskSecurityGroupId"]],
                "assignPublicIp": "ENABLED",
            }
        }
