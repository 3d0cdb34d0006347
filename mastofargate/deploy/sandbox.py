"""A local AWS emulator for `make demo` and the end-to-end deploy tests — never used against real AWS.

`python -m mastofargate.deploy.sandbox --port N` (0: a free port; `--task-seconds`/`--rollout-seconds`
set the emulated durations, 1 s each) starts a moto server in this process and prints
`sandbox: listening on http://127.0.0.1:N` once it accepts requests; SIGTERM/SIGINT stop it. Point the
tool at it with `AWS_ENDPOINT_URL=http://127.0.0.1:N` (and any dummy credentials); nothing else in the tool knows it is
talking to an emulator. The *real* templates deploy unchanged: where moto 5.2 cannot do what a template
or the deploy flow needs, this module adds the smallest stand-in, listed here.

Stand-ins for CloudFormation resource types moto does not model (registered into moto's CloudFormation
model map; each records its properties, returns a plausible physical id for `Ref` and plausible values
for the `Fn::GetAtt`s our templates use; nothing is provisioned unless said):
  AWS::Backup::BackupVault / BackupPlan / BackupSelection   ids and ARNs only
  AWS::CloudFront::OriginAccessControl                      `Id`
  AWS::CloudFront::Distribution                             `Id`, `DomainName` (dXXXX.cloudfront.net)
  AWS::S3::BucketPolicy                                     also stores the policy on the moto bucket
  AWS::ElastiCache::SubnetGroup / ParameterGroup            names only
  AWS::ElastiCache::ReplicationGroup                        `PrimaryEndPoint.Address/Port`, `ReaderEndPoint.*`
  AWS::CertificateManager::Certificate                      requests a certificate in moto's ACM (Ref = ARN)
  AWS::ECS::ClusterCapacityProviderAssociations             sets the cluster's capacity providers in moto's ECS
  AWS::ServiceDiscovery::PrivateDnsNamespace / Service      `Id`, `Arn`, `HostedZoneId`
  AWS::Scheduler::Schedule                                  `Arn`
  AWS::SNS::TopicPolicy                                     id only
  AWS::CloudWatch::Alarm                                    `Arn`
  AWS::ApplicationAutoScaling::ScalableTarget / ScalingPolicy   ids and ARNs only

Replacements for moto's own CloudFormation handlers that drop what the deploy reads:
  AWS::ECS::TaskDefinition   moto keeps only family, containers, volumes and memory, and re-registers
                             PascalCase containers on update; this one registers every property
                             (cpu, network mode, roles, runtime platform, compatibilities), camelCased.
  AWS::ECS::Service          moto drops the network configuration, capacity providers, deployment
                             configuration and load balancers, never deletes the service and never starts
                             a new deployment on update; this one keeps them, starts a new PRIMARY
                             deployment (rolloutState IN_PROGRESS) when the task definition changes (a
                             count change alone scales the PRIMARY one, as ECS does), and deletes the
                             service with the stack.

Fixes of moto models our templates trip over:
  - `Ref` to an RDS DB parameter group or an EFS access point returned the Python object, not its id;
  - `Fn::GetAtt` Arn of an EFS file system / access point, and the ALB's CanonicalHostedZoneID and
    LoadBalancerFullName and the target group's TargetGroupFullName, were not implemented;
  - a VPC made by CloudFormation ignored EnableDnsHostnames (RunTask then failed on the task's ENI);
  - Route 53 zone ids did not start with "Z" as AWS's do (and as the config requires).

Patches of moto's CloudFormation backend (change sets are how every deploy talks to CloudFormation):
  - a CREATE change set's stack sees the region's exports (moto builds it without them, so every
    `Fn::ImportValue` of the app stack failed);
  - executing a change set refreshes the stack's outputs, exports and parameters (moto keeps those of
    the empty REVIEW_IN_PROGRESS stack), records one event per changed resource (moto records only stack
    events), and turns an exception while applying into a rolled-back stack with a `*_FAILED` event
    carrying the reason, as CloudFormation would, instead of an HTTP 500; and, as AWS does, drops the
    stack's change sets once one has been executed;
  - a resource whose only change is a parameter, used directly or through a condition (`Fn::If`), or a
    changed task definition it refers to (a new revision, so a new ARN), is listed in the change set and
    updated when it executes (moto listed parameter-only changes not at all and missed conditions, so an
    image-tag upgrade showed no changes and ServicesEnabled=true did nothing);
  - `UpdateTerminationProtection` exists, and `DeleteStack` refuses a protected stack (moto has neither);
  - deleting a stack forgets resources moto cannot delete (e.g. a VPC with dependants) instead of failing.

Failures on purpose (so failure paths run against the emulator too), chosen by the image tag:
  - a one-off task whose image tag contains `-sandbox-exit-N` exits with code N (e.g. a failing migration);
  - a service rollout to an image tag containing `-sandbox-unhealthy` trips the deployment circuit
    breaker: two stopped tasks (exit code 1), the deployment FAILED with "ECS deployment circuit breaker:
    tasks failed to start.", a service event, and a rollback deployment of the previous task definition.
    (On AWS CloudFormation would then roll the stack back too; the emulator leaves the stack updated.)

The emulator's clock (a background thread, every 0.25 s) does what AWS would do by itself:
  - a task started by `RunTask` stops ~1 s later with exit code 0 and stoppedReason "Essential container
    in task exited"; it first writes one log line (`[sandbox] ran: COMMAND`) to the task's awslogs
    stream, and for `tootctl accounts create` the `New password: ...` line real tootctl prints;
  - a service deployment IN_PROGRESS for ~1 s becomes COMPLETED with runningCount = desiredCount; the
    older deployments go away, as after a successful rolling deploy; a service whose desired count
    changed (without a new task definition, so without a new deployment, as on ECS) reaches it ~1 s later.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import signal
import string
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

TASK_SECONDS = 1.0  # how long an emulated one-off task "runs"
ROLLOUT_SECONDS = 1.0  # how long an emulated service deployment takes
TICK_SECONDS = 0.25
UNHEALTHY_MARK = "-sandbox-unhealthy"  # image tag marker: the service's new tasks never get healthy
STAND_IN_BASE_TYPE = "Mastofargate::Sandbox::StandIn"

_installed = False
_install_lock = threading.Lock()


def _rand(n: int, alphabet: str = string.ascii_lowercase + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


# ---------------------------------------------------------------------------------------------------
# Stand-in resources
# ---------------------------------------------------------------------------------------------------


def _stand_in_specs() -> dict[str, dict[str, Any]]:
    """type -> {name: the property naming the resource, ref: how the physical id is made, attrs: GetAtts}.

    `ref` and each attr are functions of (physical_id, properties, account, region).
    """

    def arn(service: str, kind: str, sep: str = "/") -> Any:
        return lambda pid, p, acct, region: f"arn:aws:{service}:{region}:{acct}:{kind}{sep}{pid}"

    def cache_host(pid: str, p: dict[str, Any], acct: str, region: str) -> str:
        return f"master.{pid}.{_rand(6)}.use1.cache.amazonaws.com"

    return {
        "AWS::Backup::BackupVault": {
            "name": "BackupVaultName",
            "ref": lambda name, p, acct, region: name,
            "attrs": {
                "BackupVaultName": lambda pid, p, acct, region: pid,
                "BackupVaultArn": arn("backup", "backup-vault", ":"),
            },
        },
        "AWS::Backup::BackupPlan": {
            "ref": lambda name, p, acct, region: str(_uuid()),
            "attrs": {
                "BackupPlanId": lambda pid, p, acct, region: pid,
                "BackupPlanArn": arn("backup", "backup-plan", ":"),
                "VersionId": lambda pid, p, acct, region: _rand(32),
            },
        },
        "AWS::Backup::BackupSelection": {
            "ref": lambda name, p, acct, region: _uuid(),
            "attrs": {
                "SelectionId": lambda pid, p, acct, region: pid,
                "BackupPlanId": lambda pid, p, acct, region: str(p.get("BackupPlanId", "")),
            },
        },
        "AWS::CloudFront::OriginAccessControl": {
            "ref": lambda name, p, acct, region: "E" + _rand(13, string.ascii_uppercase + string.digits),
            "attrs": {"Id": lambda pid, p, acct, region: pid},
        },
        "AWS::CloudFront::Distribution": {
            "ref": lambda name, p, acct, region: "E" + _rand(13, string.ascii_uppercase + string.digits),
            "attrs": {
                "Id": lambda pid, p, acct, region: pid,
                "DomainName": lambda pid, p, acct, region: f"d{_rand(13)}.cloudfront.net",
            },
        },
        "AWS::S3::BucketPolicy": {
            "ref": lambda name, p, acct, region: f"{p.get('Bucket')}-policy-{_rand(8)}",
            "attrs": {},
            "create": _put_bucket_policy,
        },
        "AWS::ElastiCache::SubnetGroup": {
            "name": "CacheSubnetGroupName",
            "ref": lambda name, p, acct, region: name.lower(),
            "attrs": {},
        },
        "AWS::ElastiCache::ParameterGroup": {
            "ref": lambda name, p, acct, region: name.lower(),
            "attrs": {},
        },
        "AWS::ElastiCache::ReplicationGroup": {
            "name": "ReplicationGroupId",
            "ref": lambda name, p, acct, region: name.lower()[:40],
            "attrs": {
                "PrimaryEndPoint.Address": cache_host,
                "PrimaryEndPoint.Port": lambda pid, p, acct, region: str(p.get("Port", 6379)),
                "ReaderEndPoint.Address": cache_host,
                "ReaderEndPoint.Port": lambda pid, p, acct, region: str(p.get("Port", 6379)),
            },
        },
        "AWS::CertificateManager::Certificate": {
            "ref": _request_certificate,
            "attrs": {"Id": lambda pid, p, acct, region: pid.rsplit("/", 1)[-1]},
        },
        "AWS::ECS::ClusterCapacityProviderAssociations": {
            "ref": lambda name, p, acct, region: str(p.get("Cluster")),
            "attrs": {},
            "create": _put_capacity_providers,
        },
        "AWS::ServiceDiscovery::PrivateDnsNamespace": {
            "ref": lambda name, p, acct, region: "ns-" + _rand(16),
            "attrs": {
                "Id": lambda pid, p, acct, region: pid,
                "Arn": arn("servicediscovery", "namespace"),
                "HostedZoneId": lambda pid, p, acct, region: "Z" + _rand(13, string.ascii_uppercase + string.digits),
            },
        },
        "AWS::ServiceDiscovery::Service": {
            "ref": lambda name, p, acct, region: "srv-" + _rand(16),
            "attrs": {
                "Id": lambda pid, p, acct, region: pid,
                "Arn": arn("servicediscovery", "service"),
                "Name": lambda pid, p, acct, region: str(p.get("Name", "")),
            },
        },
        "AWS::Scheduler::Schedule": {
            "name": "Name",
            "ref": lambda name, p, acct, region: name,
            "attrs": {"Arn": arn("scheduler", "schedule/default")},
        },
        "AWS::SNS::TopicPolicy": {
            "ref": lambda name, p, acct, region: name,
            "attrs": {"Id": lambda pid, p, acct, region: pid},
        },
        "AWS::CloudWatch::Alarm": {
            "name": "AlarmName",
            "ref": lambda name, p, acct, region: name,
            "attrs": {"Arn": arn("cloudwatch", "alarm", ":")},
        },
        "AWS::ApplicationAutoScaling::ScalableTarget": {
            "ref": lambda name, p, acct, region: (
                f"{p.get('ResourceId')}|{p.get('ScalableDimension')}|{p.get('ServiceNamespace')}"
            ),
            "attrs": {"Id": lambda pid, p, acct, region: pid},
        },
        "AWS::ApplicationAutoScaling::ScalingPolicy": {
            "ref": lambda name, p, acct, region: (
                f"arn:aws:autoscaling:{region}:{acct}:scalingPolicy:{_uuid()}:resource/ecs/"
                f"{str(p.get('ScalingTargetId', '')).split('|')[0]}:policyName/{p.get('PolicyName', name)}"
            ),
            "attrs": {"Arn": lambda pid, p, acct, region: pid},
        },
    }


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


def _put_bucket_policy(props: dict[str, Any], account: str, region: str) -> None:
    from moto.s3.models import s3_backends

    bucket = str(props.get("Bucket"))
    policy = props.get("PolicyDocument", {})
    s3_backends[account]["aws"].put_bucket_policy(bucket, json.dumps(policy).encode())


def _request_certificate(name: str, props: dict[str, Any], account: str, region: str) -> str:
    from moto.acm.models import acm_backends

    return str(
        acm_backends[account][region].request_certificate(
            domain_name=str(props.get("DomainName")), idempotency_token=None, subject_alt_names=[], tags=[]
        )
    )


def _put_capacity_providers(props: dict[str, Any], account: str, region: str) -> None:
    from moto.ecs.models import ecs_backends

    strategy = [
        {
            "capacityProvider": s.get("CapacityProvider"),
            "weight": int(s.get("Weight", 0)),
            "base": int(s.get("Base", 0)),
        }
        for s in props.get("DefaultCapacityProviderStrategy", [])
    ]
    ecs_backends[account][region].put_cluster_capacity_providers(
        str(props.get("Cluster")), list(props.get("CapacityProviders", [])), strategy
    )


def _make_stand_in_base() -> type:
    from moto.core.common_models import CloudFormationModel

    class StandIn(CloudFormationModel):
        """A resource moto cannot create: remembers its properties and answers Ref/GetAtt."""

        spec: dict[str, Any] = {}  # noqa: RUF012  (set per subclass)
        resource_type = STAND_IN_BASE_TYPE

        def __init__(self, physical_id: str, properties: dict[str, Any], account: str, region: str) -> None:
            self.physical_resource_id = physical_id
            self.properties = properties
            self.account = account
            self.region = region
            self._attrs: dict[str, str] = {}

        @staticmethod
        def cloudformation_name_type() -> str:
            return ""

        @staticmethod
        def cloudformation_type() -> str:
            return STAND_IN_BASE_TYPE

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr in cls.spec.get("attrs", {})

        def get_cfn_attribute(self, attribute_name: str) -> Any:
            from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

            fn = self.spec.get("attrs", {}).get(attribute_name)
            if fn is None:
                raise UnformattedGetAttTemplateException()
            if attribute_name not in self._attrs:  # stable across reads, like a real resource's attributes
                self._attrs[attribute_name] = fn(self.physical_resource_id, self.properties, self.account, self.region)
            return self._attrs[attribute_name]

        @classmethod
        def create_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> Any:
            props = dict(cloudformation_json.get("Properties", {}))
            create = cls.spec.get("create")
            if create:
                create(props, account_id, region_name)
            pid = cls.spec["ref"](resource_name, props, account_id, region_name)
            return cls(pid, props, account_id, region_name)

        @classmethod
        def update_from_cloudformation_json(  # type: ignore[override]
            cls,
            original_resource: Any,
            new_resource_name: str,
            cloudformation_json: Any,
            account_id: str,
            region_name: str,
        ) -> Any:
            props = dict(cloudformation_json.get("Properties", {}))
            create = cls.spec.get("create")
            if create:
                create(props, account_id, region_name)
            original_resource.properties = props
            return original_resource

        @classmethod
        def delete_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
        ) -> None:
            return None

        def delete(self, account_id: str, region_name: str) -> None:
            return None

        def is_created(self) -> bool:
            return True

    return StandIn


def _ecs_models() -> dict[str, type]:
    """Replacement CloudFormation handlers for ECS task definitions and services (see module docstring)."""
    from moto.core.utils import pascal_to_camelcase, remap_nested_keys
    from moto.ecs.models import Service, TaskDefinition, ecs_backends

    def camel(value: Any) -> Any:
        return remap_nested_keys(value, pascal_to_camelcase) if value is not None else None

    def task_definition_kwargs(props: dict[str, Any]) -> dict[str, Any]:
        return {
            "family": props.get("Family") or f"task-definition-{_rand(6)}",
            "container_definitions": camel(props.get("ContainerDefinitions", [])),
            "volumes": camel(props.get("Volumes")),
            "network_mode": props.get("NetworkMode"),
            "requires_compatibilities": props.get("RequiresCompatibilities"),
            "cpu": props.get("Cpu"),
            "memory": props.get("Memory"),
            "task_role_arn": props.get("TaskRoleArn"),
            "execution_role_arn": props.get("ExecutionRoleArn"),
            "runtime_platform": camel(props.get("RuntimePlatform")),
            "tags": camel(props.get("Tags")),
        }

    class FullTaskDefinition(TaskDefinition):
        @classmethod
        def create_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> Any:
            kw = task_definition_kwargs(cloudformation_json["Properties"])
            td = ecs_backends[account_id][region_name].register_task_definition(**kw)
            td._sandbox_props = json.dumps(kw, sort_keys=True, default=str)
            return td

        @classmethod
        def update_from_cloudformation_json(  # type: ignore[override]
            cls,
            original_resource: Any,
            new_resource_name: str,
            cloudformation_json: Any,
            account_id: str,
            region_name: str,
        ) -> Any:
            kw = task_definition_kwargs(cloudformation_json["Properties"])
            if getattr(original_resource, "_sandbox_props", None) == json.dumps(kw, sort_keys=True, default=str):
                return original_resource
            backend = ecs_backends[account_id][region_name]
            td = backend.register_task_definition(**kw)
            td._sandbox_props = json.dumps(kw, sort_keys=True, default=str)
            backend.deregister_task_definition(original_resource.arn)
            return td

        @classmethod
        def delete_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
        ) -> None:
            return None

    def service_settings(props: dict[str, Any]) -> dict[str, Any]:
        net = props.get("NetworkConfiguration", {}).get("AwsvpcConfiguration")
        return {
            "network_configuration": {"awsvpcConfiguration": camel(net)} if net else None,
            "load_balancers": camel(props.get("LoadBalancers", [])),
            "service_registries": camel(props.get("ServiceRegistries", [])),
            "platform_version": props.get("PlatformVersion"),
            "propagate_tags": props.get("PropagateTags", "NONE"),
        }

    def extras(service: Any, props: dict[str, Any]) -> None:
        service.capacity_provider_strategy = camel(props.get("CapacityProviderStrategy", []))
        service.deployment_configuration = camel(props.get("DeploymentConfiguration", {}))
        service.health_check_grace_period_seconds = props.get("HealthCheckGracePeriodSeconds")
        service.enable_execute_command = props.get("EnableExecuteCommand", False)

    def cluster_name(props: dict[str, Any]) -> str:
        c = props["Cluster"]
        return str(getattr(c, "name", c)).split("/")[-1]

    def task_definition_arn(props: dict[str, Any]) -> str:
        td = props["TaskDefinition"]
        return str(getattr(td, "arn", td))

    class FullService(Service):
        @classmethod
        def create_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> Any:
            props = cloudformation_json["Properties"]
            backend = ecs_backends[account_id][region_name]
            service = backend.create_service(
                cluster_name(props),
                props.get("ServiceName") or resource_name,
                int(props.get("DesiredCount", 1)),
                task_definition_str=task_definition_arn(props),
                launch_type="FARGATE",
                **service_settings(props),
            )
            extras(service, props)
            service.deployments = []  # moto made one; ours follows the ECS rules below
            _start_deployment(service)
            return service

        @classmethod
        def update_from_cloudformation_json(  # type: ignore[override]
            cls,
            original_resource: Any,
            new_resource_name: str,
            cloudformation_json: Any,
            account_id: str,
            region_name: str,
        ) -> Any:
            props = cloudformation_json["Properties"]
            service = original_resource
            desired = int(props.get("DesiredCount", 1))
            td = task_definition_arn(props)
            new_definition = service.task_definition != td
            service.task_definition = td
            for key, value in service_settings(props).items():
                if value is not None:
                    setattr(service, key, value)
            extras(service, props)
            if new_definition:
                service.desired_count = desired
                _start_deployment(service)
            elif service.desired_count != desired:  # ECS scales the PRIMARY deployment; no new deployment
                service.desired_count = desired
                if service.deployments:
                    service.deployments[0]["desiredCount"] = desired
            return service

        @classmethod
        def delete_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
        ) -> None:
            return None

        def delete(self, account_id: str, region_name: str) -> None:  # type: ignore[override]
            backend = ecs_backends[account_id][region_name]
            backend.delete_service(self.cluster_name, self.name, force=True)
            backend.services.pop(f"{self.cluster_name}:{self.name}", None)

    return {"AWS::ECS::TaskDefinition": FullTaskDefinition, "AWS::ECS::Service": FullService}


def _start_deployment(service: Any) -> None:
    """A new PRIMARY deployment, as ECS starts on every task-definition or count change."""
    now = datetime.now(UTC)
    for old in service.deployments:
        if old.get("status") == "PRIMARY":
            old["status"] = "ACTIVE"
    dep_id = f"ecs-svc/{secrets.randbelow(10**18):018d}"
    service.deployments.insert(
        0,
        {
            "id": dep_id,
            "status": "PRIMARY",
            "taskDefinition": service.task_definition,
            "desiredCount": service.desired_count,
            "pendingCount": service.desired_count,
            "runningCount": 0,
            "failedTasks": 0,
            "createdAt": now,
            "updatedAt": now,
            "launchType": "FARGATE",
            "rolloutState": "IN_PROGRESS" if service.desired_count else "COMPLETED",
            "rolloutStateReason": f"ECS deployment {dep_id} in progress.",
        },
    )
    service.running_count = 0 if service.desired_count else service.running_count
    service.pending_count = service.desired_count
    if not service.desired_count:
        service.deployments[1:] = []
        service.running_count = 0
        service.pending_count = 0


def fix_moto_models() -> None:
    """Small fixes of moto models our templates trip over (listed in the module docstring)."""
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


def register_stand_ins() -> None:
    """Teach moto's CloudFormation the resource types listed in the module docstring."""
    from moto.cloudformation import parsing

    base = _make_stand_in_base()
    model_map = parsing.get_model_map()
    name_map = parsing.get_name_type_map()
    for rtype, spec in _stand_in_specs().items():
        name_property = spec.get("name", "")
        cls = type(
            "StandIn_" + rtype.replace("::", "_"),
            (base,),
            {
                "spec": spec,
                "cloudformation_type": staticmethod(lambda t=rtype: t),
                "cloudformation_name_type": staticmethod(lambda n=name_property: n),
            },
        )
        model_map[rtype] = cls
        name_map[rtype] = name_property
    for rtype, cls in _ecs_models().items():
        model_map[rtype] = cls


