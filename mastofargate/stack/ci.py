"""The CI stack (`NAME-ci`): roles GitHub Actions workflows assume through OIDC, so no AWS key is stored.

Three roles, each trusted only for the configured repository (`[ci] repository`) and one kind of workflow
run (the token's `sub` claim, matched exactly):
  plan    - pull requests: read the stacks and create/delete change sets; never execute one (denied
            explicitly), never read a secret's value (a pull request's code runs with this role);
  images  - pushes to the main branch: push to this server's two ECR repositories;
  deploy  - the deploy job in the protected environment: what `mastofargate deploy` calls, on this
            server's stacks, cluster, task definitions, secrets, log groups, buckets and parameters.
CloudFormation applies the change sets with a fourth role, trusted only by CloudFormation and passable
only by the deploy role (and the plan role, for change sets it can never execute): the permissions to
create the stacks' resources stay out of the deploy role, and its change sets must name that role.

The stack is applied by an administrator (`deploy --ci-roles`), never by the CI roles themselves: no role
here may touch the CI stack. GitHub's OIDC provider is created here unless the account has one
(`[ci] oidc_provider_arn`; an account holds at most one provider per URL).
"""

from __future__ import annotations

from typing import Any

from troposphere import GetAtt, Output, Ref, Sub, Template, iam

from mastofargate import names
from mastofargate.config import Config

GITHUB_ISSUER = "token.actions.githubusercontent.com"
AUDIENCE = "sts.amazonaws.com"
ENVIRONMENT = "production"  # the GitHub environment the deploy job runs in (mastofargate.ci.workflows)
CHANGE_SET_PREFIX = "mastofargate-"
_ARN = "arn:${AWS::Partition}"
# Services whose resources the data and app templates create (the CloudFormation role's scope).
CFN_SERVICES = (
    "application-autoscaling",
    "backup",
    "backup-storage",
    "acm",
    "cloudfront",
    "cloudwatch",
    "ec2",
    "ecr",
    "ecs",
    "elasticfilesystem",
    "elasticache",
    "elasticloadbalancing",
    "events",
    "kms",
    "lambda",
    "logs",
    "rds",
    "route53",
    "s3",
    "scheduler",
    "servicediscovery",
    "ses",
    "sns",
    "sqs",
    "ssm",
)


def subjects(config: Config) -> dict[str, str]:
    """The OIDC `sub` claim each role accepts (GitHub's default claim formats)."""
    repo = config.ci.repository
    return {
        "plan": f"repo:{repo}:pull_request",
        "images": f"repo:{repo}:ref:refs/heads/{config.ci.branch}",
        "deploy": f"repo:{repo}:environment:{ENVIRONMENT}",
    }


def _statement(sid: str, actions: list[str], resources: list[Any], effect: str = "Allow", **extra: Any) -> dict:
    return {"Sid": sid, "Effect": effect, "Action": sorted(actions), "Resource": resources, **extra}


def _doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


