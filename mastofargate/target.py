"""Where a deploy goes: the config's stacks, cluster and region, and the data stack's outputs.

Every deploy-time module takes a `Target` instead of re-deriving names, so the naming rules of the
stack builders (stack/context.py) are stated once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mastofargate import aws, names
from mastofargate.aws import StackNotFound
from mastofargate.config import Config
from mastofargate.stack.secrets import legacy_secret_names, secret_name

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_ecs.type_defs import NetworkConfigurationTypeDef

Phase = Literal["absent", "in_progress", "ok", "rolled_back", "stuck"]

# The one table of CloudFormation stack states, by what they mean for a deploy.
ROLLED_BACK_STATES = frozenset({"ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_ROLLBACK_COMPLETE"})
OK_STATES = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE", "DELETE_COMPLETE"})
ABSENT_STATES = frozenset({"REVIEW_IN_PROGRESS", "DELETE_COMPLETE"})


def phase(status: str | None) -> Phase:
    """What a stack status means: absent (no stack, or only an empty REVIEW_IN_PROGRESS shell), still
    in progress, ok, failed and undone by CloudFormation, or stuck (a *_FAILED state a human must clear)."""
    if not status or status in ABSENT_STATES:
        return "absent"
    if status.endswith("_IN_PROGRESS"):
        return "in_progress"
    if status in ROLLED_BACK_STATES:
        return "rolled_back"
    if status in OK_STATES:
        return "ok"
    return "stuck"


@dataclass(frozen=True)
class StackState:
    """A deployed stack as CloudFormation describes it."""

    name: str
    status: str
    parameters: dict[str, str]
    outputs: dict[str, str]
    termination_protection: bool
    reason: str = ""

    @property
    def phase(self) -> Phase:
        return phase(self.status)

    @property
    def exists(self) -> bool:
        return self.phase != "absent"


def read_state(target: Target, stack: str) -> StackState | None:
    """The stack's state, or None when CloudFormation has no such stack."""
    try:
        with aws.aws_errors(f"reading stack {stack}"):
            stacks = target.cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except StackNotFound:
        return None
    if not stacks:
        return None
    info = stacks[0]
    return StackState(
        name=stack,
        status=str(info.get("StackStatus", "")),
        parameters={p["ParameterKey"]: str(p.get("ParameterValue", "")) for p in info.get("Parameters", [])},
        outputs={o["OutputKey"]: str(o["OutputValue"]) for o in info.get("Outputs", [])},
        termination_protection=bool(info.get("EnableTerminationProtection", False)),
        reason=str(info.get("StackStatusReason", "") or ""),
    )


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
    def secret_name(self) -> str:
        """The server's one Secrets Manager secret (stack.secrets.secret_name)."""
        return secret_name(self.name)

    @property
    def legacy_secret_names(self) -> dict[str, str]:
        """The three secrets of servers deployed before the one secret (kind -> name)."""
        return legacy_secret_names(self.name)

    def client(self, service: str) -> Any:
        return aws.client(service, self.region)

    @property
    def cloudformation(self) -> CloudFormationClient:
        """The CloudFormation client, typed (boto3-stubs): calls and answers are checked by mypy."""
        return self.client("cloudformation")

    @property
    def ecs(self) -> ECSClient:
        """The ECS client, typed (boto3-stubs)."""
        return self.client("ecs")

    def stack_outputs(self, stack: str, refresh: bool = False) -> dict[str, str]:
        """Outputs of a deployed stack ({} when it does not exist)."""
        if refresh or stack not in self._outputs:
            state = read_state(self, stack)
            self._outputs[stack] = dict(state.outputs) if state else {}
        return self._outputs[stack]

    def network_configuration(self) -> NetworkConfigurationTypeDef:
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
