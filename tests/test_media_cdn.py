"""The media CDN: what it routes, what it may read, how long it keeps media, on which name (issues 9 and 10).

The bucket policy is evaluated here with IAM's matching rules for the one question that matters (may the
CloudFront service principal GetObject this key?) because neither moto nor any local emulator evaluates
bucket policies for service principals; CloudFront's path-pattern routing is likewise resolved by hand
(first matching behaviour in order, else the default; `*` matches any characters). Everything else is read
from the generated template.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from mastofargate.errors import UsageError
from mastofargate.stack import build
from mastofargate.stack.media import ASSET_PREFIX, MEDIA_EDGE_TTL, MEDIA_PREFIXES
from tests.conftest import make_config

BUCKET_ARN = "arn:aws:s3:::social-media-123456789012-us-east-1"
CERT = "arn:aws:acm:us-east-1:123456789012:certificate/" + "0" * 8 + "-0000-0000-0000-" + "0" * 12


def data(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return build(make_config(overrides or {}))["data"].to_dict()


def _resolve(value: Any) -> str:
    """Fn::Join/GetAtt of the media bucket's ARN, as CloudFormation would render it."""
    if isinstance(value, str):
        return value
    if "Fn::GetAtt" in value:
        assert value["Fn::GetAtt"] == ["MediaBucket", "Arn"]
        return BUCKET_ARN
    sep, parts = value["Fn::Join"]
    return sep.join(_resolve(p) for p in parts)


def cloudfront_may_read(tpl: dict[str, Any], key: str) -> bool:
    policy = tpl["Resources"]["MediaBucketPolicy"]["Properties"]["PolicyDocument"]
    arn = f"{BUCKET_ARN}/{key}"
    allowed = False
    for st in policy["Statement"]:
        principal = st["Principal"]
        cloudfront = ({"Service": ["cloudfront.amazonaws.com"]}, {"Service": "cloudfront.amazonaws.com"})
        if principal not in (*cloudfront, {"AWS": "*"}, {"AWS": ["*"]}, "*"):
            continue
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        if not any(fnmatchcase("s3:GetObject", a) for a in actions):
            continue
        if not any(fnmatchcase(arn, _resolve(r)) for r in st["Resource"]):
            continue
        if st["Effect"] == "Deny" and "aws:SecureTransport" not in str(st.get("Condition")):
            return False
        allowed = allowed or st["Effect"] == "Allow"
    return allowed


def route(tpl: dict[str, Any], path: str) -> str:
    """The S3 key CloudFront asks for when a browser requests `path`."""
    cfg = tpl["Resources"]["MediaDistribution"]["Properties"]["DistributionConfig"]
    origins = {o["Id"]: o.get("OriginPath", "") for o in cfg["Origins"]}
    target = cfg["DefaultCacheBehavior"]["TargetOriginId"]
    for beh in cfg.get("CacheBehaviors", []):
        if fnmatchcase(path, beh["PathPattern"]):
            target = beh["TargetOriginId"]
            break
    return (origins[target] + path).lstrip("/")


EXPORT = "backups/dumps/000/000/001/original/archive-20261130-abcdef.zip"
CDN_HOST_FILES = (
    "/avatars/original/missing.png",
    "/headers/original/missing.png",
    "/embed.js",
    "/packs/assets/application-3f9a1c2b.js",
    "/assets/logo-1a2b3c4d.svg",
    "/emoji/1f600.svg",
    "/sounds/boop.ogg",
)
MEDIA_KEYS = (
    "media_attachments/files/109/000/000/000/000/001/original/abc.png",
    "accounts/avatars/109/000/000/000/000/001/original/abc.png",
    "cache/media_attachments/files/110/000/000/000/000/002/small/def.jpg",
    "custom_emojis/images/000/000/001/static/blobcat.png",
    "site_uploads/files/000/000/001/@1x/thumbnail.png",
)


def test_the_bucket_policy_refuses_user_archive_exports() -> None:
    tpl = data()
    assert not cloudfront_may_read(tpl, EXPORT)
    assert not cloudfront_may_read(tpl, "imports/data/000/000/001/original/follows.csv")
    assert not cloudfront_may_read(tpl, "some-other-prefix/x")
    # ... and the evaluator is not blind: it allows what must be public
    for key in MEDIA_KEYS:
        assert cloudfront_may_read(tpl, key), key


def test_no_path_routes_to_the_export_prefix() -> None:
    tpl = data()
    assert route(tpl, "/" + EXPORT) == f"{ASSET_PREFIX}/{EXPORT}"  # an asset key that is never written
    for path in ("/" + EXPORT, "/backups/x"):
        assert not route(tpl, path).startswith("backups/")


@pytest.mark.parametrize("path", CDN_HOST_FILES)
def test_every_file_mastodon_builds_from_cdn_host_is_routed_to_the_exported_assets(path: str) -> None:
    tpl = data()
    key = route(tpl, path)
    assert key == f"{ASSET_PREFIX}{path}"
    assert cloudfront_may_read(tpl, key)