class _Names:
    """ARNs of this server's resources, as Fn::Sub strings (account, region, partition filled in by AWS)."""

    def __init__(self, config: Config, families: list[str]) -> None:
        self.name = n = config.aws.name
        self.config = config
        self.families = families
        self.stacks = [names.data_stack(n), names.app_stack(n)]

    def sub(self, text: str) -> Sub:
        return Sub(text)

    def ci_stack_arn(self) -> Sub:
        return Sub(f"{_ARN}:cloudformation:${{AWS::Region}}:${{AWS::AccountId}}:stack/{names.ci_stack(self.name)}/*")

    def stack_arns(self) -> list[Sub]:
        return [Sub(f"{_ARN}:cloudformation:${{AWS::Region}}:${{AWS::AccountId}}:stack/{s}/*") for s in self.stacks]

    def change_set_arns(self) -> list[Sub]:
        return [Sub(f"{_ARN}:cloudformation:${{AWS::Region}}:${{AWS::AccountId}}:changeSet/{CHANGE_SET_PREFIX}*/*")]

    def repositories(self) -> list[Sub]:
        return [
            Sub(f"{_ARN}:ecr:${{AWS::Region}}:${{AWS::AccountId}}:repository/{self.name}/{image}")
            for image in ("mastodon", "streaming")
        ]

    def bucket(self, purpose: str, objects: str | None = None) -> Sub:
        suffix = f"/{objects}" if objects is not None else ""
        return Sub(f"{_ARN}:s3:::{self.name}-{purpose}-${{AWS::AccountId}}-${{AWS::Region}}{suffix}")

    def secrets(self) -> Sub:
        return Sub(f"{_ARN}:secretsmanager:${{AWS::Region}}:${{AWS::AccountId}}:secret:mastofargate/{self.name}/*")

    def parameters(self) -> Sub:
        return Sub(f"{_ARN}:ssm:${{AWS::Region}}:${{AWS::AccountId}}:parameter/mastofargate/{self.name}/*")

    def log_groups(self) -> list[Sub]:
        base = f"{_ARN}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:/mastofargate/{self.name}/*"
        return [Sub(base), Sub(base + ":log-stream:*")]

    def cluster(self) -> Sub:
        return Sub(f"{_ARN}:ecs:${{AWS::Region}}:${{AWS::AccountId}}:cluster/{self.name}")

    def cluster_children(self) -> list[Sub]:
        return [
            Sub(f"{_ARN}:ecs:${{AWS::Region}}:${{AWS::AccountId}}:{kind}/{self.name}/*")
            for kind in ("service", "task", "task-set")
        ]

    def task_definitions(self) -> list[Sub]:
        return [
            Sub(f"{_ARN}:ecs:${{AWS::Region}}:${{AWS::AccountId}}:task-definition/{family}:*")
            for family in self.families
        ]

    def app_roles(self) -> Sub:
        """Roles CloudFormation names after the stack that holds them (NAME-app-ExecutionRole-XXXX)."""
        return Sub(f"{_ARN}:iam::${{AWS::AccountId}}:role/{names.app_stack(self.name)}-*")

    def database_setup_role(self) -> Sub:
        """The data stack's execution role of its database setup task (a fixed name, stack/dbsetup.py)."""
        from mastofargate.stack.dbsetup import role_name

        return Sub(f"{_ARN}:iam::${{AWS::AccountId}}:role/{role_name(self.name)}")

    def smtp_users(self) -> Sub:
        """The data stack's SES SMTP user (stack/mail.py puts it under this path)."""
        return Sub(f"{_ARN}:iam::${{AWS::AccountId}}:user/mastofargate/{self.name}/*")

    def cfn_role(self) -> Sub:
        return Sub(f"{_ARN}:iam::${{AWS::AccountId}}:role/{names.ci_role(self.name, 'cloudformation')}")

    def zone(self) -> list[Sub]:
        zone = self.config.aws.hosted_zone_id
        return [Sub(f"{_ARN}:route53:::hostedzone/{zone}")] if zone else []


def _stack_reads(n: _Names) -> dict[str, Any]:
    return _statement(
        "ReadStacks",
        [
            "cloudformation:DescribeStacks",
            "cloudformation:DescribeStackEvents",
            "cloudformation:DescribeStackResource",
            "cloudformation:DescribeStackResources",
            "cloudformation:ListStackResources",
            "cloudformation:GetTemplate",
            "cloudformation:GetTemplateSummary",
            "cloudformation:DescribeChangeSet",
            "cloudformation:ListChangeSets",
        ],
        [*n.stack_arns(), *n.change_set_arns()],
    )


def _ci_stack_outputs(n: _Names) -> dict[str, Any]:
    """DescribeStacks on the CI stack, and nothing else of it: the deploy reads the CloudFormation role's ARN
    from its outputs to name it on every change set."""
    return _statement("ReadTheCiStackOutputs", ["cloudformation:DescribeStacks"], [n.ci_stack_arn()])


def _create_change_sets(n: _Names) -> dict[str, Any]:
    """Change sets on this server's stacks, and only ones CloudFormation applies with the CI stack's role
    (so the resources are created with that role's permissions, never the caller's)."""
    return _statement(
        "CreateChangeSets",
        ["cloudformation:CreateChangeSet"],
        [*n.stack_arns(), *n.change_set_arns()],
        Condition={"StringEquals": {"cloudformation:RoleArn": [n.cfn_role()]}},
    )


