"""Where deploy artifacts live: ECR repositories for the pre-baked images (immutable content-addressed
tags, scanned on push) and a private bucket for templates too large to pass inline (CloudFormation takes
at most 51,200 bytes in a TemplateBody; the app template of the larger profiles exceeds it)."""

from __future__ import annotations

import json

from troposphere import GetAtt, Ref, ecr, s3

from mastofargate.stack.context import Build
from mastofargate.stack.media import private_bucket

# How many tagged images to keep: enough to roll back several releases; the rest costs storage.
KEEP_IMAGES = 15
# mastodon and streaming: Mastodon's release images, re-tagged; backup: the Postgres image plus pgBackRest and
# pgtask.py, run by the backup tasks and, with `database = "task"`, by the Postgres task itself.
IMAGES = ("mastodon", "streaming", "backup")


def repository_names(stack_name: str) -> dict[str, str]:
    return {image: f"{stack_name}/{image}" for image in IMAGES}


def _lifecycle() -> str:
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": "Drop untagged layers after a day",
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": 1,
                    },
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 2,
                    "description": f"Keep the newest {KEEP_IMAGES} images for rollbacks",
                    "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": KEEP_IMAGES},
                    "action": {"type": "expire"},
                },
            ]
        },
        sort_keys=True,
    )


def add(b: Build) -> None:
    for image, repo_name in repository_names(b.name).items():
        repo = b.add(
            b.data,
            ecr.Repository(
                f"{image.capitalize()}Repository",
                RepositoryName=repo_name,
                ImageTagMutability="IMMUTABLE",
                ImageScanningConfiguration=ecr.ImageScanningConfiguration(ScanOnPush=True),
                EncryptionConfiguration=ecr.EncryptionConfiguration(
                    EncryptionType="KMS", KmsKey=GetAtt("EncryptionKey", "Arn")
                ),
                LifecyclePolicy=ecr.LifecyclePolicy(LifecyclePolicyText=_lifecycle()),
            ),
            f"Image repository for the pre-baked {image} image",
        )
        b.export(f"{image.capitalize()}RepositoryUri", GetAtt(repo, "RepositoryUri"), f"{image} image repository")
    add_template_bucket(b)


def add_template_bucket(b: Build) -> None:
    bucket = b.add(
        b.data,
        s3.Bucket(
            "DeployBucket",
            **private_bucket(
                b,
                "deploy",
                s3.ServerSideEncryptionByDefault(SSEAlgorithm="aws:kms", KMSMasterKeyID=GetAtt("EncryptionKey", "Arn")),
            ),
            VersioningConfiguration=s3.VersioningConfiguration(Status="Enabled"),
            LifecycleConfiguration=s3.LifecycleConfiguration(
                Rules=[
                    s3.LifecycleRule(
                        Id="expire-old-templates",
                        Status="Enabled",
                        ExpirationInDays=90,
                        NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(NoncurrentDays=30),
                    )
                ]
            ),
        ),
        "Private bucket for deploy artifacts (templates too large to pass inline)",
        skip=[
            ("CKV_AWS_18", "access logs need a second bucket; only the deploy writes here"),
            ("CKV_AWS_144", "templates are regenerated from the config; no replica needed"),
            ("CKV2_AWS_62", "nothing consumes bucket events"),
        ],
    )
    b.export("DeployBucketName", Ref(bucket), "Bucket for deploy artifacts (templates)")
