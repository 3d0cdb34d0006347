"""The one place boto3 clients are made.

Tests and the local emulator stand in through the standard `AWS_ENDPOINT_URL` variable (boto3 reads it
itself), so no code path knows whether it talks to AWS or to a moto server. AWS failures a user can act
on (no credentials, access denied, unreachable endpoint) become `MastofargateError`s here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from mastofargate.errors import EXIT_USAGE, MastofargateError


@cache
def client(service: str, region: str) -> Any:
    """A boto3 client with standard retries; cached per (service, region)."""
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.session.Session().client(
        service,
        region_name=region,
        config=BotoConfig(retries={"mode": "standard", "max_attempts": 6}, connect_timeout=5, read_timeout=60),
    )


def reset_clients() -> None:
    """Forget cached clients (tests switch endpoints between cases)."""
    client.cache_clear()


def account_id(region: str) -> str:
    with aws_errors("reading the AWS account"):
        return str(client("sts", region).get_caller_identity()["Account"])


@contextmanager
def aws_errors(doing: str) -> Iterator[None]:
    """Turn botocore failures into messages that say what we were doing and what to try."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    try:
        yield
    except (NoCredentialsError, PartialCredentialsError):
        raise MastofargateError(
            f"No AWS credentials while {doing}.",
            why="boto3 found no access key, profile or role",
            fix="set AWS_PROFILE (or run 'aws configure' / 'aws sso login') and try again",
            exit_code=EXIT_USAGE,
        ) from None
    except NoRegionError:
        raise MastofargateError(
            f"No AWS region while {doing}.", fix="set aws.region in mastofargate.toml", exit_code=EXIT_USAGE
        ) from None
    except EndpointConnectionError as e:
        raise MastofargateError(
            f"Cannot reach AWS while {doing}.",
            why=str(e),
            fix="check the network (or AWS_ENDPOINT_URL when using an emulator)",
        ) from None
    except ClientError as e:
        err = e.response.get("Error", {})
        code, message = err.get("Code", "Error"), err.get("Message", str(e))
        fix = (
            "the credentials lack a permission this step needs; use an administrator role for deploys"
            if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")
            else "see the AWS message above"
        )
        raise MastofargateError(f"AWS refused {doing}: {code}: {message}", fix=fix) from None
