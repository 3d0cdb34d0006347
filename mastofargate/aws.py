"""The one place boto3 clients are made, and the one place AWS failures are translated.

Tests and the local emulator stand in through the standard `AWS_ENDPOINT_URL` variable (boto3 reads it
itself), so no code path knows whether it talks to AWS or to an emulator.

Every botocore failure becomes a `MastofargateError` here, once, in `aws_errors`: callers that must react to
a particular failure catch its *type* (`StackNotFound`, `ChangeSetEmpty`, `ExportsNotPublished`, ...), never
its text. The error codes and the few AWS messages that carry no code of their own are matched only in this
module (`_classify`).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from mastofargate.errors import EXIT_FAILED, EXIT_STUCK, EXIT_TIMEOUT, EXIT_USAGE, MastofargateError

# Control-plane calls answer in well under a second; a connection that takes longer than this to open, or a
# response that takes longer to arrive, is a network problem, not a slow AWS. Bounded so a blackholed
# endpoint fails in about a minute (attempts x timeouts) instead of hanging for many.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 20
MAX_ATTEMPTS = 3
# A call still unanswered after this long gets a line on stderr, so a slow network never looks like a hang.
SLOW_CALL_NOTICE = 5.0


@cache
def client(service: str, region: str) -> Any:
    """A boto3 client with standard retries and bounded timeouts; cached per (service, region)."""
    import boto3
    from botocore.config import Config as BotoConfig

    with aws_errors(f"setting up the {service} client"):
        session = boto3.session.Session()
        # boto3-stubs types each service name as a Literal; these names come from our own call sites.
        return session.client(  # type: ignore[call-overload]
            service,
            region_name=region,
            config=BotoConfig(
                retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
            ),
        )


def reset_clients() -> None:
    """Forget cached clients (tests switch endpoints between cases)."""
    client.cache_clear()


def account_id(region: str) -> str:
    with aws_errors("reading the AWS account"):
        return str(client("sts", region).get_caller_identity()["Account"])


# --- typed errors --------------------------------------------------------------------------------------


class AwsError(MastofargateError):
    """AWS refused a call. `code` is AWS's error code ("" for failures below the API, e.g. the network)."""

    def __init__(self, what: str, *, code: str = "", why: str = "", fix: str = "", exit_code: int = EXIT_FAILED):
        super().__init__(what, why=why, fix=fix, exit_code=exit_code)
        self.code = code


class NotFound(AwsError):
    """The thing asked for does not exist (a stack, a secret, a task definition, an image, a zone...)."""


class StackNotFound(NotFound):
    """CloudFormation has no such stack."""


class ChangeSetEmpty(AwsError):
    """A change set (or update) that would change nothing: not a failure, callers treat it as 'no changes'."""


class ExportsNotPublished(AwsError):
    """A template imports a value the data stack has not exported yet (it is exported by its next update)."""


class AccessDenied(AwsError):
    """The credentials lack a permission."""


class Unreachable(AwsError):
    """AWS (or the endpoint in AWS_ENDPOINT_URL) could not be reached or answered nonsense."""


class StackFailed(MastofargateError):
    """A stack operation ended in failure. Carries what the progress stream saw: the stack, the first
    resource that failed, the stack's end status and CloudFormation's reason (and, from the deploy layer,
    the ECS story of a failed service)."""

    def __init__(
        self,
        stack: str,
        logical_id: str,
        status: str,
        reason: str,
        *,
        what: str,
        why: str = "",
        fix: str = "",
        exit_code: int = EXIT_FAILED,
    ) -> None:
        super().__init__(what, why=why or reason, fix=fix, exit_code=exit_code)
        self.stack = stack
        self.logical_id = logical_id
        self.status = status
        self.reason = reason


class StackStuck(StackFailed):
    """A stack in a *_FAILED state that needs a human (continue-update-rollback, a blocked delete)."""

    def __init__(self, stack: str, logical_id: str, status: str, reason: str, *, what: str, fix: str) -> None:
        super().__init__(stack, logical_id, status, reason, what=what, fix=fix, exit_code=EXIT_STUCK)


class WaitTimedOut(MastofargateError):
    """We stopped waiting; the operation may still go on on AWS."""

    def __init__(self, what: str, *, why: str = "", fix: str = "") -> None:
        super().__init__(what, why=why, fix=fix, exit_code=EXIT_TIMEOUT)


