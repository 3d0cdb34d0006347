"""Stand-ins for the CloudFormation resource types moto 5.2 does not model.

Each type is registered into moto's CloudFormation model map. A stand-in records its properties, returns a
plausible physical id for `Ref` and plausible values for the `Fn::GetAtt`s our templates use; nothing is
provisioned unless said. Where this differs from AWS: nothing behind these resources exists (no
distribution serves, no backup runs, no alarm fires); what the deploy reads of them is shaped like AWS's.

  AWS::Backup::BackupVault / BackupPlan / BackupSelection   ids and ARNs only
  AWS::CloudFront::OriginAccessControl                      `Id`
  AWS::CloudFront::CachePolicy                              `Id`
  AWS::SES::EmailIdentity                                   Ref = the domain; `DkimDNSTokenName1..3` / `Value1..3`
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
"""

from __future__ import annotations

import json
import secrets
import string
import uuid
from typing import Any

STAND_IN_BASE_TYPE = "Mastofargate::Sandbox::StandIn"


def rand(n: int, alphabet: str = string.ascii_lowercase + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _stand_in_specs() -> dict[str, dict[str, Any]]:
    """type -> {name: the property naming the resource, ref: how the physical id is made, attrs: GetAtts}.

    `ref` and each attr are functions of (physical_id, properties, account, region).
    """

    def arn(service: str, kind: str, sep: str = "/") -> Any:
        return lambda pid, p, acct, region: f"arn:aws:{service}:{region}:{acct}:{kind}{sep}{pid}"

    def cache_host(pid: str, p: dict[str, Any], acct: str, region: str) -> str:
        return f"master.{pid}.{rand(6)}.use1.cache.amazonaws.com"

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
            "ref": lambda name, p, acct, region: str(new_uuid()),
            "attrs": {
                "BackupPlanId": lambda pid, p, acct, region: pid,
                "BackupPlanArn": arn("backup", "backup-plan", ":"),
                "VersionId": lambda pid, p, acct, region: rand(32),
            },
        },
        "AWS::Backup::BackupSelection": {
            "ref": lambda name, p, acct, region: new_uuid(),
            "attrs": {
                "SelectionId": lambda pid, p, acct, region: pid,
                "BackupPlanId": lambda pid, p, acct, region: str(p.get("BackupPlanId", "")),
            },
        },
        "AWS::SES::EmailIdentity": {
            "name": "EmailIdentity",
            "ref": lambda name, p, acct, region: str(p.get("EmailIdentity", name)),
            "attrs": {
                **{
                    f"DkimDNSTokenName{i}": (lambda i: lambda pid, p, acct, region: f"{rand(32)}._domainkey.{pid}")(i)
                    for i in (1, 2, 3)
                },
                **{
                    f"DkimDNSTokenValue{i}": (lambda i: lambda pid, p, acct, region: f"{rand(32)}.dkim.amazonses.com")(
                        i
                    )
                    for i in (1, 2, 3)
                },
            },
        },
        "AWS::CloudFront::CachePolicy": {
            "ref": lambda name, p, acct, region: str(new_uuid()),
            "attrs": {"Id": lambda pid, p, acct, region: pid},
        },
        "AWS::CloudFront::OriginAccessControl": {
            "ref": lambda name, p, acct, region: "E" + rand(13, string.ascii_uppercase + string.digits),
            "attrs": {"Id": lambda pid, p, acct, region: pid},
        },
        "AWS::CloudFront::Distribution": {
            "ref": lambda name, p, acct, region: "E" + rand(13, string.ascii_uppercase + string.digits),
            "attrs": {
                "Id": lambda pid, p, acct, region: pid,
                "DomainName": lambda pid, p, acct, region: f"d{rand(13)}.cloudfront.net",
            },
        },
        "AWS::S3::BucketPolicy": {
            "ref": lambda name, p, acct, region: f"{p.get('Bucket')}-policy-{rand(8)}",
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
            "ref": lambda name, p, acct, region: "ns-" + rand(16),
            "attrs": {
                "Id": lambda pid, p, acct, region: pid,
                "Arn": arn("servicediscovery", "namespace"),
                "HostedZoneId": lambda pid, p, acct, region: "Z" + rand(13, string.ascii_uppercase + string.digits),
            },
        },
        "AWS::ServiceDiscovery::Service": {
            "ref": lambda name, p, acct, region: "srv-" + rand(16),
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
                f"arn:aws:autoscaling:{region}:{acct}:scalingPolicy:{new_uuid()}:resource/ecs/"
                f"{str(p.get('ScalingTargetId', '')).split('|')[0]}:policyName/{p.get('PolicyName', name)}"
            ),
            "attrs": {"Arn": lambda pid, p, acct, region: pid},
        },
    }


def new_uuid() -> str:
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


def register() -> None:
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
