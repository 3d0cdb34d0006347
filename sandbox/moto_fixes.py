"""Small fixes of moto 5.2's models that the real templates trip over (each: what moto does, what AWS does).

- `Ref` to an RDS DB parameter group or an EFS access point returned the Python object; AWS returns the
  group's name / the access point's id;
- `Fn::GetAtt` Arn / FileSystemId of an EFS file system, Arn / AccessPointId of an access point, the
  ALB's DNSName, CanonicalHostedZoneID, LoadBalancerFullName, LoadBalancerName, LoadBalancerArn and the
  target group's TargetGroupFullName, TargetGroupArn, TargetGroupName were "not implemented" in moto;
- a VPC made by CloudFormation ignored EnableDnsHostnames/EnableDnsSupport (RunTask then failed on the
  task's ENI); AWS applies them;
- Route 53 hosted zone ids did not always start with "Z" as AWS's do (and as the config requires);
- a bucket policy statement whose Condition does not hold was taken as a Deny (so the TLS-only policy,
  `Deny` when aws:SecureTransport is "false", refused every object request); AWS skips such a statement,
  and the SDKs reach S3 over TLS, so here requests count as aws:SecureTransport "true";
- an ECS task held ONE container, made from the task definition's first container definition; on AWS a
  task holds a container per definition (a task of several containers: `layout = "one-task"`), each
  with its own name, image and exit code;
- a KMS key made by CloudFormation kept its KeyPolicy as the template's JSON object, and DescribeKey then
  failed (HTTP 500); AWS stores the policy document as text, as it does for CreateKey. An update of the
  key (its description, policy or rotation) dropped it from the stack's resources; AWS updates it in place.
  ScheduleKeyDeletion failed (HTTP 500) when given a key ARN; AWS takes a key id or ARN;
- a log group made by CloudFormation ignored KmsKeyId, and an update of the resource changed nothing (the
  log group fell out of the stack's resource map); AWS creates it with the key and updates KmsKeyId
  (AssociateKmsKey/DisassociateKmsKey) and RetentionInDays in place;
- an ECS cluster made or updated by CloudFormation ignored Configuration (ECS Exec's key and logging);
  AWS applies it, and DescribeClusters returns it;
- SES v2 `GetAccount` did not exist; here it answers as for a new AWS account: sending enabled, still in
  the SES sandbox (ProductionAccessEnabled false, 200 mails a day, 1 a second).
"""

from __future__ import annotations

from typing import Any


def apply() -> None:
    """Small fixes of moto models our templates trip over (listed in the module docstring)."""
    _bucket_policy_conditions()
    _kms_key_policy_as_text()
    _log_group_key_and_updates()
    _cluster_configuration()
    from moto.efs.models import AccessPoint, FileSystem
    from moto.rds.models import DBParameterGroup
    from moto.route53.models import HostedZoneIdentifier

    # Route 53 zone ids start with "Z" on AWS (and our config validates that); moto's may not.
    original_generate = HostedZoneIdentifier.generate
    if not getattr(original_generate, "_sandbox_wrapped", False):

        def generate(self: Any, *args: Any, **kwargs: Any) -> str:
            return "Z" + str(original_generate(self, *args, **kwargs))[1:]

        generate._sandbox_wrapped = True  # type: ignore[attr-defined]
        HostedZoneIdentifier.generate = generate  # type: ignore[method-assign]

    # `Ref` to these returned the Python object (no physical_resource_id), not the name/id.
    DBParameterGroup.physical_resource_id = property(lambda self: self.name)  # type: ignore[attr-defined]
    AccessPoint.physical_resource_id = property(lambda self: self.access_point_id)  # type: ignore[attr-defined]
    # `Fn::GetAtt` Arn of an EFS file system / access point was not implemented.
    _add_attributes(FileSystem, {"Arn": "file_system_arn", "FileSystemId": "file_system_id"})
    # moto's VPC ignores EnableDnsHostnames/EnableDnsSupport; ECS's RunTask then fails on the task's ENI.
    from moto.ec2.models.vpcs import VPC

    original_vpc_create = VPC.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]
    if not getattr(original_vpc_create, "_sandbox_wrapped", False):

        def vpc_create(cls: Any, resource_name: str, cloudformation_json: Any, *args: Any, **kwargs: Any) -> Any:
            vpc = original_vpc_create(cls, resource_name, cloudformation_json, *args, **kwargs)
            props = cloudformation_json.get("Properties", {})
            vpc.enable_dns_hostnames = str(props.get("EnableDnsHostnames", False)).lower() == "true"
            vpc.enable_dns_support = str(props.get("EnableDnsSupport", True)).lower() == "true"
            return vpc

        vpc_create._sandbox_wrapped = True  # type: ignore[attr-defined]
        VPC.create_from_cloudformation_json = classmethod(vpc_create)  # type: ignore[method-assign,assignment]
    # ALB attributes moto leaves "not implemented" (alarms and the DNS alias use them).
    from moto.elbv2.models import FakeLoadBalancer, FakeTargetGroup

    _add_attributes(
        FakeLoadBalancer,
        {
            "DNSName": "dns_name",
            "LoadBalancerName": "name",
            "CanonicalHostedZoneID": "canonical_hosted_zone_id",
            "LoadBalancerFullName": "_sandbox_full_name",
            "LoadBalancerArn": "arn",
        },
    )
    FakeLoadBalancer._sandbox_full_name = property(lambda self: self.arn.split(":loadbalancer/", 1)[-1])  # type: ignore[attr-defined]
    _add_attributes(
        FakeTargetGroup,
        {"TargetGroupFullName": "_sandbox_full_name", "TargetGroupArn": "arn", "TargetGroupName": "name"},
    )
    FakeTargetGroup._sandbox_full_name = property(lambda self: self.arn.rsplit(":", 1)[-1])  # type: ignore[attr-defined]
    _add_attributes(AccessPoint, {"Arn": "access_point_arn", "AccessPointId": "access_point_id"})
    _task_containers()
    # SES v2 GetAccount (GET /v2/email/account): moto routes it to SESV2Response, which had no handler.
    from moto.sesv2.responses import SESV2Response

    def get_account(self: Any) -> str:
        import json

        return json.dumps(
            {
                "DedicatedIpAutoWarmupEnabled": False,
                "EnforcementStatus": "HEALTHY",
                "ProductionAccessEnabled": False,
                "SendQuota": {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 0.0},
                "SendingEnabled": True,
            }
        )

    SESV2Response.get_account = get_account  # type: ignore[attr-defined]
    from moto.sesv2 import urls as sesv2_urls

    sesv2_urls.url_paths.setdefault("{0}/v2/email/account$", SESV2Response.dispatch)


