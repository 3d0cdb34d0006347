"""A small IAM policy evaluator for the CI roles' tests, and the mapping of recorded boto3 calls to the IAM
requests AWS authorizes (action, resource ARN, condition keys).

Evaluation follows AWS's documented logic for identity-based policies of one principal: an explicit Deny
wins, else any Allow, else the implicit deny. Supported: Action/NotAction, Resource/NotResource, Principal
(trust policies), and the condition operators the roles use (String*, Arn*, Bool, with IfExists). Anything
else raises instead of guessing, so an unsupported construct can never turn into a silent Allow.

No PyPI package evaluates policies offline soundly (policy_sentry, installed with checkov, WRITES policies
and knows the IAM action catalogue — used here to check action names, resource-level support and
condition keys; it does not evaluate).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"
ZERO_ID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class Request:
    action: str  # "service:Operation"
    resource: str  # an ARN, or "*" for actions without resource-level permissions
    context: dict[str, str] = field(default_factory=dict)
    principal: tuple[str, str] | None = None  # ("Federated" | "Service" | "AWS", value): trust policies
    call: str = ""  # the recorded call it came from, for messages

    def replace(self, old: str, new: str) -> Request:
        return Request(
            self.action,
            self.resource.replace(old, new),
            {k: v.replace(old, new) for k, v in self.context.items()},
            self.principal,
            self.call,
        )


def resolve(value: Any, pseudo: dict[str, str] | None = None) -> Any:
    """Template values with intrinsics resolved: Fn::Sub and Ref of pseudo parameters only."""
    p = pseudo or {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": PARTITION}
    if isinstance(value, dict):
        if set(value) == {"Fn::Sub"}:
            text = value["Fn::Sub"]
            if not isinstance(text, str):
                raise ValueError(f"Fn::Sub with variables is not supported: {value}")

            def one(m: re.Match[str]) -> str:
                if m.group(1) not in p:
                    raise ValueError(f"cannot resolve ${{{m.group(1)}}} in {text}")
                return p[m.group(1)]

            return re.sub(r"\$\{([^}!]+)\}", one, text)
        if set(value) == {"Ref"}:
            if value["Ref"] not in p:
                raise ValueError(f"cannot resolve Ref {value['Ref']}")
            return p[value["Ref"]]
        if any(k.startswith("Fn::") for k in value):
            raise ValueError(f"intrinsic not supported by the evaluator: {value}")
        return {k: resolve(v, p) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, p) for v in value]
    return value


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _like(pattern: str, value: str, case_insensitive: bool = False) -> bool:
    if "${" in pattern:
        raise ValueError(f"policy variables are not supported: {pattern}")
    if case_insensitive:
        pattern, value = pattern.lower(), value.lower()
    # IAM wildcards: * any run of characters (across ':' and '/'), ? one character. No character classes.
    escaped = pattern.replace("[", "[[]")
    return fnmatchcase(value, escaped)


def _arn_like(pattern: str, value: str) -> bool:
    """ArnLike: each of the six colon-separated parts matches on its own (the resource part may hold ':')."""
    p, v = pattern.split(":", 5), value.split(":", 5)
    if len(p) != 6 or len(v) != 6:
        return False
    return all(_like(a, b) for a, b in zip(p, v, strict=True))


_OPERATORS = {
    "StringEquals": lambda want, got: got == want,
    "StringNotEquals": lambda want, got: got != want,
    "StringEqualsIgnoreCase": lambda want, got: got.lower() == want.lower(),
    "StringLike": lambda want, got: _like(want, got),
    "StringNotLike": lambda want, got: not _like(want, got),
    "ArnEquals": lambda want, got: got == want,
    "ArnLike": _arn_like,
    "ArnNotEquals": lambda want, got: got != want,
    "ArnNotLike": lambda want, got: not _arn_like(want, got),
    "Bool": lambda want, got: str(want).lower() == got.lower(),
}
_NEGATED = {"StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


def _conditions(block: dict[str, Any], context: dict[str, str]) -> bool:
    lowered = {k.lower(): v for k, v in context.items()}
    for operator, tests in block.items():
        base = operator.removesuffix("IfExists")
        if base not in _OPERATORS:
            raise ValueError(f"condition operator not supported by the evaluator: {operator}")
        for key, wanted in tests.items():
            got = lowered.get(key.lower())
            if got is None:
                if operator.endswith("IfExists") or base in _NEGATED:
                    continue
                return False
            wants = [str(w) for w in _list(wanted)]
            if base in _NEGATED:
                if not all(_OPERATORS[base](w, got) for w in wants):
                    return False
            elif not any(_OPERATORS[base](w, got) for w in wants):
                return False
    return True


def _statement_applies(st: dict[str, Any], req: Request) -> bool:
    unknown = set(st) - {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition", "Principal"}
    if unknown:
        raise ValueError(f"statement elements not supported by the evaluator: {sorted(unknown)}")
    if "Action" in st:
        if not any(_like(a, req.action, case_insensitive=True) for a in _list(st["Action"])):
            return False
    elif "NotAction" in st:
        if any(_like(a, req.action, case_insensitive=True) for a in _list(st["NotAction"])):
            return False
    else:
        raise ValueError(f"statement without Action: {st}")
    if "Principal" in st:
        if req.principal is None:
            raise ValueError("a trust policy needs a request with a principal")
        kind, value = req.principal
        allowed = st["Principal"]
        if allowed != "*" and value not in [str(x) for x in _list(allowed.get(kind, []))]:
            return False
    elif "Resource" in st:
        if not any(_like(r, req.resource) for r in _list(st["Resource"])):
            return False
    elif "NotResource" in st:
        if any(_like(r, req.resource) for r in _list(st["NotResource"])):
            return False
    else:
        raise ValueError(f"statement without Resource: {st}")
    return _conditions(st.get("Condition", {}), req.context)


def decide(policies: list[dict[str, Any]], req: Request) -> str:
    """'Allow', 'ExplicitDeny' or 'ImplicitDeny' for one request against resolved policy documents."""
    allowed = False
    for doc in policies:
        for st in _list(doc["Statement"]):
            if _statement_applies(st, req):
                if st["Effect"] == "Deny":
                    return "ExplicitDeny"
                if st["Effect"] != "Allow":
                    raise ValueError(f"bad Effect {st['Effect']}")
                allowed = True
    return "Allow" if allowed else "ImplicitDeny"


def role_policies(
    template: dict[str, Any], logical_id: str, refs: dict[str, str] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(identity policies, trust policy) of a role in a template dict, intrinsics resolved (`refs`: values
    of Ref to the template's own resources, e.g. the OIDC provider's ARN)."""
    pseudo = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": PARTITION, **(refs or {})}
    props = template["Resources"][logical_id]["Properties"]
    policies = [resolve(p["PolicyDocument"], pseudo) for p in props.get("Policies", [])]
    return policies, resolve(props["AssumeRolePolicyDocument"], pseudo)


