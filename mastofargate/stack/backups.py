"""The backup bucket: logical dumps and, for the Postgres task, pgBackRest's WAL archive and base backups.

Private (Block Public Access, ACLs off), versioned, encrypted with the stack's KMS key, TLS only, and
`Retain` on delete and on replacement (DESIGN invariant 3): a stack operation can never take the backups
with it. Objects age out by lifecycle, by prefix, because the two writers keep time differently:
  dumps/       logical dumps (`pg_dump -Fc`) and their manifests: expire after DUMP_DAYS
  pgbackrest/  pgBackRest's repository: pgBackRest expires its own backups and the WAL they need
               (repo1-retention-full); a lifecycle expiry by age would cut WAL out from under a backup it
               still keeps, so this prefix only loses deleted (noncurrent) versions
Deleted and overwritten objects of either kind stay recoverable for NONCURRENT_DAYS.
"""

from __future__ import annotations

from awacs.aws import Action, Bool, Condition, Deny, PolicyDocument, Principal, Statement
from troposphere import GetAtt, Join, Ref, s3

from mastofargate.stack.context import Build
from mastofargate.stack.media import private_bucket

DUMP_PREFIX = "dumps/"
PGBACKREST_PREFIX = "pgbackrest/"
# Nightly dumps kept five weeks: as long as AWS Backup's daily recovery points (stack/database.py).
DUMP_DAYS = 35
NONCURRENT_DAYS = 7
# CloudWatch metrics the backup tasks publish (pgtask.py --publish NAMESPACE --server NAME), dimension Server:
# BackupSucceeded (each dump), DrillSucceeded and BackupAgeSeconds (each drill). Alarms watch them.
METRIC_NAMESPACE = "Mastofargate/Backups"
# ... and with `database = "task"` the Postgres task's pgBackRest keeper: WalArchiveFailing (1/0, every 10 min).
METRICS = ("BackupSucceeded", "DrillSucceeded", "BackupAgeSeconds")
ARCHIVE_METRIC = "WalArchiveFailing"


def add(b: Build) -> None:
    t = b.data
    key = GetAtt("EncryptionKey", "Arn")
    bucket = b.add(
        t,
        s3.Bucket(
            "BackupBucket",
            **private_bucket(
                b, "backups", s3.ServerSideEncryptionByDefault(SSEAlgorithm="aws:kms", KMSMasterKeyID=key)
            ),
            VersioningConfiguration=s3.VersioningConfiguration(Status="Enabled"),
            LifecycleConfiguration=s3.LifecycleConfiguration(
                Rules=[
                    s3.LifecycleRule(
                        Id="expire-dumps",
                        Status="Enabled",
                        Prefix=DUMP_PREFIX,
                        ExpirationInDays=DUMP_DAYS,
                    ),
                    s3.LifecycleRule(
                        Id="expire-deleted-versions",
                        Status="Enabled",
                        NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(NoncurrentDays=NONCURRENT_DAYS),
                        AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(DaysAfterInitiation=2),
                    ),
                ]
            ),
        ),
        f"Private, versioned backup bucket: database dumps ({DUMP_DAYS} days) and the Postgres task's WAL archive",
        skip=[
            ("CKV_AWS_18", "access logs need a second bucket and cost money; only our backup tasks write here"),
            ("CKV_AWS_144", "cross-region replication doubles storage cost; keys and dumps can be exported"),
            ("CKV2_AWS_62", "nothing consumes bucket events"),
        ],
    )
    bucket.DeletionPolicy = "Retain"
    bucket.UpdateReplacePolicy = "Retain"
    arn = GetAtt(bucket, "Arn")
    b.add(
        t,
        s3.BucketPolicy(
            "BackupBucketPolicy",
            Bucket=Ref(bucket),
            PolicyDocument=PolicyDocument(
                Version="2012-10-17",
                Statement=[
                    Statement(
                        Sid="TlsOnly",
                        Effect=Deny,
                        Principal=Principal("AWS", "*"),
                        Action=[Action("s3", "*")],
                        Resource=[arn, Join("", [arn, "/*"])],
                        Condition=Condition(Bool("aws:SecureTransport", "false")),
                    ),
                ],
            ),
        ),
        "Backup bucket policy: TLS only",
    )
    b.export("BackupBucketName", Ref(bucket), "Backup bucket name (dumps, WAL archive)")
    b.export("BackupBucketArn", arn, "Backup bucket ARN")