def _task_containers() -> None:
    """One container per container definition (moto made one, from the first definition)."""
    import copy

    from moto.ecs.models import Task

    original_init = Task.__init__
    if getattr(original_init, "_sandbox_wrapped", False):
        return

    def init(self: Any, cluster: Any, task_definition: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, cluster, task_definition, *args, **kwargs)
        definitions = list(task_definition.container_definitions or [])
        if len(definitions) < 2 or len(self.containers) != 1:
            return
        first = self.containers[0]
        containers = []
        for i, definition in enumerate(definitions):
            container = first if i == 0 else copy.copy(first)
            if i:
                container.container_arn = f"{first.container_arn.rsplit('/', 1)[0]}/{i}-{first.container_arn[-12:]}"
            container.name = definition.get("name")
            container.image = definition.get("image")
            container.memory = definition.get("memory")
            container.cpu = definition.get("cpu", 0)
            container.environment = definition.get("environment")
            container.command = definition.get("command")
            containers.append(container)
        self.containers = containers

    init._sandbox_wrapped = True  # type: ignore[attr-defined]
    Task.__init__ = init  # type: ignore[method-assign]


def _kms_key_policy_as_text() -> None:
    import json

    from moto.kms.models import Key

    original = Key.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]
    if getattr(original, "_sandbox_wrapped", False):
        return

    def create(cls: Any, resource_name: str, cloudformation_json: Any, *args: Any, **kwargs: Any) -> Any:
        props = cloudformation_json.get("Properties", {})
        if isinstance(props.get("KeyPolicy"), dict):
            cloudformation_json = {
                **cloudformation_json,
                "Properties": {**props, "KeyPolicy": json.dumps(props["KeyPolicy"])},
            }
        return original(cls, resource_name, cloudformation_json, *args, **kwargs)

    def update(
        cls: Any, original_resource: Any, new_resource_name: str, cloudformation_json: Any, *args: Any, **kwargs: Any
    ) -> Any:
        props = cloudformation_json.get("Properties", {})
        policy = props.get("KeyPolicy")
        original_resource.policy = json.dumps(policy) if isinstance(policy, dict) else policy
        original_resource.description = props.get("Description", "")
        original_resource.key_rotation_status = props.get("EnableKeyRotation", False)
        return original_resource

    create._sandbox_wrapped = True  # type: ignore[attr-defined]
    Key.create_from_cloudformation_json = classmethod(create)  # type: ignore[method-assign,assignment]
    Key.update_from_cloudformation_json = classmethod(update)  # type: ignore[method-assign,assignment]

    from moto.kms.models import KmsBackend

    original_schedule = KmsBackend.schedule_key_deletion

    def schedule_key_deletion(self: Any, key_id: str, pending_window_in_days: int) -> Any:
        return original_schedule(self, self.get_key_id(key_id), pending_window_in_days)

    KmsBackend.schedule_key_deletion = schedule_key_deletion  # type: ignore[method-assign]


