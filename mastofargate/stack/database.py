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
from mastofargate.stack.secrets import flat_key, secret_name

DB_NAME = "mastodon_production"
DB_USER = "mastodon"  # the RDS master user / the Postgres task's superuser: the database setup task only
DB_OWNER = "mastodon_owner"  # what Mastodon logs in as: the owner of its database and nothing more (deploy/dbowner.py)
POSTGRES_UID = 999  # uid of `postgres` in the Debian-based official image
REDIS_UID = 999  # uid of `redis` in the Debian-based official image


def add(b: Build) -> None:
    cfg = b.config
    if cfg.deployment.database == "rds":
        _rds(b)
    if needs_file_system(b):
        _efs(b)
    _backup(b)


def needs_file_system(b: Build) -> bool:
    """EFS holds a Postgres or Redis task's data, and the direct edge's certificates."""
    d = b.config.deployment
    return d.database == "task" or d.cache == "task" or d.edge == "direct"


def _password_ref(b: Build, which: str) -> str:
    """A dynamic reference: CloudFormation resolves it at deploy time; the template holds no secret.

    Servers deployed before the one secret reference `mastofargate/{name}/database:SecretString:password`;
    the deploy's migration copies the value verbatim and verifies it before this template is applied. The
    changed reference string makes CloudFormation resolve it and set MasterUserPassword (AWS: a changed
    dynamic reference is what triggers the re-read); per the RDS API, changing MasterUserPassword "doesn't
    result in an outage" and MasterUserPassword is not a createOnlyProperty of AWS::RDS::DBInstance (the
    schema cfn-lint ships), so the instance is modified in place, to the same password."""
    return "{{resolve:secretsmanager:" + secret_name(b.name) + ":SecretString:" + flat_key(which, "password") + "}}"


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
        "Encrypted file system holding "
        + " and ".join(
            w
            for w, on in (
                ("the Postgres/Redis task data", "task" in (b.config.deployment.database, b.config.deployment.cache)),
                ("the edge's TLS certificates", b.config.deployment.edge == "direct"),
            )
            if on
        ),
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
    if b.config.deployment.edge == "direct":
        _caddy_access_point(b, fs)


def _caddy_access_point(b: Build, fs: efs.FileSystem) -> None:
    """Caddy's certificates, private keys and ACME account: a directory of their own (mode 0700), so neither
    Postgres nor Redis can read the site's private key, and it survives every task (Let's Encrypt limits)."""
    from mastofargate.stack.direct_edge import ACCESS_POINT, CADDY_UID

    ap = b.add(
        b.data,
        efs.AccessPoint(
            ACCESS_POINT,
            FileSystemId=Ref(fs),
            PosixUser=efs.PosixUser(Uid=str(CADDY_UID), Gid=str(CADDY_UID)),
            RootDirectory=efs.RootDirectory(
                Path="/caddy",
                CreationInfo=efs.CreationInfo(OwnerUid=str(CADDY_UID), OwnerGid=str(CADDY_UID), Permissions="0700"),
            ),
        ),
        "The edge's private directory on the file system: TLS certificates and the ACME account",
    )
    ap.DeletionPolicy = "Retain"  # a lost certificate costs a re-issue against Let's Encrypt's weekly limit
    ap.UpdateReplacePolicy = "Retain"
    b.export(f"{ACCESS_POINT}Id", Ref(ap), "EFS access point for Caddy's certificates")
    b.export(f"{ACCESS_POINT}Arn", GetAtt(ap, "Arn"), "EFS access point ARN for Caddy's certificates")


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
    """Daily backups kept 35 days, weekly kept 13 weeks, of RDS and of an EFS file system that holds no
    Postgres; the vault stays in every shape (Retain: earlier recovery points live there)."""
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
    resources = []
    if b.config.deployment.database == "rds":
        resources.append(Sub("arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:db:${Database}"))
    # Only what is safe to copy file by file: AWS Backup copies an EFS file system file by file while it
    # changes, which a live Postgres data directory does not survive (it may not start when restored), and
    # EFS backups cannot leave one directory out. So the file system is covered only while no Postgres lives
    # on it (the Redis task's append-only file); the Postgres task is backed up by pgBackRest and the
    # nightly dump instead (stack/backup_tasks.py).
    if b.config.deployment.database != "task" and b.config.deployment.cache == "task":
        resources.append(GetAtt("FileSystem", "Arn"))
    if not resources:
        return
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
