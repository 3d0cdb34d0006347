"""SES SMTP credentials and the SES sandbox check, for the deploy to call (stack/mail.py builds the rest).

`ensure_smtp_credentials(target)` gives Mastodon working SMTP credentials without any static key in the
config, a template, an output or a log: it creates an access key for the data stack's SMTP user, derives
the SMTP password from the secret key with SES's documented algorithm, and stores SMTP_LOGIN and
SMTP_PASSWORD in the server secret (which the task definitions read). The secret access key exists only in
this process's memory. It is idempotent: when the stored login is still an active key of that user,
nothing changes; keys of that user that the secret does not hold (left by an interrupted run) are deleted
first, so IAM's two-keys-per-user limit never blocks a re-run.

`ses_sandbox_notice(target)` says when the account is still in the SES sandbox (mail only to verified
addresses: sign-up confirmations to anyone else are refused) and how to leave it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from mastofargate import aws
from mastofargate.deploy import bootstrap
from mastofargate.errors import MastofargateError

if TYPE_CHECKING:
    from mastofargate.target import Target

SMTP_KEYS = ("SMTP_LOGIN", "SMTP_PASSWORD")
# SES's documented derivation (Developer Guide, "Obtaining Amazon SES SMTP credentials"): an AWS Signature
# Version 4 signing key chain over fixed values, then the version byte 0x04, base64-encoded.
_DATE = "11111111"
_SERVICE = "ses"
_TERMINAL = "aws4_request"
_MESSAGE = "SendRawEmail"
_VERSION = b"\x04"


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def smtp_password(secret_access_key: str, region: str) -> str:
    """The SES SMTP password for an IAM secret access key in `region` (passwords are per region)."""
    signature = _sign(("AWS4" + secret_access_key).encode("utf-8"), _DATE)
    for part in (region, _SERVICE, _TERMINAL, _MESSAGE):
        signature = _sign(signature, part)
    return base64.b64encode(_VERSION + signature).decode("ascii")


def _smtp_user(target: Target) -> str:
    user = target.stack_outputs(target.data_stack).get("SmtpUserName")
    if not user:
        raise MastofargateError(
            f"The data stack {target.data_stack} has no SMTP user (output SmtpUserName).",
            why="SES mail needs the IAM user the data stack creates when [smtp] names no server",
            fix="deploy the data stack first ('mastofargate deploy'), or set [smtp] server for your own provider",
        )
    return user


def _write_smtp_keys(target: Target, present: dict[str, Any], login: str, password: str) -> None:
    """Write SMTP_LOGIN/SMTP_PASSWORD; every other key of the secret is carried over unchanged."""
    new = {**present, "SMTP_LOGIN": login, "SMTP_PASSWORD": password}
    bootstrap.update_kind(target, "app", new, present)  # the one guarded read-merge-write


def ensure_smtp_credentials(target: Target) -> str:
    """Make sure the secret holds SES SMTP credentials of a live key; return what was done
    ("not used", "unchanged", "created"). Call after the data stack exists and the secret has been
    created (bootstrap.ensure_secrets), before services start (their task definitions read both keys)."""
    if target.config.smtp.server:
        return "not used"
    user = _smtp_user(target)
    iam = target.client("iam")
    present = bootstrap.read_kind(target, "app")
    login = present.get("SMTP_LOGIN")
    with aws.aws_errors(f"listing the access keys of IAM user {user}"):
        keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    live = {k["AccessKeyId"] for k in keys if k.get("Status") == "Active"}
    if login and present.get("SMTP_PASSWORD") and login in live:
        return "unchanged"
    for key in keys:  # not in the secret, so nobody can use them: an interrupted run's leftovers
        with aws.aws_errors(f"deleting an unused access key of IAM user {user}"):
            iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
    with aws.aws_errors(f"creating an access key for IAM user {user}"):
        key = iam.create_access_key(UserName=user)["AccessKey"]
    _write_smtp_keys(target, present, key["AccessKeyId"], smtp_password(key["SecretAccessKey"], target.region))
    return "created"


def ses_sandbox_notice(target: Target) -> str | None:
    """A warning when SES in the server's region cannot yet mail everyone (sandbox, or sending paused);
    None when it can, or when [smtp] names another provider."""
    cfg = target.config
    if cfg.smtp.server:
        return None
    with aws.aws_errors(f"reading the SES account in {target.region}"):
        account = target.client("sesv2").get_account()
    region, host = target.region, cfg.server.host
    if not account.get("SendingEnabled", True):
        return (
            f"SES sending is paused for this account in {region}: Mastodon cannot send mail (sign-up "
            "confirmations, password resets). See the SES console's account dashboard for why and how to resume."
        )
    if account.get("ProductionAccessEnabled"):
        return None
    return (
        f"SES in {region} is still in the sandbox: it delivers only to verified addresses, so sign-up "
        f"confirmations and password resets to anyone else are refused. Ask AWS for production access (SES "
        f"console > Account dashboard > Request production access, or: aws sesv2 put-account-details --region "
        f"{region} --production-access-enabled --mail-type TRANSACTIONAL --website-url https://{host} "
        "--use-case-description 'Mastodon server: account confirmations and password resets'). Until then, "
        f"verify the addresses that must receive mail: aws sesv2 create-email-identity --region {region} "
        f"--email-identity {cfg.server.admin_email}"
    )