# --------------------------------------------------------------------------------------------- recorded calls
# boto3 service name -> IAM prefix, where they differ.
_PREFIX = {"elbv2": "elasticloadbalancing"}
# S3 operations authorized as another action.
_S3_ACTION = {"HeadObject": "GetObject", "ListObjectsV2": "ListBucket", "HeadBucket": "ListBucket"}
# Calls that need no permission.
_FREE = {("sts", "GetCallerIdentity")}


def _arn(service: str, rest: str, region: str = REGION, account: str = ACCOUNT) -> str:
    return f"arn:{PARTITION}:{service}:{region}:{account}:{rest}"


def _stack_arn(name: str) -> str:
    return name if name.startswith("arn:") else _arn("cloudformation", f"stack/{name}/{ZERO_ID}")


def _cluster(params: dict[str, Any]) -> str:
    c = str(params.get("cluster", "default"))
    return c.rsplit("/", 1)[-1] if c.startswith("arn:") else c


def _family(td: str) -> str:
    name = td.rsplit("/", 1)[-1] if td.startswith("arn:") else td
    return name.split(":")[0]


def requests_for(service: str, operation: str, params: dict[str, Any], change_sets: dict[str, str]) -> list[Request]:
    """The IAM requests one recorded call makes. `change_sets`: change set name -> stack name, filled from
    the CreateChangeSet calls seen so far (a change set ARN does not name its stack). Unknown calls raise."""
    call = f"{service}:{operation}"
    if (service, operation) in _FREE:
        return []
    prefix = _PREFIX.get(service, service)
    action = f"{prefix}:{_S3_ACTION.get(operation, operation) if service == 's3' else operation}"
    one = lambda resource, **ctx: [Request(action, resource, dict(ctx), call=call)]  # noqa: E731
    if service == "cloudformation":
        if operation == "CreateChangeSet":
            change_sets[params["ChangeSetName"]] = params["StackName"]
            ctx = {"cloudformation:RoleArn": params["RoleARN"]} if "RoleARN" in params else {}
            return one(_stack_arn(params["StackName"]), **ctx)
        if "StackName" in params:
            return one(_stack_arn(params["StackName"]))
        name = str(params["ChangeSetName"])
        if name.startswith("arn:"):
            name = name.split(":changeSet/", 1)[1].split("/", 1)[0]
        return one(_stack_arn(change_sets[name]))
    if service == "ecs":
        cluster = _cluster(params)
        if operation in ("DescribeTaskDefinition", "RegisterTaskDefinition", "ListTaskDefinitions"):
            out = one("*")
            for key in ("executionRoleArn", "taskRoleArn"):
                if operation == "RegisterTaskDefinition" and params.get(key):
                    out.append(
                        Request(
                            "iam:PassRole",
                            params[key],
                            {"iam:PassedToService": "ecs-tasks.amazonaws.com"},
                            call=call,
                        )
                    )
            return out
        if operation == "DescribeServices":
            return [
                Request(action, _arn("ecs", f"service/{cluster}/{s.rsplit('/', 1)[-1]}"), call=call)
                for s in params["services"]
            ]
        if operation == "UpdateService":
            return one(_arn("ecs", f"service/{cluster}/{params['service'].rsplit('/', 1)[-1]}"))
        if operation in ("DescribeTasks", "StopTask"):
            tasks = params.get("tasks") or [params["task"]]
            return [
                Request(action, t if t.startswith("arn:") else _arn("ecs", f"task/{cluster}/{t}"), call=call)
                for t in tasks
            ]
        if operation == "RunTask":
            return one(
                _arn("ecs", f"task-definition/{_family(params['taskDefinition'])}:1"),
                **{"ecs:cluster": _arn("ecs", f"cluster/{cluster}")},
            )
        if operation in ("ListServices", "ListTasks"):
            return one(_arn("ecs", f"cluster/{cluster}"))
    if service == "ecr":
        if operation == "GetAuthorizationToken":
            return one("*")
        return one(_arn("ecr", f"repository/{params['repositoryName']}"))
    if service == "secretsmanager":
        sid = str(params.get("SecretId") or params["Name"])
        return one(sid if sid.startswith("arn:") else _arn("secretsmanager", f"secret:{sid}-AbCdEf"))
    if service == "logs":
        group = params["logGroupName"]
        if operation == "GetLogEvents":
            return one(_arn("logs", f"log-group:{group}:log-stream:{params['logStreamName']}"))
        return one(_arn("logs", f"log-group:{group}"))
    if service == "ssm":
        return one(_arn("ssm", f"parameter/{str(params['Name']).lstrip('/')}"))
    if service == "s3":
        bucket = params["Bucket"]
        if operation in ("ListObjectsV2", "HeadBucket"):
            ctx = {"s3:prefix": params["Prefix"]} if "Prefix" in params else {}
            return one(f"arn:{PARTITION}:s3:::{bucket}", **ctx)
        return one(f"arn:{PARTITION}:s3:::{bucket}/{params['Key']}")
    if service == "route53":
        return one(f"arn:{PARTITION}:route53:::hostedzone/{str(params['Id']).rsplit('/', 1)[-1]}")
    if service == "acm":
        return one(params["CertificateArn"])
    if service == "rds":
        db = _arn("rds", f"db:{params['DBInstanceIdentifier']}") if params.get("DBInstanceIdentifier") else None
        snap_id = params.get("DBSnapshotIdentifier")
        snapshot = _arn("rds", f"snapshot:{snap_id}") if snap_id else None
        if operation == "CreateDBSnapshot" and db and snapshot:
            out = [Request(action, db, call=call), Request(action, snapshot, call=call)]
            if params.get("Tags"):  # tags at creation are authorized as AddTagsToResource on the snapshot
                out.append(Request("rds:AddTagsToResource", snapshot, call=call))
            return out
        if operation == "DescribeDBSnapshots" and (snapshot or db):
            return one(snapshot or db)
    if service == "sesv2" and operation == "GetAccount":  # IAM's action is ses:GetAccount, no resource
        return [Request("ses:GetAccount", "*", {}, call=call)]
    if service == "iam" and operation in ("ListAccessKeys", "CreateAccessKey", "DeleteAccessKey"):
        return one(f"arn:{PARTITION}:iam::{ACCOUNT}:user/mastofargate/social/{params['UserName']}")
    raise KeyError(f"no IAM mapping for the recorded call {call}: add one to tests/iam_policy.py")


def pattern(req: Request) -> str:
    """A stable line for the committed list: IDs and hashes that change run to run become *."""
    res = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "*", req.resource)
    res = re.sub(r"[0-9a-f]{32,}", "*", res)
    res = re.sub(r"-[A-Z0-9]{8,}$", "-*", res)
    res = re.sub(r"hostedzone/[A-Z0-9]+$", "hostedzone/*", res)
    res = re.sub(r"-\d{8}-\d{6}$", "-*", res)  # the time in a snapshot id (backup_jobs.snapshot_id)
    return f"{req.action} {res}"
