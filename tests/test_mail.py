"""Mail: the SES identity and its DNS in the data stack, the SMTP settings each shape gives Mastodon, the
SMTP password derivation, and the deploy functions that make and check credentials.

The derivation is checked against a vector computed with the `openssl` command-line tool from SES's
documented algorithm (SES publishes the algorithm and sample code, not an input/output pair), for AWS's
documentation example secret key. `ensure_smtp_credentials` runs against the moto server; the SES sandbox
check uses botocore's Stubber because moto has no sesv2 GetAccount.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from mastofargate.deploy import bootstrap
from mastofargate.deploy.mail import ensure_smtp_credentials, ses_sandbox_notice, smtp_password
from mastofargate.errors import MastofargateError
from mastofargate.stack import build
from mastofargate.target import Target
from tests.conftest import make_config
from tests.moto_server import aws_endpoint, moto_server  # noqa: F401

EXAMPLE_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS documentation's example secret access key
# openssl dgst -sha256 -mac HMAC chain over "AWS4"+key: 11111111, us-east-1, ses, aws4_request, SendRawEmail;
# then base64(0x04 + signature)
EXAMPLE_PASSWORD_US_EAST_1 = "BLBM/9hSUELfq8Gw+rU1YcBjkOxGbhT2XG763xVLGWL9"
OWN_SMTP = {"smtp": {"server": "smtp.example.net", "login": "mastodon", "from_address": "hi@example.org"}}


def _openssl_password(key: str, region: str) -> str:
    mac = ("AWS4" + key).encode().hex()
    for part in ("11111111", region, "ses", "aws4_request", "SendRawEmail"):
        mac = subprocess.run(
            ["openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt", f"hexkey:{mac}", "-binary"],
            input=part.encode(),
            capture_output=True,
            check=True,
        ).stdout.hex()
    return base64.b64encode(b"\x04" + bytes.fromhex(mac)).decode()


def test_smtp_password_matches_the_documented_algorithm() -> None:
    assert smtp_password(EXAMPLE_KEY, "us-east-1") == EXAMPLE_PASSWORD_US_EAST_1
    assert smtp_password(EXAMPLE_KEY, "eu-west-1") != EXAMPLE_PASSWORD_US_EAST_1  # per region
    if shutil.which("openssl"):
        for region in ("us-east-1", "eu-central-1"):
            assert smtp_password(EXAMPLE_KEY, region) == _openssl_password(EXAMPLE_KEY, region)


def _data(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return build(make_config(extra or {}))["data"].to_dict()


def _env(extra: dict[str, Any] | None = None) -> tuple[dict[str, Any], set[str]]:
    app = build(make_config(extra or {}))["app"].to_dict()
    web = app["Resources"]["WebTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    return {e["Name"]: e["Value"] for e in web["Environment"]}, {s["Name"] for s in web["Secrets"]}


def test_ses_identity_with_dkim_and_mail_from_records_in_the_zone() -> None:
    res = _data()["Resources"]
    ident = res["MailIdentity"]["Properties"]
    assert ident["EmailIdentity"] == "social.example.org"
    assert ident["MailFromAttributes"]["MailFromDomain"] == "bounce.social.example.org"
    records = {
        k: v["Properties"] for k, v in res.items() if k.startswith("Mail") and v["Type"] == "AWS::Route53::RecordSet"
    }
    dkim = [r for r in records.values() if r["Type"] == "CNAME"]
    assert len(dkim) == 3
    for i, r in enumerate(sorted(dkim, key=lambda r: r["Name"]["Fn::GetAtt"][1]), start=1):
        assert r["Name"] == {"Fn::GetAtt": ["MailIdentity", f"DkimDNSTokenName{i}"]}
        assert r["ResourceRecords"] == [{"Fn::GetAtt": ["MailIdentity", f"DkimDNSTokenValue{i}"]}]
        assert r["HostedZoneId"] == "Z0123456789EXAMPLE"
    mx = records["MailFromMxRecord"]
    assert mx["Name"] == "bounce.social.example.org" and mx["Type"] == "MX"
    assert mx["ResourceRecords"] == [{"Fn::Sub": "10 feedback-smtp.${AWS::Region}.amazonses.com"}]
    assert records["MailFromSpfRecord"]["ResourceRecords"] == ['"v=spf1 include:amazonses.com ~all"']


def test_the_smtp_user_may_only_send_as_the_server_and_no_key_is_in_any_template() -> None:
    cfg = make_config()
    templates = {k: t.to_dict() for k, t in build(cfg).items()}
    user = templates["data"]["Resources"]["SmtpUser"]["Properties"]
    (policy,) = user["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["ses:SendRawEmail"]
    assert statement["Resource"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/social.example.org"}
    ]
    for tpl in templates.values():
        assert not [r for r in tpl["Resources"].values() if r["Type"] == "AWS::IAM::AccessKey"]
        assert "SecretAccessKey" not in json.dumps(tpl)


def test_ses_settings_reach_mastodon_with_credentials_as_secrets() -> None:
    env, secrets = _env()
    assert env["SMTP_SERVER"] == "email-smtp.us-east-1.amazonaws.com" and env["SMTP_PORT"] == "587"
    assert env["SMTP_FROM_ADDRESS"] == "notifications@social.example.org"
    assert env["SMTP_ENABLE_STARTTLS"] == "always"
    assert {"SMTP_LOGIN", "SMTP_PASSWORD"} <= secrets and "SMTP_LOGIN" not in env


def test_own_smtp_provider_replaces_ses() -> None:
    env, secrets = _env(OWN_SMTP)
    assert env["SMTP_SERVER"] == "smtp.example.net" and env["SMTP_LOGIN"] == "mastodon"
    assert env["SMTP_FROM_ADDRESS"] == "hi@example.org" and "SMTP_PASSWORD" in secrets
    res = _data(OWN_SMTP)["Resources"]
    assert "MailIdentity" not in res and "SmtpUser" not in res


def test_without_a_zone_the_mail_records_are_outputs_to_create_by_hand() -> None:
    cert = "arn:aws:acm:us-east-1:123456789012:certificate/" + "0" * 8 + "-0000-0000-0000-" + "0" * 12
    tpl = _data({"aws": {"hosted_zone_id": None, "certificate_arn": cert}})
    assert not [r for r in tpl["Resources"].values() if r["Type"] == "AWS::Route53::RecordSet"]
    assert {"MailDkimRecord1", "MailDkimRecord2", "MailDkimRecord3", "MailFromMxRecord"} <= set(tpl["Outputs"])


# --- the deploy functions against the moto server -----------------------------------------------------


@pytest.fixture
def target(aws_endpoint: str) -> Target:  # noqa: F811
    cfg = make_config()
    t = Target(cfg)
    iam = t.client("iam")
    iam.create_user(UserName="social-smtp", Path="/mastofargate/social/")
    body = {
        "Resources": {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {"SmtpUserName": {"Value": "social-smtp"}},
    }
    cfn = t.client("cloudformation")
    cfn.create_stack(StackName=t.data_stack, TemplateBody=json.dumps(body))
    cfn.get_waiter("stack_create_complete").wait(StackName=t.data_stack, WaiterConfig={"Delay": 1})
    bootstrap.ensure_secrets(t)
    return t


def _app(t: Target) -> dict[str, Any]:
    return json.loads(t.client("secretsmanager").get_secret_value(SecretId=t.secret_name)["SecretString"])


def _keys(t: Target) -> list[str]:
    return [k["AccessKeyId"] for k in t.client("iam").list_access_keys(UserName="social-smtp")["AccessKeyMetadata"]]


def test_smtp_credentials_are_created_once_and_stored_not_printed(target: Target, capsys, caplog) -> None:
    before = _app(target)
    assert ensure_smtp_credentials(target) == "created"
    after = _app(target)
    assert _keys(target) == [after["SMTP_LOGIN"]]
    raw = base64.b64decode(after["SMTP_PASSWORD"])
    assert raw[:1] == b"\x04" and len(raw) == 33
    assert {k: v for k, v in after.items() if not k.startswith("SMTP_")} == before  # nothing else changed
    out = capsys.readouterr()
    assert after["SMTP_PASSWORD"] not in out.out + out.err + caplog.text
    assert after["SMTP_LOGIN"] not in out.out + out.err + caplog.text

    assert ensure_smtp_credentials(target) == "unchanged"
    assert _app(target) == after and _keys(target) == [after["SMTP_LOGIN"]]


def test_a_deleted_key_is_replaced_and_leftover_keys_are_removed(target: Target) -> None:
    ensure_smtp_credentials(target)
    first = _app(target)["SMTP_LOGIN"]
    iam = target.client("iam")
    iam.delete_access_key(UserName="social-smtp", AccessKeyId=first)
    leftover = iam.create_access_key(UserName="social-smtp")["AccessKey"]["AccessKeyId"]  # an interrupted run's
    assert ensure_smtp_credentials(target) == "created"
    now = _app(target)["SMTP_LOGIN"]
    assert now not in (first, leftover) and _keys(target) == [now]


def test_own_provider_needs_no_ses_credentials(aws_endpoint: str) -> None:  # noqa: F811
    assert ensure_smtp_credentials(Target(make_config(OWN_SMTP))) == "not used"


def test_without_the_data_stack_the_error_says_what_to_do(aws_endpoint: str) -> None:  # noqa: F811
    with pytest.raises(MastofargateError) as e:
        ensure_smtp_credentials(Target(make_config()))
    assert "has no SMTP user" in str(e.value) and "mastofargate deploy" in str(e.value)


# --- the SES sandbox check (Stubber: moto has no sesv2 GetAccount) -------------------------------------


def _stubbed(monkeypatch: pytest.MonkeyPatch, cfg_extra: dict[str, Any], account: dict[str, Any] | None) -> Target:
    t = Target(make_config(cfg_extra))
    client = boto3.client("sesv2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    if account is not None:
        stub.add_response("get_account", account, {})
    stub.activate()
    monkeypatch.setattr(t, "client", lambda service: client)
    return t


def test_sandbox_notice_says_how_to_leave(monkeypatch: pytest.MonkeyPatch) -> None:
    t = _stubbed(monkeypatch, {}, {"ProductionAccessEnabled": False, "SendingEnabled": True})
    notice = ses_sandbox_notice(t)
    assert notice is not None and "sandbox" in notice and "only to verified addresses" in notice
    assert "put-account-details --region us-east-1 --production-access-enabled" in notice
    assert "create-email-identity --region us-east-1 --email-identity admin@" in notice


def test_no_notice_with_production_access_or_own_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        ses_sandbox_notice(_stubbed(monkeypatch, {}, {"ProductionAccessEnabled": True, "SendingEnabled": True})) is None
    )
    assert ses_sandbox_notice(_stubbed(monkeypatch, OWN_SMTP, None)) is None  # no call at all


def test_paused_sending_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    t = _stubbed(monkeypatch, {}, {"ProductionAccessEnabled": True, "SendingEnabled": False})
    assert "paused" in (ses_sandbox_notice(t) or "")
