"""Media: a private S3 bucket behind CloudFront with Origin Access Control.

Mastodon writes with the task role (no static keys) and `S3_PERMISSION` set to the EMPTY string: the
bucket has ACLs disabled and Block Public Access on, so Mastodon must send no ACL and skip its ACL
updates. Media is linked through `S3_ALIAS_HOST` = the distribution's domain. Pre-built assets
(`public/packs`, `public/assets`, emoji, sounds) are uploaded under the bucket's `assets/` prefix and
served by the same distribution, so `CDN_HOST` points there and a rolling deploy never serves
mismatched asset names. The distribution lives in the data stack because its domain is baked into
every media URL and must not change.
"""

from __future__ import annotations

from awacs.aws import Action, Allow, Bool, Condition, Deny, PolicyDocument, Principal, Statement, StringEquals
from troposphere import GetAtt, Join, Ref, Sub, cloudfront, s3

from mastofargate.stack.context import Build

ASSET_PREFIX = "assets"
# Deleted or overwritten objects stay recoverable this long; cleanup deletes remote media daily, so a longer
# window mostly pays for old copies of other servers' media.
NONCURRENT_DAYS = 7
# URL paths Rails and the web client load from CDN_HOST, served from s3://bucket/assets/<path>.
ASSET_PATHS = ("packs", "assets", "emoji", "sounds")
# AWS managed CloudFront policies (stable ids published by AWS).
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
CORS_S3_ORIGIN = "88a5eaf4-2fd4-4709-b370-b4c650ea3fcf"
CORS_AND_SECURITY_HEADERS = "eaab4381-ed33-4a86-88ca-d9558dc6cd63"


def private_bucket(b: Build, purpose: str, encryption: s3.ServerSideEncryptionByDefault) -> dict[str, object]:
    """What every bucket of ours shares: a name unique per account and region, Block Public Access on all
    four switches, ACLs disabled (the bucket owner owns every object), default encryption."""
    return dict(
        BucketName=Sub(f"{b.name}-{purpose}-${{AWS::AccountId}}-${{AWS::Region}}"),
        PublicAccessBlockConfiguration=s3.PublicAccessBlockConfiguration(
            BlockPublicAcls=True, BlockPublicPolicy=True, IgnorePublicAcls=True, RestrictPublicBuckets=True
        ),
        OwnershipControls=s3.OwnershipControls(Rules=[s3.OwnershipControlsRule(ObjectOwnership="BucketOwnerEnforced")]),
        BucketEncryption=s3.BucketEncryption(
            ServerSideEncryptionConfiguration=[
                s3.ServerSideEncryptionRule(ServerSideEncryptionByDefault=encryption, BucketKeyEnabled=True)
            ]
        ),
    )