def _log_group_key_and_updates() -> None:
    from moto.logs.models import LogGroup, logs_backends

    original = LogGroup.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]
    if getattr(original, "_sandbox_wrapped", False):
        return

    def create(cls: Any, resource_name: str, cloudformation_json: Any, *args: Any, **kwargs: Any) -> Any:
        group = original(cls, resource_name, cloudformation_json, *args, **kwargs)
        group.kms_key_id = cloudformation_json.get("Properties", {}).get("KmsKeyId")
        return group

    def update(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        props = cloudformation_json.get("Properties", {})
        if props.get("LogGroupName", original_resource.name) != original_resource.name:
            logs_backends[account_id][region_name].delete_log_group(original_resource.name)
            return create(cls, new_resource_name, cloudformation_json, account_id, region_name)
        original_resource.kms_key_id = props.get("KmsKeyId")
        original_resource.retention_in_days = props.get("RetentionInDays")
        return original_resource

    create._sandbox_wrapped = True  # type: ignore[attr-defined]
    LogGroup.create_from_cloudformation_json = classmethod(create)  # type: ignore[method-assign,assignment]
    LogGroup.update_from_cloudformation_json = classmethod(update)  # type: ignore[method-assign,assignment]


def _camel(node: Any) -> Any:
    """CloudFormation's property names (KmsKeyId) as the ECS API's (kmsKeyId)."""
    if isinstance(node, dict):
        return {k[:1].lower() + k[1:]: _camel(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_camel(v) for v in node]
    return node


def _cluster_configuration() -> None:
    from moto.ecs.models import Cluster

    create_original = Cluster.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]
    update_original = Cluster.update_from_cloudformation_json.__func__  # type: ignore[attr-defined]
    if getattr(create_original, "_sandbox_wrapped", False):
        return

    def create(cls: Any, resource_name: str, cloudformation_json: Any, *args: Any, **kwargs: Any) -> Any:
        cluster = create_original(cls, resource_name, cloudformation_json, *args, **kwargs)
        cluster.configuration = _camel(cloudformation_json.get("Properties", {}).get("Configuration"))
        return cluster

    def update(
        cls: Any, original_resource: Any, new_resource_name: str, cloudformation_json: Any, *args: Any, **kwargs: Any
    ) -> Any:
        cluster = update_original(cls, original_resource, new_resource_name, cloudformation_json, *args, **kwargs)
        cluster.configuration = _camel(cloudformation_json.get("Properties", {}).get("Configuration"))
        return cluster

    create._sandbox_wrapped = True  # type: ignore[attr-defined]
    Cluster.create_from_cloudformation_json = classmethod(create)  # type: ignore[method-assign,assignment]
    Cluster.update_from_cloudformation_json = classmethod(update)  # type: ignore[method-assign,assignment]


def _add_attributes(cls: type, attrs: dict[str, str]) -> None:
    def has_cfn_attr(klass: type, attr: str) -> bool:
        return attr in attrs

    def get_cfn_attribute(self: Any, attribute_name: str) -> Any:
        from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

        if attribute_name not in attrs:
            raise UnformattedGetAttTemplateException()
        return getattr(self, attrs[attribute_name])

    cls.has_cfn_attr = classmethod(has_cfn_attr)  # type: ignore[attr-defined]
    cls.get_cfn_attribute = get_cfn_attribute  # type: ignore[attr-defined]


SECURE_TRANSPORT = {"aws:SecureTransport": "true"}


def _conditions_hold(conditions: dict[str, dict[str, Any]]) -> bool:
    """Bool and StringEquals against the request's context (aws:SecureTransport "true"); a key the context
    lacks makes them false, as on AWS. Other operators are taken to hold (moto's own default)."""
    for operator, pairs in conditions.items():
        if operator not in ("Bool", "StringEquals"):
            continue
        for key, expected in pairs.items():
            wanted = [str(v).lower() for v in (expected if isinstance(expected, list) else [expected])]
            actual = SECURE_TRANSPORT.get(key)
            if actual is None or actual.lower() not in wanted:
                return False
    return True


def _bucket_policy_conditions() -> None:
    """Bucket policies evaluated as S3 does: a statement applies only when its conditions hold; an explicit
    Deny wins over an Allow."""
    import json

    from moto.iam.access_control import IAMPolicyStatement, PermissionResult
    from moto.s3.models import FakeBucket

    if getattr(FakeBucket.get_permission, "_sandbox_wrapped", False):
        return

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        statements = json.loads(self.policy.decode()).get("Statement", [])
        result = PermissionResult.NEUTRAL
        for raw in statements if isinstance(statements, list) else [statements]:
            if not _conditions_hold(raw.get("Condition") or {}):
                continue
            verdict = IAMPolicyStatement({k: v for k, v in raw.items() if k != "Condition"}).is_action_permitted(
                action, resource
            )
            if verdict == PermissionResult.DENIED:
                return verdict
            if verdict == PermissionResult.PERMITTED:
                result = verdict
        return result

    get_permission._sandbox_wrapped = True  # type: ignore[attr-defined]
    FakeBucket.get_permission = get_permission  # type: ignore[method-assign]