@pytest.mark.parametrize("key", MEDIA_KEYS)
def test_media_is_routed_to_the_bucket_root(key: str) -> None:
    assert route(data(), "/" + key) == key


def test_media_edge_cache_is_capped_and_assets_keep_theirs() -> None:
    tpl = data()
    res = tpl["Resources"]
    policy = res["MediaCachePolicy"]["Properties"]["CachePolicyConfig"]
    assert policy["MaxTTL"] == policy["DefaultTTL"] == MEDIA_EDGE_TTL <= 3600
    cfg = res["MediaDistribution"]["Properties"]["DistributionConfig"]
    media = [b for b in cfg["CacheBehaviors"] if b["TargetOriginId"] == "media"]
    assert sorted(b["PathPattern"] for b in media) == sorted(f"/{p}/*" for p in MEDIA_PREFIXES)
    assert all(b["CachePolicyId"] == {"Ref": "MediaCachePolicy"} for b in media)
    # the default behaviour (assets) uses AWS's CachingOptimized, which honours the year-long immutable header
    assert cfg["DefaultCacheBehavior"]["CachePolicyId"] == "658327ea-f89d-4fab-a63d-7e88639e58f6"


def test_media_on_an_owned_domain_with_its_own_certificate_and_tls_12() -> None:
    tpl = data()
    res = tpl["Resources"]
    cfg = res["MediaDistribution"]["Properties"]["DistributionConfig"]
    assert cfg["Aliases"] == ["files.social.example.org"]
    viewer = cfg["ViewerCertificate"]
    assert viewer["MinimumProtocolVersion"] == "TLSv1.2_2021" and viewer["SslSupportMethod"] == "sni-only"
    assert viewer["AcmCertificateArn"] == {"Ref": "MediaCertificate"}
    cert = res["MediaCertificate"]["Properties"]
    assert cert["DomainName"] == "files.social.example.org" and cert["ValidationMethod"] == "DNS"
    records = {
        r["Properties"]["Type"]: r["Properties"]
        for title, r in res.items()
        if r["Type"] == "AWS::Route53::RecordSet" and title.startswith("MediaDns")
    }
    assert set(records) == {"A", "AAAA"}
    for rec in records.values():
        assert rec["Name"] == "files.social.example.org"
        assert rec["AliasTarget"]["HostedZoneId"] == "Z2FDTNDATAQYW2"
    assert tpl["Outputs"]["MediaHost"]["Value"] == "files.social.example.org"
    # the distribution's own name stays exported unchanged (an export in use cannot change value)
    assert tpl["Outputs"]["MediaDomain"]["Value"] == {"Fn::GetAtt": ["MediaDistribution", "DomainName"]}


def test_a_configured_media_name_and_certificate() -> None:
    tpl = data({"media": {"domain": "cdn.example.net", "certificate_arn": CERT}})
    cfg = tpl["Resources"]["MediaDistribution"]["Properties"]["DistributionConfig"]
    assert cfg["Aliases"] == ["cdn.example.net"]
    assert cfg["ViewerCertificate"]["AcmCertificateArn"] == CERT
    assert "MediaCertificate" not in tpl["Resources"]


def test_keeping_cloudfront_net_is_an_explicit_choice() -> None:
    tpl = data({"media": {"domain": "cloudfront"}})
    cfg = tpl["Resources"]["MediaDistribution"]["Properties"]["DistributionConfig"]
    assert "Aliases" not in cfg and "MediaCertificate" not in tpl["Resources"]
    assert tpl["Outputs"]["MediaHost"]["Value"] == {"Fn::GetAtt": ["MediaDistribution", "DomainName"]}


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"aws": {"region": "eu-central-1"}}, "needs a certificate in us-east-1"),
        ({"media": {"domain": "not a host"}}, "'not a host' is not a host name"),
        (
            {"media": {"certificate_arn": CERT.replace("us-east-1", "eu-west-1")}},
            "is not a us-east-1 ACM certificate ARN",
        ),
    ],
)
def test_media_domain_errors_name_the_field_and_what_is_allowed(overrides: dict[str, Any], needle: str) -> None:
    with pytest.raises(UsageError) as e:
        make_config(overrides)
    assert needle in str(e.value) and "allowed" in str(e.value)


def test_init_says_the_media_name_is_permanent_and_writes_the_choice_outside_us_east_1(tmp_path: Path) -> None:
    from mastofargate.config import load_config
    from tests.test_init import init

    base = ["--domain", "social.example.org", "--hosted-zone-id", "Z0123456789EXAMPLE", "--yes"]
    home = init(*base, "--config", str(tmp_path / "a.toml"), cwd=tmp_path)
    assert home.returncode == 0, home.stderr
    assert "served on files.social.example.org" in home.stdout and "permanent" in home.stdout
    away = init(*base, "--region", "eu-central-1", "--config", str(tmp_path / "b.toml"), cwd=tmp_path)
    assert away.returncode == 0, away.stderr
    assert "*.cloudfront.net" in away.stdout and "BEFORE the first deploy" in away.stdout
    assert load_config(tmp_path / "b.toml").media.domain == "cloudfront"
