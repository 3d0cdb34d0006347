"""What every stack builder shares: the config, the two templates, and cross-stack references.

Two stacks, because they live on different clocks:
  data  - long-lived and holding user data or identity: network, security groups, KMS key, ECR
          repositories, Postgres (RDS or EFS), ElastiCache, the media bucket and its CloudFront
          distribution, backups. Termination protection on; rarely changes.
  app   - everything that changes with a release: cluster, load balancer, services, task definitions,
          jobs, schedules, logs and alarms. Safe to delete and recreate at any time.
The app stack reads the data stack's outputs through exports, so CloudFormation itself refuses to
delete the data stack while the app stack uses it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from troposphere import AWSObject, Export, ImportValue, Output, Parameter, Ref, Sub, Template

from mastofargate import names
from mastofargate.config import Config

T = TypeVar("T", bound=AWSObject)

# Placeholders the deploy fills in: image tags (a new release changes nothing else) and secret ARNs
# (the secrets are created by the deploy's bootstrap, outside CloudFormation, so no stack operation can
# ever delete or regenerate them).
APP_PARAMETERS: dict[str, str] = {
    "MastodonImageTag": "Tag of the pre-baked Mastodon image (web, sidekiq, jobs) in ECR",
    "StreamingImageTag": "Tag of the pre-baked streaming image in ECR",
    "BackupImageTag": "Tag of the backup image in ECR (Postgres + pgBackRest + pgtask.py; backup tasks, Postgres task)",
    "SecretArn": "ARN of the server's Secrets Manager secret (SECRET_KEY_BASE, VAPID, encryption keys, database "
    "and Redis passwords)",
    "ServicesEnabled": "false keeps web/streaming/sidekiq at zero tasks (first install runs migrations first)",
}


# Secret-ARN parameters and the secret each must name (its last path part, see secrets.secret_name).
SECRET_PARAMETERS: dict[str, str] = {"SecretArn": "server"}


def secret_arn_constraint(stack_name: str, kind: str) -> dict[str, object]:
    """AllowedPattern for a secret-ARN parameter: only this server's secret (Secrets Manager adds '-' and six
    characters to the name), so a stack update cannot point a task at another server's secret."""
    name = f"mastofargate/{stack_name}/{kind}"  # secrets.secret_name, restated to keep context import-light
    arn = r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:"
    return {
        "AllowedPattern": arn + re.escape(name) + r"-[A-Za-z0-9]{6}$",
        "ConstraintDescription": f"the ARN of this server's Secrets Manager secret {name}",
    }


@dataclass
class Build:
    config: Config
    data: Template = field(default_factory=Template)
    app: Template = field(default_factory=Template)

    @property
    def name(self) -> str:
        return self.config.aws.name

    @property
    def data_stack(self) -> str:
        return names.data_stack(self.name)

    @property
    def app_stack(self) -> str:
        return names.app_stack(self.name)

    def add(self, template: Template, resource: T, description: str, skip: Sequence[tuple[str, str]] = ()) -> T:
        """Add a resource with a human description (shown in reviews and in deploy progress) and the
        checkov checks it skips, each with the reason."""
        meta = dict(getattr(resource, "Metadata", {}) or {})
        meta["Description"] = description
        if skip:
            meta["checkov"] = {"skip": [{"id": cid, "comment": why} for cid, why in sorted(skip)]}
        resource.Metadata = meta
        template.add_resource(resource)
        return resource

    def export(self, key: str, value: object, description: str) -> ImportValue:
        """Publish a data-stack value for the app stack; returns the app stack's reference to it."""
        self.data.add_output(
            Output(key, Description=description, Value=value, Export=Export(names.export(self.name, key)))
        )
        return self.imported(key)

    def imported(self, key: str) -> ImportValue:
        return ImportValue(names.export(self.name, key))

    def app_param(self, key: str) -> Ref:
        if key not in self.app.parameters:
            defaults: dict[str, dict[str, object]] = {
                "ServicesEnabled": {"AllowedValues": ["true", "false"], "Default": "true"}
            }
            kind: dict[str, object] = defaults.get(key, {})
            if key in SECRET_PARAMETERS:
                kind = secret_arn_constraint(self.name, SECRET_PARAMETERS[key])
            self.app.add_parameter(Parameter(key, Type="String", Description=APP_PARAMETERS[key], **kind))
        return Ref(key)

    def data_param(self, key: str) -> Ref:
        if key not in self.data.parameters:
            kind: dict[str, object] = {}
            if key in SECRET_PARAMETERS:
                kind = secret_arn_constraint(self.name, SECRET_PARAMETERS[key])
            self.data.add_parameter(Parameter(key, Type="String", Description=APP_PARAMETERS[key], **kind))
        return Ref(key)

    def resource_name(self, suffix: str) -> str:
        return f"{self.name}-{suffix}"

    def sub(self, text: str) -> Sub:
        return Sub(text)


def logical(name: str) -> str:
    """A CloudFormation logical id from a service name: 'sidekiq-scheduler' -> 'SidekiqScheduler'."""
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
