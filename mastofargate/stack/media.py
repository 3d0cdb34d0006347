"""Media: a private S3 bucket behind CloudFront with Origin Access Control.

Mastodon writes with the task role (no static keys) and `S3_PERMISSION` set to the EMPTY string: the
bucket has ACLs disabled and Block Public Access on, so Mastodon must send no ACL and skip its ACL
updates. Media is linked through `S3_ALIAS_HOST`, assets through `CDN_HOST`: both the media domain
(`files.DOMAIN` with a hosted zone, its own certificate, TLS 1.2+; else the distribution's name).

What CloudFront may read is only what Mastodon serves publicly:
- the Paperclip prefixes of public attachments (`MEDIA_PREFIXES`), cached at the edge at most
  `MEDIA_EDGE_TTL` seconds because media can be deleted or moderated away;
- `assets/`: every file of the image's `public/` except `system/` (packs, assets, emoji, sounds, the
  default avatar and header, embed.js, ...), uploaded by `mastofargate images assets`, served for any
  other path (the default behaviour), so a rolling deploy never serves mismatched asset names.
Never `backups/` (user archive exports, which Mastodon hands out only as short-lived signed S3 links):
the bucket policy does not let CloudFront read it and no behaviour routes to it.
The distribution lives in the data stack because its domain is baked into every media URL.
"""

from __future__ import annotations

from awacs.aws import Action, Allow, Bool, Condition, Deny, PolicyDocument, Principal, Statement, StringEquals
from troposphere import GetAtt, Join, Ref, Sub, certificatemanager, cloudfront, route53, s3

from mastofargate.stack.context import Build

