"""The image pipeline: pre-baked Mastodon images with content-addressed tags, and their assets on S3.

    context.py   build inputs (Dockerfile, overlay) and the tag derived from them
    registry.py  registry host, credentials (ECR token or docker login), "is this tag there?"
    engine.py    the Docker engine: base images, build, push, with progress and clear errors
    pipeline.py  build / push: only what is missing
    assets.py    export public/{packs,assets,emoji,sounds} to the media bucket
    progress.py  live bars on a terminal, one line per event in CI

Heavy libraries (docker, boto3, requests) are imported inside the functions that use them.
"""

from __future__ import annotations

from mastofargate.images.assets import AssetExportResult, default_bucket, export_assets
from mastofargate.images.pipeline import ImageResult, Request, build_images, image_refs, push_images

__all__ = [
    "AssetExportResult",
    "ImageResult",
    "Request",
    "build_images",
    "default_bucket",
    "export_assets",
    "image_refs",
    "push_images",
]
