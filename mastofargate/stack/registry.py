"""ECR repositories for the pre-baked images: immutable content-addressed tags, scanned on push."""

from __future__ import annotations

import json

from troposphere import GetAtt, ecr

from mastofargate.stack.context import Build

# How many tagged images to keep: enough to roll back several releases; the rest costs storage.
KEEP_IMAGES = 15
IMAGES = ("mastodon", "streaming")


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
