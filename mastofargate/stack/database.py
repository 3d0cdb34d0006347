"""Postgres: RDS (encrypted, backed up, snapshot on delete/replace) or a task on encrypted EFS.

Also the EFS file system shared by the Postgres and Redis tasks, and the AWS Backup plan for
everything that holds data. Every data resource carries Snapshot/Retain deletion and replacement
policies, so neither a template change nor a stack delete can drop it (DESIGN invariant 3).
"""

from __future__ import annotations

import json

from awacs.aws import Action, Allow, Bool, Condition, Deny, PolicyDocument, Principal, Statement
from awacs.sts import AssumeRole
from troposphere import GetAtt, Ref, Sub, Tags, backup, efs, iam, logs, rds

from mastofargate import names
from mastofargate.stack.context import Build
from mastofargate.stack.network import SUBNET_CIDRS
from mastofargate.stack.secrets import secret_names

DB_NAME = "mastodon_production"
DB_USER = "mastodon"  # the RDS master user / the Postgres task's superuser: the database setup task only
DB_OWNER = "mastodon_owner"  # what Mastodon logs in as: the owner of its database and nothing more (deploy/dbowner.py)
POSTGRES_UID = 999  # uid of `postgres` in the Debian-based official image
REDIS_UID = 999  # uid of `redis` in the Debian-based official image


def add(b: Build) -> None:
    cfg = b.config
    if cfg.deployment.database == "rds":
        _rds(b)
    if cfg.deployment.database == "task" or cfg.deployment.cache == "task":
        _efs(b)
    _backup(b)


def _password_ref(b: Build, which: str) -> str:
    """A dynamic reference: CloudFormation resolves it at deploy time; the template holds no secret."""
    return "{{resolve:secretsmanager:" + secret_names(b.name)[which] + ":SecretString:password}}"


def _rds(b: Build) -> None:
    cfg = b.config
    t = b.data
    subnets = b.add(
        t,
        rds.DBSubnetGroup(
            "DatabaseSubnetGroup",
            DBSubnetGroupDescription=f"{b.name} database",
            SubnetIds=[Ref("PublicSubnet1"), Ref("PublicSubnet2")],
        ),
        "Subnets the database may run in",
    )
    params = b.add(
        t,
        rds.DBParameterGroup(
            "DatabaseParameters",
            Family=f"postgres{cfg.rds.postgres_version.split('.')[0]}",
            Description=f"{b.name}: TLS only, slow queries logged",
            Parameters={"rds.force_ssl": "1", "log_min_duration_statement": "2000"},
        ),
        "Postgres settings: TLS required, statements slower than 2 s logged",
    )
    storage = cfg.rds.storage_gb or cfg.profile.rds_storage_gb
    db = b.add(
        t,
        rds.DBInstance(
            "Database",
            DBInstanceIdentifier=db_identifier(b),
            Engine="postgres",
            EngineVersion=cfg.rds.postgres_version,
            DBInstanceClass=cfg.rds_instance_class,
            AllocatedStorage=str(storage),
            MaxAllocatedStorage=max(storage, cfg.rds.max_storage_gb or cfg.profile.rds_max_storage_gb),
            StorageType="gp3",
            StorageEncrypted=True,
            KmsKeyId=GetAtt("EncryptionKey", "Arn"),
            DBName=DB_NAME,
            MasterUsername=DB_USER,
            MasterUserPassword=_password_ref(b, "database"),
            DBSubnetGroupName=Ref(subnets),
            VPCSecurityGroups=[Ref("DatabaseSecurityGroup")],
            PubliclyAccessible=False,
            DBParameterGroupName=Ref(params),
            MultiAZ=cfg.rds.multi_az,
            BackupRetentionPeriod=cfg.rds.backup_retention_days,
            PreferredBackupWindow="03:00-03:30",
            PreferredMaintenanceWindow="sun:04:00-sun:04:30",
            CopyTagsToSnapshot=True,
            DeletionProtection=True,
            AutoMinorVersionUpgrade=True,
            EnableIAMDatabaseAuthentication=True,
            EnableCloudwatchLogsExports=["postgresql"],
            Tags=Tags(Name=f"{b.name}-postgres"),
        ),
        "PostgreSQL database (RDS): every account, post and setting of the server",
        skip=[
            ("CKV_AWS_157", "Multi-AZ doubles the instance price; opt in with rds.multi_az"),
            ("CKV_AWS_118", "enhanced monitoring costs extra; CloudWatch basic metrics and alarms are on"),
            ("CKV_AWS_353", "Performance Insights is optional for small servers"),
            ("CKV_AWS_354", "Performance Insights is not enabled, so it has no key"),
        ],
    )
    db.DeletionPolicy = "Snapshot"
    db.UpdateReplacePolicy = "Snapshot"
    # RDS creates the export's log group itself, without retention, unless it already exists: make it first.
    db.DependsOn = ["DatabaseLogGroup"]
    b.add(
        t,
        logs.LogGroup(
            "DatabaseLogGroup",
            LogGroupName=f"/aws/rds/instance/{db_identifier(b)}/postgresql",
            RetentionInDays=cfg.logs.retention_days,
            KmsKeyId=GetAtt("EncryptionKey", "Arn"),
        ),
        f"Postgres logs (slow statements, errors), kept {cfg.logs.retention_days} days",
    )
    b.export("DatabaseHost", GetAtt(db, "Endpoint.Address"), "Postgres host")
    b.export("DatabaseId", Ref(db), "RDS instance identifier")
    b.export(
        "DatabaseArn",
        Sub("arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:db:${Database}"),
        "Postgres instance ARN",
    )