def _pass_cfn_role(n: _Names) -> dict[str, Any]:
    return _statement(
        "PassTheCloudFormationRole",
        ["iam:PassRole"],
        [n.cfn_role()],
        Condition={"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}},
    )


def _common_reads(n: _Names) -> list[dict[str, Any]]:
    """What deploy and plan read before they change anything (preflight)."""
    out = [
        _statement("DescribeTaskDefinitions", ["ecs:DescribeTaskDefinition"], ["*"]),  # no resource-level permission
        _statement("ReadServices", ["ecs:DescribeServices", "ecs:ListServices"], [n.cluster(), *n.cluster_children()]),
        _statement("ReadImages", ["ecr:DescribeImages", "ecr:DescribeRepositories"], n.repositories()),
        _statement("ReadSecretMetadata", ["secretsmanager:DescribeSecret"], [n.secrets()]),
        _statement("ReadDeployHistory", ["ssm:GetParameter"], [n.parameters()]),
        _statement("SesAccount", ["ses:GetAccount"], ["*"]),  # the sandbox check; no resource-level permission
        _statement(
            "ReadCertificates",
            ["acm:DescribeCertificate"],
            [Sub(f"{_ARN}:acm:${{AWS::Region}}:${{AWS::AccountId}}:certificate/*")],
        ),
        _statement(
            "UploadTemplates",
            ["s3:GetObject", "s3:PutObject"],
            [
                n.bucket("deploy", f"templates/{names.app_stack(n.name)}/*"),
                n.bucket("deploy", f"templates/{names.data_stack(n.name)}/*"),
            ],
        ),
    ]
    if n.zone():
        out.append(_statement("ReadZone", ["route53:GetHostedZone"], n.zone()))
    return out


def plan_policy(n: _Names) -> dict[str, Any]:
    return _doc(
        _stack_reads(n),
        _ci_stack_outputs(n),
        *_common_reads(n),
        _create_change_sets(n),
        _statement("DeleteChangeSets", ["cloudformation:DeleteChangeSet"], [*n.stack_arns(), *n.change_set_arns()]),
        _pass_cfn_role(n),
        _statement(
            "NeverApply",
            [
                "cloudformation:ExecuteChangeSet",
                "cloudformation:CreateStack",
                "cloudformation:UpdateStack",
                "cloudformation:DeleteStack",
                "secretsmanager:GetSecretValue",
            ],
            ["*"],
            effect="Deny",
        ),
    )


def images_policy(n: _Names) -> dict[str, Any]:
    return _doc(
        _statement("RegistryLogin", ["ecr:GetAuthorizationToken"], ["*"]),  # no resource-level permission
        _statement(
            "PushImages",
            [
                "ecr:BatchCheckLayerAvailability",
                "ecr:BatchGetImage",
                "ecr:CompleteLayerUpload",
                "ecr:DescribeImages",
                "ecr:DescribeRepositories",
                "ecr:GetDownloadUrlForLayer",
                "ecr:InitiateLayerUpload",
                "ecr:PutImage",
                "ecr:UploadLayerPart",
            ],
            n.repositories(),
        ),
    )


def deploy_policy(n: _Names) -> dict[str, Any]:
    return _doc(
        _stack_reads(n),
        _ci_stack_outputs(n),
        *_common_reads(n),
        _statement(
            "SmtpCredentials",  # deploy.mail: the SES SMTP key is made by the deploy, never by a template
            ["iam:ListAccessKeys", "iam:CreateAccessKey", "iam:DeleteAccessKey"],
            [n.smtp_users()],
        ),
        _create_change_sets(n),
        _statement(
            "ApplyChangeSets",
            ["cloudformation:DeleteChangeSet", "cloudformation:ExecuteChangeSet"],
            [*n.stack_arns(), *n.change_set_arns()],
        ),
        _statement(
            "ProtectTheDataStack",
            ["cloudformation:UpdateTerminationProtection", "cloudformation:CancelUpdateStack"],
            n.stack_arns(),
        ),
        _pass_cfn_role(n),
        _statement(
            "Secrets",
            [
                "secretsmanager:CreateSecret",
                "secretsmanager:GetSecretValue",
                "secretsmanager:PutSecretValue",
                "secretsmanager:TagResource",
            ],
            [n.secrets()],
        ),
        _statement("DeployHistory", ["ssm:PutParameter"], [n.parameters()]),
        _statement("RegisterTaskDefinitions", ["ecs:RegisterTaskDefinition"], ["*"]),  # no resource-level permission
        _statement(
            "RunJobs", ["ecs:RunTask"], n.task_definitions(), Condition={"ArnEquals": {"ecs:cluster": n.cluster()}}
        ),
        _statement(
            "WatchJobsAndRollouts",
            # UntagResource: the deploy clears the Spot fallback's record when it returns a service to Spot
            [
                "ecs:DescribeTasks",
                "ecs:ListTasks",
                "ecs:StopTask",
                "ecs:UpdateService",
                "ecs:TagResource",
                "ecs:UntagResource",
            ],
            [n.cluster(), *n.cluster_children(), *n.task_definitions()],
        ),
        _statement(
            "PassTaskRoles",
            ["iam:PassRole"],
            [n.app_roles(), n.database_setup_role()],
            Condition={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        ),
        _statement(
            "ReadJobLogs", ["logs:GetLogEvents", "logs:FilterLogEvents", "logs:DescribeLogStreams"], n.log_groups()
        ),
        _statement("RegistryLogin", ["ecr:GetAuthorizationToken"], ["*"]),  # asset export pulls the web image
        _statement("PullImages", ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], n.repositories()),
        _statement(
            "ListAssets", ["s3:ListBucket"], [n.bucket("media")], Condition={"StringLike": {"s3:prefix": ["assets/*"]}}
        ),
        _statement("UploadAssets", ["s3:GetObject", "s3:PutObject"], [n.bucket("media", "assets/*")]),
    )


def cloudformation_policy(n: _Names) -> dict[str, Any]:
    """What CloudFormation needs to create, change and delete the data and app stacks' resources. Names
    that are known bind the scope (roles, log groups, buckets, repositories); most resources of these
    services get generated IDs, so their actions cannot be bound to this server's resources by ARN."""
    name = n.name
    return _doc(
        _statement(
            "StackResources",
            [f"{service}:*" for service in CFN_SERVICES if service not in ("ecr", "logs", "s3", "ssm")],
            ["*"],
        ),
        _statement("Repositories", ["ecr:*"], n.repositories()),
        _statement("RegistryLogin", ["ecr:GetAuthorizationToken"], ["*"]),
        _statement(
            "LogGroups",
            ["logs:*"],
            [*n.log_groups(), Sub(f"{_ARN}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:/aws/*")],
        ),
        _statement(
            "LogDelivery", ["logs:DescribeLogGroups", "logs:CreateLogDelivery", "logs:DeleteLogDelivery"], ["*"]
        ),
        _statement(
            "Buckets",
            ["s3:*"],
            [
                Sub(f"{_ARN}:s3:::{name}-*-${{AWS::AccountId}}-${{AWS::Region}}"),
                Sub(f"{_ARN}:s3:::{name}-*-${{AWS::AccountId}}-${{AWS::Region}}/*"),
            ],
        ),
        _statement("Parameters", ["ssm:*"], [n.parameters()]),
        _statement("ReadSecretsForTasks", ["secretsmanager:DescribeSecret"], [n.secrets()]),
        _statement(
            "StackRoles",
            [
                "iam:AttachRolePolicy",
                "iam:CreateRole",
                "iam:DeleteRole",
                "iam:DeleteRolePolicy",
                "iam:DetachRolePolicy",
                "iam:GetRole",
                "iam:GetRolePolicy",
                "iam:ListAttachedRolePolicies",
                "iam:ListRolePolicies",
                "iam:PassRole",
                "iam:PutRolePolicy",
                "iam:TagRole",
                "iam:UntagRole",
                "iam:UpdateAssumeRolePolicy",
                "iam:UpdateRole",
                "iam:UpdateRoleDescription",
            ],
            [Sub(f"{_ARN}:iam::${{AWS::AccountId}}:role/{s}-*") for s in n.stacks],
        ),
        _statement(
            "SmtpUser",
            [
                "iam:CreateUser",
                "iam:DeleteUser",
                "iam:GetUser",
                "iam:PutUserPolicy",
                "iam:DeleteUserPolicy",
                "iam:GetUserPolicy",
                "iam:ListUserPolicies",
                "iam:ListAccessKeys",
                "iam:DeleteAccessKey",
                "iam:TagUser",
                "iam:UntagUser",
            ],
            [n.smtp_users()],
        ),
        _statement(
            "ServiceLinkedRoles",
            ["iam:CreateServiceLinkedRole"],
            ["*"],
            Condition={
                "StringLike": {
                    "iam:AWSServiceName": [
                        "ecs.amazonaws.com",
                        "elasticache.amazonaws.com",
                        "elasticfilesystem.amazonaws.com",
                        "elasticloadbalancing.amazonaws.com",
                        "rds.amazonaws.com",
                        "ecs.application-autoscaling.amazonaws.com",
                    ]
                }
            },
        ),
        {
            "Sid": "NeverChangeTheCiStack",
            "Effect": "Deny",
            "NotAction": ["cloudformation:DescribeStacks"],
            "Resource": [n.ci_stack_arn()],
        },
        _statement(
            "NeverTheCiRoles", ["iam:*"], [Sub(f"{_ARN}:iam::${{AWS::AccountId}}:role/{name}-ci-*")], effect="Deny"
        ),
    )


def _trust(provider: Any, subject: str | None, service: str | None = None) -> dict[str, Any]:
    if service is not None:
        return _doc({"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"})
    return _doc(
        {
            "Effect": "Allow",
            "Principal": {"Federated": provider},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {f"{GITHUB_ISSUER}:aud": AUDIENCE, f"{GITHUB_ISSUER}:sub": subject},
            },
        }
    )