_NOT_FOUND_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "NoSuchEntity",
        "NoSuchKey",
        "NoSuchBucket",
        "NoSuchHostedZone",
        "NotFound",
        "404",
        "ParameterNotFound",
        "ImageNotFoundException",
        "RepositoryNotFoundException",
        "ClusterNotFoundException",
        "ServiceNotFoundException",
        "ChangeSetNotFound",
        "DBInstanceNotFound",
        "DBSnapshotNotFound",
        "LogGroupNotFoundException",
        "NotFoundException",  # KMS: a key that does not exist (any more)
    }
)
_ACCESS_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException"}
)
_CREDENTIAL_CODES = frozenset(
    {"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "SignatureDoesNotMatch", "RequestExpired"}
)
# CloudFormation and ECS report these without a distinct code (ValidationError / ClientException); the
# message is the only signal AWS gives, so it is read here and nowhere else.
_NO_CHANGES_TEXT = ("didn't contain changes", "No updates are to be performed", "No changes")
_MISSING_EXPORT_TEXT = ("No export named", "export named")
_TASK_DEFINITION_MISSING_TEXT = ("Unable to describe task definition", "does not exist")


def is_no_changes(text: str) -> bool:
    """A change set's StatusReason that means 'nothing to do' (read off a FAILED change set)."""
    return any(s in text for s in _NO_CHANGES_TEXT)


def is_missing_export(text: str) -> bool:
    """A change set's StatusReason that means 'imports an export the data stack has not published'."""
    return any(s in text for s in _MISSING_EXPORT_TEXT)


def _classify(service: str, code: str, message: str) -> type[AwsError]:
    if code == "ValidationError" and service == "cloudformation":
        if "does not exist" in message and "Stack" in message:
            return StackNotFound
        if is_no_changes(message):
            return ChangeSetEmpty
        if is_missing_export(message):
            return ExportsNotPublished
    ecs_client_error = code in ("ClientException", "InvalidParameterException") and service == "ecs"
    if ecs_client_error and any(s in message for s in _TASK_DEFINITION_MISSING_TEXT):
        return NotFound
    if code in _NOT_FOUND_CODES:
        return NotFound
    if code in _ACCESS_CODES:
        return AccessDenied
    return AwsError


@contextmanager
def aws_errors(doing: str) -> Iterator[None]:
    """Turn every botocore failure into a typed error that says what we were doing, why, and what to try.
    Errors that are already ours pass through unchanged."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
    )
    from botocore.parsers import ResponseParserError

    notice = threading.Timer(SLOW_CALL_NOTICE, _still_waiting, args=(doing,))
    notice.daemon = True
    notice.start()
    try:
        yield
    except MastofargateError:
        raise
    except (NoCredentialsError, PartialCredentialsError):
        raise AwsError(
            f"No AWS credentials while {doing}.",
            why="boto3 found no access key, profile or role",
            fix="set AWS_PROFILE (or run 'aws configure' / 'aws sso login') and try again",
            exit_code=EXIT_USAGE,
        ) from None
    except ProfileNotFound as e:
        profile = os.environ.get("AWS_PROFILE", "")
        raise AwsError(
            f"The AWS profile {profile!r} does not exist (while {doing}).",
            why=str(e),
            fix="check AWS_PROFILE against 'aws configure list-profiles'",
            exit_code=EXIT_USAGE,
        ) from None
    except NoRegionError:
        raise AwsError(
            f"No AWS region while {doing}.", fix="set aws.region in mastofargate.toml", exit_code=EXIT_USAGE
        ) from None
    except (ConnectTimeoutError, ReadTimeoutError) as e:
        raise Unreachable(
            f"AWS did not answer in time while {doing}.",
            why=f"{type(e).__name__}: {e} (waited {CONNECT_TIMEOUT} s to connect, {READ_TIMEOUT} s for an answer, "
            f"{MAX_ATTEMPTS} attempts)",
            fix="check the network, a proxy (HTTPS_PROXY) or AWS_ENDPOINT_URL, then run the command again; "
            "nothing after this step was done",
            exit_code=EXIT_TIMEOUT,
        ) from None
    except EndpointConnectionError as e:
        raise Unreachable(
            f"Cannot reach AWS while {doing}.",
            why=str(e),
            fix="check the network (or AWS_ENDPOINT_URL when using an emulator), then run the command again",
        ) from None
    except ResponseParserError as e:
        raise Unreachable(
            f"AWS answered with something that is not an AWS response while {doing}.",
            why=f"{type(e).__name__}: {str(e)[:200]}",
            fix="a proxy or a wrong AWS_ENDPOINT_URL is in the way; check HTTPS_PROXY and AWS_ENDPOINT_URL",
        ) from None
    except ClientError as e:
        err = e.response.get("Error", {})
        code, message = str(err.get("Code", "Error")), str(err.get("Message", e))
        service = _service_from_meta(e)
        kind = _classify(service, code, message)
        if code in _CREDENTIAL_CODES:
            fix = "the credentials are expired or wrong: log in again ('aws sso login') or check the keys"
        elif kind is AccessDenied:
            fix = "the credentials lack a permission this step needs; use an administrator role for deploys"
        else:
            fix = "see the AWS message above"
        raise kind(f"AWS refused {doing}: {code}: {message}", code=code, fix=fix) from None
    except BotoCoreError as e:
        raise AwsError(
            f"The AWS SDK failed while {doing}: {type(e).__name__}.",
            why=str(e)[:300],
            fix="check the AWS settings (profile, region, endpoint) and run the command again",
        ) from None
    finally:
        notice.cancel()


def _still_waiting(doing: str) -> None:
    sys.stderr.write(f"still waiting for AWS ({doing})...\n")
    sys.stderr.flush()


def _service_from_meta(error: Any) -> str:
    """The service a ClientError came from, for the two services whose error codes are too generic to
    branch on alone (botocore's exception carries the operation name, not the service)."""
    op = str(getattr(error, "operation_name", ""))
    if op in _CLOUDFORMATION_OPERATIONS:
        return "cloudformation"
    if op in _ECS_OPERATIONS:
        return "ecs"
    return ""


_CLOUDFORMATION_OPERATIONS = frozenset(
    {
        "DescribeStacks",
        "DescribeStackEvents",
        "GetTemplate",
        "CreateChangeSet",
        "DescribeChangeSet",
        "ExecuteChangeSet",
        "DeleteChangeSet",
        "DeleteStack",
        "UpdateStack",
        "CreateStack",
        "UpdateTerminationProtection",
        "ListStackResources",
        "DescribeStackResources",
    }
)
_ECS_OPERATIONS = frozenset({"DescribeTaskDefinition", "RegisterTaskDefinition", "RunTask", "DescribeServices"})