def add(b: Build) -> None:
    t = b.data
    bucket = b.add(
        t,
        s3.Bucket(
            "MediaBucket",
            **private_bucket(b, "media", s3.ServerSideEncryptionByDefault(SSEAlgorithm="AES256")),
            VersioningConfiguration=s3.VersioningConfiguration(
                Status="Enabled" if b.config.media.versioning else "Suspended"
            ),
            LifecycleConfiguration=s3.LifecycleConfiguration(
                Rules=[
                    s3.LifecycleRule(
                        Id="expire-old-versions",
                        Status="Enabled",
                        NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(NoncurrentDays=NONCURRENT_DAYS),
                    ),
                    s3.LifecycleRule(
                        Id="abort-incomplete-uploads",
                        Status="Enabled",
                        AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(DaysAfterInitiation=7),
                    ),
                ]
            ),
        ),
        "Private media bucket: uploads, avatars, cached remote media, pre-built assets",
        skip=[
            ("CKV_AWS_18", "access logs need a second bucket and cost money; CloudFront serves all reads"),
            ("CKV_AWS_144", "cross-region replication doubles storage cost; versioning guards mistakes"),
            ("CKV_AWS_145", "SSE-S3 encryption; a KMS key would bill every CloudFront miss"),
            ("CKV2_AWS_62", "nothing consumes bucket events"),
        ],
    )
    bucket.DeletionPolicy = "Retain"
    bucket.UpdateReplacePolicy = "Retain"

    oac = b.add(
        t,
        cloudfront.OriginAccessControl(
            "MediaOriginAccessControl",
            OriginAccessControlConfig=cloudfront.OriginAccessControlConfig(
                Name=f"{b.name}-media",
                OriginAccessControlOriginType="s3",
                SigningBehavior="always",
                SigningProtocol="sigv4",
            ),
        ),
        "Lets CloudFront, and only CloudFront, read the media bucket",
    )
    origin_domain = GetAtt(bucket, "RegionalDomainName")
    origins = [
        cloudfront.Origin(
            Id=oid,
            DomainName=origin_domain,
            OriginPath=path,
            S3OriginConfig=cloudfront.S3OriginConfig(OriginAccessIdentity=""),
            OriginAccessControlId=GetAtt(oac, "Id"),
        )
        for oid, path in (("media", ""), ("assets", f"/{ASSET_PREFIX}"))
    ]
    behaviour = dict(
        ViewerProtocolPolicy="redirect-to-https",
        Compress=True,
        CachePolicyId=CACHING_OPTIMIZED,
        OriginRequestPolicyId=CORS_S3_ORIGIN,
        ResponseHeadersPolicyId=CORS_AND_SECURITY_HEADERS,
        AllowedMethods=["GET", "HEAD", "OPTIONS"],
        CachedMethods=["GET", "HEAD", "OPTIONS"],
    )
    dist = b.add(
        t,
        cloudfront.Distribution(
            "MediaDistribution",
            DistributionConfig=cloudfront.DistributionConfig(
                Comment=f"{b.name} media and assets",
                Enabled=True,
                HttpVersion="http2and3",
                IPV6Enabled=True,
                PriceClass="PriceClass_100",
                Origins=origins,
                DefaultCacheBehavior=cloudfront.DefaultCacheBehavior(TargetOriginId="media", **behaviour),
                CacheBehaviors=[
                    cloudfront.CacheBehavior(PathPattern=f"/{p}/*", TargetOriginId="assets", **behaviour)
                    for p in ASSET_PATHS
                ],
            ),
        ),
        "CDN serving media and pre-built assets from the private bucket",
        skip=[
            ("CKV_AWS_68", "a WAF web ACL costs at least $5/month; media is static and cached"),
            ("CKV_AWS_86", "access logs need a log bucket and cost money"),
            ("CKV_AWS_174", "the default *.cloudfront.net certificate fixes the TLS policy"),
            ("CKV_AWS_305", "not a website: there is no root object"),
            ("CKV_AWS_310", "one origin bucket; S3 is the durable store"),
            ("CKV2_AWS_32", "CORS and security headers come from an AWS managed response headers policy"),
            ("CKV2_AWS_42", "a custom domain needs a us-east-1 certificate; the default domain is used"),
            ("CKV2_AWS_47", "no WAF (cost); the origin serves only static objects"),
        ],
    )

    b.add(
        t,
        s3.BucketPolicy(
            "MediaBucketPolicy",
            Bucket=Ref(bucket),
            PolicyDocument=PolicyDocument(
                Version="2012-10-17",
                Statement=[
                    Statement(
                        Sid="CloudFrontReads",
                        Effect=Allow,
                        Principal=Principal("Service", "cloudfront.amazonaws.com"),
                        Action=[Action("s3", "GetObject")],
                        Resource=[Join("", [GetAtt(bucket, "Arn"), "/*"])],
                        Condition=Condition(
                            StringEquals(
                                "AWS:SourceArn",
                                Sub(
                                    "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${MediaDistribution}"
                                ),
                            )
                        ),
                    ),
                    Statement(
                        Sid="TlsOnly",
                        Effect=Deny,
                        Principal=Principal("AWS", "*"),
                        Action=[Action("s3", "*")],
                        Resource=[GetAtt(bucket, "Arn"), Join("", [GetAtt(bucket, "Arn"), "/*"])],
                        Condition=Condition(Bool("aws:SecureTransport", "false")),
                    ),
                ],
            ),
        ),
        "Bucket policy: reads only through CloudFront, TLS only",
    )

    b.export("MediaBucketName", Ref(bucket), "Media bucket name (S3_BUCKET)")
    b.export("MediaBucketArn", GetAtt(bucket, "Arn"), "Media bucket ARN")
    b.export("MediaDomain", GetAtt(dist, "DomainName"), "CloudFront domain for media and assets (S3_ALIAS_HOST)")
    b.export("MediaDistributionId", Ref(dist), "CloudFront distribution id")