ASSET_PREFIX = "assets"
# Deleted or overwritten objects stay recoverable this long; cleanup deletes remote media daily, so a longer
# window mostly pays for old copies of other servers' media.
NONCURRENT_DAYS = 7
# public/ entries never exported: `system/` is where filesystem storage keeps user uploads.
EXCLUDED_PUBLIC = ("system",)
# Key prefixes of the attachments Mastodon serves publicly (Paperclip path ':prefix_url:class/:attachment/...'
# in config/initializers/paperclip.rb; the class names of app/models with has_attached_file; `cache/` holds
# remote accounts' copies). Not here: `backups/` (app/models/backup.rb, user archive exports, private).
MEDIA_PREFIXES = (
    "accounts",
    "cache",
    "custom_emojis",
    "media_attachments",
    "preview_card_providers",
    "preview_cards",
    "site_uploads",
)
PRIVATE_PREFIXES = ("backups",)
# Mastodon uploads media with Cache-Control max-age of ten years; the edge keeps a copy at most this long,
# so a deleted or moderated file stops being served within the hour (a miss costs one S3 GET).
MEDIA_EDGE_TTL = 3600
# AWS managed CloudFront policies (stable ids published by AWS).
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
CORS_S3_ORIGIN = "88a5eaf4-2fd4-4709-b370-b4c650ea3fcf"
CORS_AND_SECURITY_HEADERS = "eaab4381-ed33-4a86-88ca-d9558dc6cd63"
CLOUDFRONT_ZONE_ID = "Z2FDTNDATAQYW2"  # the hosted zone of every CloudFront alias target (fixed by AWS)


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
    media_cache = b.add(
        t,
        cloudfront.CachePolicy(
            "MediaCachePolicy",
            CachePolicyConfig=cloudfront.CachePolicyConfig(
                Name=f"{b.name}-media",
                Comment="Media may be deleted or moderated: keep it at the edge at most an hour",
                MinTTL=0,
                DefaultTTL=MEDIA_EDGE_TTL,
                MaxTTL=MEDIA_EDGE_TTL,
                ParametersInCacheKeyAndForwardedToOrigin=cloudfront.ParametersInCacheKeyAndForwardedToOrigin(
                    EnableAcceptEncodingGzip=True,
                    EnableAcceptEncodingBrotli=True,
                    CookiesConfig=cloudfront.CacheCookiesConfig(CookieBehavior="none"),
                    HeadersConfig=cloudfront.CacheHeadersConfig(HeaderBehavior="none"),
                    QueryStringsConfig=cloudfront.CacheQueryStringsConfig(QueryStringBehavior="none"),
                ),
            ),
        ),
        "Edge caching of user media capped at an hour (deleted media stops being served)",
    )
    behaviour = dict(
        ViewerProtocolPolicy="redirect-to-https",
        Compress=True,
        OriginRequestPolicyId=CORS_S3_ORIGIN,
        ResponseHeadersPolicyId=CORS_AND_SECURITY_HEADERS,
        AllowedMethods=["GET", "HEAD", "OPTIONS"],
        CachedMethods=["GET", "HEAD", "OPTIONS"],
    )
    domain = b.config.media_domain
    extra: dict[str, object] = {}
    skip = [
        ("CKV_AWS_68", "a WAF web ACL costs at least $5/month; media is static and cached"),
        ("CKV_AWS_86", "access logs need a log bucket and cost money"),
        ("CKV_AWS_305", "not a website: there is no root object"),
        ("CKV_AWS_310", "one origin bucket; S3 is the durable store"),
        ("CKV2_AWS_32", "CORS and security headers come from an AWS managed response headers policy"),
        ("CKV2_AWS_47", "no WAF (cost); the origin serves only static objects"),
    ]
    if domain:
        cert = b.config.media.certificate_arn or Ref(
            b.add(
                t,
                certificatemanager.Certificate(
                    "MediaCertificate",
                    DomainName=domain,
                    ValidationMethod="DNS",
                    DomainValidationOptions=[
                        certificatemanager.DomainValidationOption(
                            DomainName=domain, HostedZoneId=b.config.aws.hosted_zone_id
                        )
                    ],
                ),
                f"TLS certificate for the media domain {domain} (us-east-1, as CloudFront requires)",
            )
        )
        extra = dict(
            Aliases=[domain],
            ViewerCertificate=cloudfront.ViewerCertificate(
                AcmCertificateArn=cert, MinimumProtocolVersion="TLSv1.2_2021", SslSupportMethod="sni-only"
            ),
        )
    else:
        skip += [
            ("CKV_AWS_174", "media on *.cloudfront.net: its default certificate fixes the TLS policy"),
            ("CKV2_AWS_42", "media on *.cloudfront.net: the distribution's own name and certificate"),
        ]
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
                # Any path that is not media is a public/ file of the image, under the bucket's assets/.
                DefaultCacheBehavior=cloudfront.DefaultCacheBehavior(
                    TargetOriginId="assets", CachePolicyId=CACHING_OPTIMIZED, **behaviour
                ),
                CacheBehaviors=[
                    cloudfront.CacheBehavior(
                        PathPattern=f"/{p}/*", TargetOriginId="media", CachePolicyId=Ref(media_cache), **behaviour
                    )
                    for p in MEDIA_PREFIXES
                ],
                **extra,
            ),
        ),
        "CDN serving public media and pre-built assets from the private bucket",
        skip=skip,
    )
    if domain and b.config.aws.hosted_zone_id:
        for kind in ("A", "AAAA"):
            b.add(
                t,
                route53.RecordSetType(
                    f"MediaDnsRecord{kind.replace('AAAA', 'Ipv6').replace('A', 'Ipv4')}",
                    HostedZoneId=b.config.aws.hosted_zone_id,
                    Name=domain,
                    Type=kind,
                    AliasTarget=route53.AliasTarget(
                        DNSName=GetAtt(dist, "DomainName"),
                        HostedZoneId=CLOUDFRONT_ZONE_ID,
                        EvaluateTargetHealth=False,
                    ),
                ),
                f"DNS: {domain} ({kind}) points at the media distribution",
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
                        # Only what Mastodon serves publicly; never backups/ (user archive exports).
                        Resource=[
                            Join("", [GetAtt(bucket, "Arn"), f"/{p}/*"]) for p in (ASSET_PREFIX, *MEDIA_PREFIXES)
                        ],
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
        "Bucket policy: CloudFront reads only public media and assets (never exports); TLS only",
    )

    b.export("MediaBucketName", Ref(bucket), "Media bucket name (S3_BUCKET)")
    b.export("MediaBucketArn", GetAtt(bucket, "Arn"), "Media bucket ARN")
    # Two exports: an export in use cannot change value, so servers deployed before media moved to their own
    # name keep MediaDomain (the distribution's name, which also keeps serving the URLs already out there)
    # while the app stack switches to MediaHost.
    b.export("MediaDomain", GetAtt(dist, "DomainName"), "The distribution's own *.cloudfront.net name")
    b.export(
        "MediaHost",
        domain or GetAtt(dist, "DomainName"),
        "Host serving media and assets (S3_ALIAS_HOST, CDN_HOST); permanent once posts exist",
    )
    b.export("MediaDistributionId", Ref(dist), "CloudFront distribution id")