_CHECKOV_SKIPS = {
    "cloudformation": [
        ("CKV_AWS_107", "CloudFormation creates the stacks' KMS key and roles; only it can assume this role"),
        ("CKV_AWS_108", "CloudFormation manages this server's buckets and key; only it can assume this role"),
        ("CKV_AWS_109", "CloudFormation writes the stacks' role and key policies; the CI stack's roles are denied"),
        (
            "CKV_AWS_110",
            "creating the stacks' task roles is CloudFormation's job here; the CI stack's roles are denied",
        ),
        ("CKV_AWS_111", "resources get generated IDs; only CloudFormation, for this server's stacks, gets this role"),
    ],
}


def build_ci(config: Config, families: list[str]) -> Template | None:
    """The CI stack's template, or None when no repository is configured (`[ci] repository`).
    `families`: the task definition families of the app template (RunTask is bound to exactly those)."""
    if not config.ci.repository:
        return None
    n = _Names(config, families)
    t = Template()
    t.set_version("2010-09-09")
    t.set_description(
        f"mastofargate {config.aws.name}: roles for GitHub Actions in {config.ci.repository} (no stored keys)"
    )
    t.set_metadata({"mastofargate": {"stack": names.ci_stack(config.aws.name), "repository": config.ci.repository}})
    if config.ci.oidc_provider_arn:
        provider: Any = config.ci.oidc_provider_arn
    else:
        oidc = iam.OIDCProvider(
            "GitHubOidcProvider",
            Url=f"https://{GITHUB_ISSUER}",
            ClientIdList=[AUDIENCE],
            Metadata={
                "Description": "GitHub Actions' OIDC issuer (one per account; set [ci] oidc_provider_arn to reuse one)"
            },
        )
        t.add_resource(oidc)
        provider = Ref(oidc)
    subs = subjects(config)
    roles = {
        "plan": ("PlanRole", plan_policy(n), "Pull requests: read and plan (change sets are never executed)"),
        "images": ("ImagesRole", images_policy(n), "Pushes to the main branch: push to the two image repositories"),
        "deploy": ("DeployRole", deploy_policy(n), "The deploy job (protected environment): mastofargate deploy"),
        "cloudformation": (
            "CloudFormationRole",
            cloudformation_policy(n),
            "CloudFormation applies this server's change sets with this role (passed only by the CI roles)",
        ),
    }
    for kind, (logical_id, policy, description) in roles.items():
        trust = (
            _trust(None, None, service="cloudformation.amazonaws.com")
            if kind == "cloudformation"
            else _trust(provider, subs[kind])
        )
        meta: dict[str, Any] = {"Description": description}
        skips = _CHECKOV_SKIPS.get(kind)
        if skips:
            meta["checkov"] = {"skip": [{"id": cid, "comment": why} for cid, why in sorted(skips)]}
        role = iam.Role(
            logical_id,
            RoleName=names.ci_role(config.aws.name, kind),
            Description=description,
            AssumeRolePolicyDocument=trust,
            MaxSessionDuration=3600,
            Policies=[iam.Policy(PolicyName=f"{kind}-policy", PolicyDocument=policy)],
            Metadata=meta,
        )
        t.add_resource(role)
        t.add_output(Output(f"{logical_id}Arn", Description=description, Value=GetAtt(role, "Arn")))
    return t