def db_identifier(b: Build) -> str:
    """A fixed instance name, so its log group can exist (with retention) before RDS writes to it."""
    return names.db_instance(b.name)


def _efs(b: Build) -> None:
    t = b.data
    fs = b.add(
        t,
        efs.FileSystem(
            "FileSystem",
            Encrypted=True,
            KmsKeyId=GetAtt("EncryptionKey", "Arn"),
            PerformanceMode="generalPurpose",
            FileSystemProtection=efs.FileSystemProtection(ReplicationOverwriteProtection="ENABLED"),
            # Bursting: no per-GB I/O charge (Elastic bills every GB read and written); a small server's Postgres
            # and Redis stay within the baseline and the 2.1 TiB of credits a new file system starts with. The
            # app stack's EfsBurstCreditAlarm warns long before they run out ([efs] throughput = "elastic").
            ThroughputMode=b.config.efs.throughput,
            BackupPolicy=efs.BackupPolicy(Status="DISABLED"),
            FileSystemPolicy=_tls_only_policy(),
            FileSystemTags=Tags(Name=f"{b.name}-data"),
        ),
        "Encrypted file system holding the Postgres/Redis task data",
    )
    fs.DeletionPolicy = "Retain"
    fs.UpdateReplacePolicy = "Retain"
    for i in range(len(SUBNET_CIDRS)):
        b.add(
            t,
            efs.MountTarget(
                f"FileSystemMount{i + 1}",
                FileSystemId=Ref(fs),
                SubnetId=Ref(f"PublicSubnet{i + 1}"),
                SecurityGroups=[Ref("FileSystemSecurityGroup")],
            ),
            f"File system mount point in availability zone {i + 1}",
        )
    b.export("FileSystemId", Ref(fs), "EFS file system id")
    b.export("FileSystemArn", GetAtt(fs, "Arn"), "EFS file system ARN")
    for role, uid in (("postgres", POSTGRES_UID), ("redis", REDIS_UID)):
        if (role == "postgres" and b.config.deployment.database != "task") or (
            role == "redis" and b.config.deployment.cache != "task"
        ):
            continue
        ap = b.add(
            t,
            efs.AccessPoint(
                f"{role.capitalize()}AccessPoint",
                FileSystemId=Ref(fs),
                PosixUser=efs.PosixUser(Uid=str(uid), Gid=str(uid)),
                RootDirectory=efs.RootDirectory(
                    Path=f"/{role}",
                    CreationInfo=efs.CreationInfo(OwnerUid=str(uid), OwnerGid=str(uid), Permissions="0700"),
                ),
            ),
            f"{role.capitalize()}'s private directory on the file system",
        )
        ap.DeletionPolicy = "Retain"
        ap.UpdateReplacePolicy = "Retain"
        b.export(f"{role.capitalize()}AccessPointId", Ref(ap), f"EFS access point for {role}")
        b.export(f"{role.capitalize()}AccessPointArn", GetAtt(ap, "Arn"), f"EFS access point ARN for {role}")