# ---------------------------------------------------------------------------------------------------
# CloudFormation backend patches
# ---------------------------------------------------------------------------------------------------

_FINAL_FAIL = {"CREATE": "ROLLBACK_COMPLETE", "UPDATE": "UPDATE_ROLLBACK_COMPLETE"}


def patch_cloudformation() -> None:
    """Apply the backend patches listed in the module docstring."""
    from moto.cloudformation import models, responses
    from moto.cloudformation.exceptions import ValidationError
    from moto.cloudformation.parsing import ResourceMap
    from moto.core.utils import utcnow

    backend_cls = models.CloudFormationBackend
    original_create = backend_cls.create_change_set
    original_execute = backend_cls.execute_change_set
    original_delete = backend_cls.delete_stack
    original_map_delete = ResourceMap.delete
    from moto.cloudformation import parsing

    for fname in ("parse_and_create_resource", "parse_and_update_resource"):
        setattr(parsing, fname, _remember_failing_resource(getattr(parsing, fname)))

    def create_change_set(self: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
        change_set_id, stack_id = original_create(self, *args, **kwargs)
        stack = self.stacks[stack_id]
        stack.cross_stack_resources = self.exports
        stack.resource_map.cross_stack_resources = self.exports
        return change_set_id, stack_id

    def execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
        change_set = self.describe_change_set(change_set_name)
        if change_set.execution_status != "AVAILABLE":
            raise ValidationError(
                change_set.stack_name,
                message=f"ChangeSet [{change_set.change_set_id}] cannot be executed in its current status of "
                f"[{change_set.status}]",
            )
        stack = self.stacks[change_set.stack_id]
        kind = change_set.change_set_type
        old_exports = list(stack.exports)
        for export in old_exports:
            self.exports.pop(export.name, None)
        try:
            original_execute(self, change_set_name, stack_name)
        except Exception as e:  # AWS reports the failed resource and rolls back; so do we
            reason = getattr(e, "message", None) or str(e) or type(e).__name__
            failed = next(
                (c for c in change_set.changes if c.logical_resource_id == getattr(e, "_sandbox_logical_id", None)),
                None,
            )
            _resource_event(stack, failed, f"{kind}_FAILED", reason)
            stack.status = _FINAL_FAIL[kind]
            stack._add_stack_event(stack.status)
            change_set.execution_status = "EXECUTE_FAILED"
            for export in old_exports:
                self.exports[export.name] = export
            return
        stack.template = change_set.template
        stack._parse_template()
        stack.description = stack.template_dict.get("Description")
        stack.output_map = stack._create_output_map()
        for export in stack.exports:
            self.exports[export.name] = export
        if change_set.parameters:
            stack.parameters = dict(change_set.parameters)
        final = stack.events.pop()  # re-order: resource events before the stack's COMPLETE event
        status = "CREATE" if kind == "CREATE" else "UPDATE"
        for change in change_set.changes:
            action = {"Add": "CREATE", "Modify": "UPDATE", "Remove": "DELETE"}[change.action]
            _resource_event(stack, change, f"{action}_IN_PROGRESS", None)
            _resource_event(stack, change, f"{action}_COMPLETE", None)
        final.timestamp = utcnow()
        stack.events.append(final)
        stack.status = f"{status}_COMPLETE"
        for cs_id in [i for i, cs in self.change_sets.items() if cs.stack_id == stack.stack_id]:
            del self.change_sets[cs_id]  # AWS drops a stack's change sets once one is executed

    def diff(self: Any) -> list[Any]:
        names = self.stack.resource_map.build_resource_diff(self.template_dict, self.parameters)
        old = self.stack.resource_map._resource_json_map
        new = self.template_dict.get("Resources", {})
        changes = []
        for action, logical_ids in names.items():
            for logical_id in dict.fromkeys(logical_ids):
                rtype = (new.get(logical_id) or old.get(logical_id) or {}).get("Type", "")
                changes.append(models.Change(action=action, logical_resource_id=logical_id, resource_type=rtype))
        return changes

    def build_resource_diff(self: Any, other_template: dict[str, Any], params: dict[str, Any] | None = None) -> Any:
        old = self._resource_json_map
        new = other_template["Resources"]
        modify = [name for name in new if name in old and new[name] != old[name]]
        if params:
            changed = {p for p in params if self.input_parameters.get(p) != params[p]}
            conditions = _conditions_using(other_template.get("Conditions", {}), changed)
            for name in new:
                if name in old and name not in modify and _uses(new[name], changed, conditions):
                    modify.append(name)
        # A changed task definition is a new revision (a new ARN): what refers to it changes too, after it.
        replaced = {n for n in modify if new[n].get("Type") == "AWS::ECS::TaskDefinition"}
        for name in new:
            if name in old and name not in modify and _refs(new[name])[0] & replaced:
                modify.append(name)
        return {
            "Add": [name for name in new if name not in old],
            "Modify": modify,
            "Remove": [name for name in old if name not in new],
        }

    def delete_stack(self: Any, name_or_stack_id: str) -> None:
        for stack in list(self.stacks.values()):
            if name_or_stack_id in (stack.name, stack.stack_id) and stack.enable_termination_protection:
                raise ValidationError(
                    stack.name,
                    message=f"Stack [{stack.name}] cannot be deleted while TerminationProtection is enabled",
                )
        original_delete(self, name_or_stack_id)

    def map_delete(self: Any) -> None:
        try:
            original_map_delete(self)
        except Exception as e:  # moto cannot delete some resources (a VPC with dependants): forget them
            print(f"sandbox: forgot resources moto could not delete: {e}", file=sys.stderr, flush=True)

    def update_termination_protection(self: Any) -> Any:
        from moto.core.responses import ActionResult

        stack = self.cloudformation_backend.get_stack(self._get_param("StackName"))
        stack.enable_termination_protection = bool(self._get_bool_param("EnableTerminationProtection"))
        return ActionResult({"StackId": stack.stack_id})

    backend_cls.create_change_set = create_change_set  # type: ignore[method-assign]
    backend_cls.execute_change_set = execute_change_set  # type: ignore[method-assign]
    backend_cls.delete_stack = delete_stack  # type: ignore[method-assign]
    models.ChangeSet.diff = diff  # type: ignore[method-assign]
    ResourceMap.build_resource_diff = build_resource_diff  # type: ignore[method-assign]
    ResourceMap.delete = map_delete  # type: ignore[method-assign]
    responses.CloudFormationResponse.update_termination_protection = update_termination_protection  # type: ignore[attr-defined]


def _refs(node: Any) -> tuple[set[str], set[str]]:
    """(parameters/resources named by Ref, conditions named by Fn::If/Condition) anywhere in a node."""
    refs: set[str] = set()
    conds: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                refs.add(value)
            elif key == "Condition" and isinstance(value, str):
                conds.add(value)
            elif key == "Fn::If" and isinstance(value, list) and value and isinstance(value[0], str):
                conds.add(value[0])
            sub_refs, sub_conds = _refs(value)
            refs |= sub_refs
            conds |= sub_conds
    elif isinstance(node, list):
        for item in node:
            sub_refs, sub_conds = _refs(item)
            refs |= sub_refs
            conds |= sub_conds
    return refs, conds


def _conditions_using(conditions: dict[str, Any], params: set[str]) -> set[str]:
    """Conditions whose value depends (directly or through other conditions) on any of `params`."""
    found: set[str] = set()
    grew = True
    while grew:
        grew = False
        for name, definition in conditions.items():
            refs, conds = _refs(definition)
            if name not in found and (refs & params or conds & found):
                found.add(name)
                grew = True
    return found


def _uses(resource: dict[str, Any], params: set[str], conditions: set[str]) -> bool:
    refs, conds = _refs(resource)
    return bool(refs & params or conds & conditions)


def _remember_failing_resource(fn: Any) -> Any:
    """Wrap moto's per-resource create/update so an exception names the (innermost) failing resource."""
    if getattr(fn, "_sandbox_wrapped", False):
        return fn

    def wrapper(logical_id: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(logical_id, *args, **kwargs)
        except Exception as e:
            if not hasattr(e, "_sandbox_logical_id"):
                e._sandbox_logical_id = logical_id  # type: ignore[attr-defined]
            raise

    wrapper._sandbox_wrapped = True  # type: ignore[attr-defined]
    return wrapper


def _resource_event(stack: Any, change: Any, status: str, reason: str | None) -> None:
    from moto.cloudformation.models import Event

    logical_id = change.logical_resource_id if change else stack.name
    resource = stack.resource_map._parsed_resources.get(logical_id) if change else None
    stack.events.append(
        Event(
            stack_id=stack.stack_id,
            stack_name=stack.name,
            logical_resource_id=logical_id,
            physical_resource_id=str(getattr(resource, "physical_resource_id", "") or ""),
            resource_type=change.resource_type if change else "AWS::CloudFormation::Stack",
            resource_status=status,
            resource_status_reason=reason,
            resource_properties=None,
        )
    )


# ---------------------------------------------------------------------------------------------------
# The emulator's clock: one-off tasks finish, service deployments complete
# ---------------------------------------------------------------------------------------------------


def tick(now: float | None = None) -> None:
    """Advance every ECS task and service deployment that has waited long enough (see docstring)."""
    from moto.ecs.models import ecs_backends

    now = time.monotonic() if now is None else now
    for account, regions in list(ecs_backends.items()):
        for region, backend in list(regions.items()):
            for cluster_tasks in list(backend.tasks.values()):
                for task in list(cluster_tasks.values()):
                    _advance_task(task, backend, account, region, now)
            for service in list(backend.services.values()):
                _advance_service(service, now)


def _advance_task(task: Any, backend: Any, account: str, region: str, now: float) -> None:
    started = task.__dict__.setdefault("_sandbox_seen", now)
    if task.desired_status == "STOPPED" or task.__dict__.get("_sandbox_done") or now - started < TASK_SECONDS:
        return
    task._sandbox_done = True
    code = _exit_code_for(_task_image(task, backend))
    _write_task_log(task, backend, account, region, code)
    _stop(task, "Essential container in task exited", code)


def _stop(task: Any, reason: str, code: int, container_reason: str = "") -> None:
    task.last_status = "STOPPED"
    task.desired_status = "STOPPED"
    task.stopped_reason = reason
    task.stopped_at = datetime.now(UTC)
    task.stop_code = "EssentialContainerExited"
    for container in task.containers:
        container.last_status = "STOPPED"
        container.exitCode = code
        container.exit_code = code
        if container_reason:
            container.reason = container_reason


def _task_image(task: Any, backend: Any) -> str:
    try:
        return str(backend.describe_task_definition(task.task_definition_arn).container_definitions[0].get("image"))
    except Exception:
        return ""


def _exit_code_for(image: str) -> int:
    """`...-sandbox-exit-N` in the image tag: the task exits with N (a failing migration, on purpose)."""
    match = re.search(r"-sandbox-exit-(\d+)", image.rsplit(":", 1)[-1]) if ":" in image else None
    return int(match.group(1)) if match else 0


def _task_command(task: Any, container_def: dict[str, Any]) -> list[str]:
    for override in (task.overrides or {}).get("containerOverrides", []) or []:
        if override.get("name") == container_def.get("name") and override.get("command"):
            return list(override["command"])
    return list(container_def.get("command") or [])


def _write_task_log(task: Any, backend: Any, account: str, region: str, code: int = 0) -> None:
    """One line per task in its awslogs stream (prefix/container/task-id), as the container would write."""
    from moto.logs.models import logs_backends

    try:
        td = backend.describe_task_definition(task.task_definition_arn)
        container = td.container_definitions[0]
        options = (container.get("logConfiguration") or {}).get("options") or {}
        group, prefix = options.get("awslogs-group"), options.get("awslogs-stream-prefix")
        if not group or not prefix:
            return
        command = _task_command(task, container)
        stream = f"{prefix}/{container.get('name')}/{task.id}"
        logs = logs_backends[account][region]
        if group not in logs.groups:
            return
        if stream not in logs.groups[group].streams:
            logs.create_log_stream(group, stream)
        lines = [f"[sandbox] ran: {' '.join(command)}"]
        if code:
            lines += [f"[sandbox] failing on purpose: the image tag asks for exit code {code}"]
        elif command[:3] == ["tootctl", "accounts", "create"]:
            lines += ["OK", "New password: " + _rand(32, string.ascii_letters + string.digits)]
        ms = int(time.time() * 1000)
        logs.put_log_events(group, stream, [{"timestamp": ms + i, "message": m} for i, m in enumerate(lines)])
    except Exception as e:  # a log line is a nicety; never let it stop the clock
        print(f"sandbox: could not write a task log line: {e}", file=sys.stderr, flush=True)


def _advance_service(service: Any, now: float) -> None:
    if not service.deployments:
        return
    primary = service.deployments[0]
    if primary.get("rolloutState") == "COMPLETED" and service.running_count != service.desired_count:
        started = service.__dict__.setdefault("_sandbox_scale_seen", now)
        if now - started >= ROLLOUT_SECONDS:
            service.__dict__.pop("_sandbox_scale_seen", None)
            service.running_count = service.desired_count
            service.pending_count = 0
            primary.update(runningCount=service.desired_count, pendingCount=0, updatedAt=datetime.now(UTC))
            _service_event(service, f"(service {service.name}) has reached a steady state.")
        return
    if primary.get("rolloutState") != "IN_PROGRESS":
        return
    started = primary.setdefault("_sandbox_seen", now)
    if now - started < ROLLOUT_SECONDS:
        return
    primary.pop("_sandbox_seen", None)
    if UNHEALTHY_MARK in _service_image(service, primary) and len(service.deployments) > 1:
        _trip_circuit_breaker(service, primary)
        return
    primary.update(
        rolloutState="COMPLETED",
        rolloutStateReason=f"ECS deployment {primary['id']} completed.",
        runningCount=primary["desiredCount"],
        pendingCount=0,
        updatedAt=datetime.now(UTC),
    )
    service.deployments[1:] = []
    service.running_count = service.desired_count
    service.pending_count = 0
    _service_event(service, f"(service {service.name}) has reached a steady state.")


def _service_image(service: Any, deployment: dict[str, Any]) -> str:
    from moto.ecs.models import ecs_backends

    backend = ecs_backends[service._account_id][service.region_name]
    try:
        td = backend.describe_task_definition(deployment["taskDefinition"])
        return str(td.container_definitions[0].get("image", ""))
    except Exception:
        return ""


def _trip_circuit_breaker(service: Any, failed: dict[str, Any]) -> None:
    """What ECS does when a new version's tasks keep failing: stopped tasks with a reason, the deployment
    FAILED, and (rollback on) a new PRIMARY deployment of the previous task definition."""
    from moto.ecs.models import ecs_backends

    backend = ecs_backends[service._account_id][service.region_name]
    reason = "ECS deployment circuit breaker: tasks failed to start."
    for _ in range(2):
        try:
            task = backend.run_task(
                service.cluster_name,
                failed["taskDefinition"],
                1,
                None,
                failed["id"],
                [],
                "FARGATE",
                service.network_configuration or None,
            )[0]
        except Exception as e:  # keep the failure visible even without its stopped tasks
            print(f"sandbox: could not record a failed task: {e}", file=sys.stderr, flush=True)
            break
        task._sandbox_done = True
        _stop(task, "Essential container in task exited", 1, "the image tag asks the sandbox for unhealthy tasks")
    failed.update(
        status="ACTIVE",
        rolloutState="FAILED",
        rolloutStateReason=reason,
        failedTasks=2,
        runningCount=0,
        pendingCount=0,
    )
    previous = next((d for d in service.deployments[1:] if d.get("status") == "ACTIVE"), None)
    service.deployments = [failed]
    _service_event(
        service, f"(service {service.name}) (deployment {failed['id']}) deployment failed: tasks failed to start."
    )
    if previous is not None:
        service.task_definition = previous["taskDefinition"]
        _start_deployment(service)
        service.deployments[0]["rolloutStateReason"] = f"ECS deployment {service.deployments[0]['id']} rolling back."


def _service_event(service: Any, message: str) -> None:
    service.events.insert(0, {"id": _uuid(), "createdAt": datetime.now(UTC), "message": message})


class Clock(threading.Thread):
    def __init__(self, interval: float = TICK_SECONDS) -> None:
        super().__init__(name="sandbox-clock", daemon=True)
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                tick()
            except Exception as e:  # keep ticking; a moto object changed under us
                print(f"sandbox: clock tick failed: {e}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------
# Launcher
# ---------------------------------------------------------------------------------------------------


def install() -> None:
    """Register the stand-ins and patches once per process."""
    global _installed
    with _install_lock:
        if _installed:
            return
        from moto.moto_api import state_manager

        fix_moto_models()
        register_stand_ins()
        patch_cloudformation()
        # Only the clock stops tasks (moto would step one state per DescribeTasks call).
        state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})
        _installed = True


class Sandbox:
    """The moto server, its stand-ins and its clock, in this process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: Any = None
        self._clock = Clock()

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Sandbox:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        install()
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        self._clock.start()
        return self

    def stop(self) -> None:
        self._clock.stopped.set()
        if self._server is not None:
            self._server.stop()
            self._server = None


def main(argv: list[str] | None = None) -> None:
    global TASK_SECONDS, ROLLOUT_SECONDS
    parser = argparse.ArgumentParser(
        prog="python -m mastofargate.deploy.sandbox",
        description="Local AWS emulator (moto + stand-ins) for `make demo` and tests. Not for real AWS.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--task-seconds", type=float, default=TASK_SECONDS, help="how long a one-off task runs")
    parser.add_argument("--rollout-seconds", type=float, default=ROLLOUT_SECONDS, help="how long a rollout takes")
    args = parser.parse_args(argv)
    TASK_SECONDS, ROLLOUT_SECONDS = args.task_seconds, args.rollout_seconds
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    sandbox = Sandbox(args.host, args.port).start()
    print(f"sandbox: listening on {sandbox.endpoint}", flush=True)
    try:
        done.wait()
    finally:
        sandbox.stop()
        print("sandbox: stopped", flush=True)


if __name__ == "__main__":
    # Run the imported module's main: moto files model classes under their module's name, which must not
    # be "__main__".
    from mastofargate.deploy import sandbox

    sandbox.main()