def _tls_only_policy() -> dict[str, object]:
    """EFS refuses unencrypted NFS clients (the file system policy property wants a plain dict)."""
    doc = PolicyDocument(
        Version="2012-10-17",
        Statement=[
            Statement(
                Sid="TlsOnly",
                Effect=Deny,
                Principal=Principal("AWS", "*"),
                Action=[Action("elasticfilesystem", "*")],
                Resource=["*"],
                Condition=Condition(Bool("aws:SecureTransport", "false")),
            )
        ],
    )
    return json.loads(doc.to_json())


BACKUP_POLICY = Sub("arn:${AWS::Partition}:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup")
# What the vault refuses to everyone, administrators included: deleting a recovery point, or shortening its
# lifetime (the same thing, later). Recovery points still expire by the plan's own lifecycle.
VAULT_DENIED_ACTIONS = ("backup:DeleteRecoveryPoint", "backup:UpdateRecoveryPointLifecycle")


def vault_access_policy() -> dict[str, object]:
    """The backup vault's resource policy (a plain dict, as the property wants)."""
    doc = PolicyDocument(
        Version="2012-10-17",
        Statement=[
            Statement(
                Sid="KeepRecoveryPoints",
                Effect=Deny,
                Principal=Principal("AWS", "*"),
                Action=[Action(*a.split(":")) for a in VAULT_DENIED_ACTIONS],
                Resource=["*"],
            )
        ],
    )
    return json.loads(doc.to_json())


def _backup(b: Build) -> None:
    """Daily backups kept 35 days, weekly kept 13 weeks, of the database and the EFS file system."""
    t = b.data
    vault = b.add(
        t,
        backup.BackupVault(
            "BackupVault",
            BackupVaultName=names.backup_vault(b.name),
            EncryptionKeyArn=GetAtt("EncryptionKey", "Arn"),
            AccessPolicy=vault_access_policy(),
        ),
        "Encrypted vault for database and file system backups; no one may delete a recovery point early",
    )
    vault.DeletionPolicy = "Retain"
    vault.UpdateReplacePolicy = "Retain"
    rule = dict(TargetBackupVault=Ref(vault), StartWindowMinutes=60, CompletionWindowMinutes=480)
    plan = b.add(
        t,
        backup.BackupPlan(
            "BackupPlan",
            BackupPlan=backup.BackupPlanResourceType(
                BackupPlanName=f"{b.name}-backups",
                BackupPlanRule=[
                    backup.BackupRuleResourceType(
                        RuleName="daily",
                        ScheduleExpression="cron(0 5 * * ? *)",
                        Lifecycle=backup.LifecycleResourceType(DeleteAfterDays=35),
                        **rule,
                    ),
                    backup.BackupRuleResourceType(
                        RuleName="weekly",
                        ScheduleExpression="cron(0 6 ? * SUN *)",
                        Lifecycle=backup.LifecycleResourceType(DeleteAfterDays=91),
                        **rule,
                    ),
                ],
            ),
        ),
        "Backup schedule: daily for 35 days, weekly for 13 weeks",
    )
    role = b.add(
        t,
        iam.Role(
            "BackupRole",
            AssumeRolePolicyDocument=PolicyDocument(
                Version="2012-10-17",
                Statement=[
                    Statement(Effect=Allow, Principal=Principal("Service", "backup.amazonaws.com"), Action=[AssumeRole])
                ],
            ),
            # Taking backups only. The restore policy (AWSBackupServiceRolePolicyForRestores) lets whoever can
            # pass this role create and overwrite databases and file systems anywhere in the account; a
            # restore passes a role made for it, at the time.
            ManagedPolicyArns=[BACKUP_POLICY],
        ),
        "Role AWS Backup uses to take backups (not to restore them)",
    )
    resources = []
    if b.config.deployment.database == "rds":
        resources.append(Sub("arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:db:${Database}"))
    if b.config.deployment.database == "task" or b.config.deployment.cache == "task":
        resources.append(GetAtt("FileSystem", "Arn"))
    b.add(
        t,
        backup.BackupSelection(
            "BackupSelection",
            BackupPlanId=Ref(plan),
            BackupSelection=backup.BackupSelectionResourceType(
                SelectionName="data", IamRoleArn=GetAtt(role, "Arn"), Resources=resources
            ),
        ),
        "What the backup plan covers: "
        + " and ".join(
            (["the RDS database"] if b.config.deployment.database == "rds" else [])
            + (["the EFS file system"] if len(resources) > (b.config.deployment.database == "rds") else [])
        ),
    )
