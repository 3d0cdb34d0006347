"""The backup task (`{name}-backup`), its schedules and its alarms (issue 11, DESIGN invariant 6).

One task definition runs everything pgtask.py does (mastofargate/data/backup/pgtask.py, in the backup image):
the nightly `pg_dump -Fc` into the backup bucket, the monthly restore drill into a throw-away cluster inside
the task, and the one-off `backup`, `backup verify` and restore checks the verbs start (deploy/backup_jobs.py
builds every command). It connects as the master user with libpq's own variables (PG*, the password from
the database secret) over TLS, so it works the same against RDS and against the Postgres task.

Schedules (EventBridge Scheduler, UTC, the same role and dead-letter queue as the maintenance schedules):
  DUMP_SCHEDULE   nightly dump, 02:15 (+ up to 30 min): before RDS's backup window (03:00) and AWS Backup
                  (05:00), away from the Sunday maintenance (04:00-04:30); publishes BackupSucceeded
  DRILL_SCHEDULE  restore drill on the 1st of each month, 06:30: the newest dump (that night's) restored
                  and checked; publishes DrillSucceeded and BackupAgeSeconds
On-demand Fargate, not Spot: a backup interrupted by Spot is a missing backup, and these runs are minutes.
With `database = "task"` pgBackRest's base backups are NOT scheduled here: pgBackRest reads the data
directory and talks to Postgres over its Unix socket, which only the Postgres task has (a second task
mounting the data directory would break "one Postgres owns it", and pgBackRest's remote mode needs its
own TLS server in the Postgres task). The Postgres task's entrypoint takes them itself, weekly
(stack/pgbackrest.py, postgres-entrypoint.sh).

Alarms (to the alarm topic, so they mail the admin):
  BackupMissing  no BackupSucceeded = 1 for BACKUP_ALARM_HOURS hours (hourly periods, missing = breaching):
                 the nightly dump failed twice in a row or stopped running
  DrillFailed    a drill (or `backup verify`) put DrillSucceeded = 0; it stays in alarm until one succeeds
  WalArchiveFailing  (database = "task") the Postgres task's keeper reported WAL archiving failing, or stopped
                 reporting, for ARCHIVE_ALARM_MINUTES: point-in-time recovery is falling behind
"""

from __future__ import annotations

import json

from troposphere import GetAtt, Join, Output, Ref, Sub, cloudwatch, ecs, scheduler

from mastofargate.stack.backup_commands import drill_command, dump_command
from mastofargate.stack.backups import METRIC_NAMESPACE
from mastofargate.stack.context import Build
from mastofargate.stack.database import DB_NAME, DB_USER, POSTGRES_UID
from mastofargate.stack.environment import data_host
from mastofargate.stack.jobs import run_task_target
from mastofargate.stack.network import POSTGRES_PORT
from mastofargate.stack.observability import add_log_group
from mastofargate.stack.pgbackrest import PGTASK_PATH
from mastofargate.stack.secrets import SecretRef

CONTAINER = "backup"
TITLE = "BackupTaskDefinition"
# The task's only writable path (the root file system is read-only): a bind mount on the task's ephemeral
# storage, owned by the postgres user in the image (its Dockerfile declares it a VOLUME, which is how Fargate
# carries the image's ownership over to the mount). TMPDIR points here: downloaded dumps, the drill's cluster.
SCRATCH = "/scratch"
DUMP_SCHEDULE = "cron(15 2 * * ? *)"
DRILL_SCHEDULE = "cron(30 6 1 * ? *)"
SCHEDULE_WINDOW_MINUTES = 30
# A nightly dump, 24 h apart, may start up to 30 min late and take a while: 26 h without one is a miss.
BACKUP_ALARM_HOURS = 26
ARCHIVE_ALARM_MINUTES = 30  # two 15-minute periods; the keeper reports every 10 minutes
# The default command (a run without an override): the checks alone, read-only, on the live database.
DEFAULT_COMMAND = ["python3", PGTASK_PATH, "check"]


def family(name: str) -> str:
    return f"{name}-backup"


def image(b: Build) -> Join:
    return Join("", [b.imported("BackupRepositoryUri"), ":", b.app_param("BackupImageTag")])


def database_host(b: Build) -> object:
    # RDS, or the Cloud Map name of the task holding Postgres (its own task, or the one task)
    return b.imported("DatabaseHost") if b.config.deployment.database == "rds" else data_host(b, "postgres", None)


def environment(b: Build) -> dict[str, object]:
    """libpq's variables for the master user (TLS required: RDS forces it, the Postgres task allows only
    hostssl), the bucket, and the scratch directory."""
    return {
        "PGHOST": database_host(b),
        "PGPORT": str(POSTGRES_PORT),
        "PGDATABASE": DB_NAME,
        "PGUSER": DB_USER,
        "PGSSLMODE": "require",
        "BACKUP_BUCKET": b.imported("BackupBucketName"),
        "AWS_DEFAULT_REGION": Ref("AWS::Region"),  # Debian's boto3 1.26 reads this one
        "TMPDIR": SCRATCH,
        "HOME": SCRATCH,
    }


def add(b: Build) -> None:
    size = b.config.profile.backup
    log = add_log_group(b, "backup")
    secret = SecretRef("PGPASSWORD", "database", "password")
    container = ecs.ContainerDefinition(
        Name=CONTAINER,
        Image=image(b),
        Essential=True,
        Memory=size.memory,  # the only container: all of the task
        MemoryReservation=size.memory // 2,
        Command=DEFAULT_COMMAND,
        User=f"{POSTGRES_UID}:{POSTGRES_UID}",  # the drill's throw-away Postgres refuses to run as root
        ReadonlyRootFilesystem=True,
        MountPoints=[ecs.MountPoint(ContainerPath=SCRATCH, SourceVolume="scratch", ReadOnly=False)],
        Environment=[ecs.Environment(Name=k, Value=v) for k, v in sorted(environment(b).items())],
        Secrets=[ecs.Secret(Name=secret.env, ValueFrom=secret.value_from(b))],
        LogConfiguration=ecs.LogConfiguration(
            LogDriver="awslogs",
            Options={
                "awslogs-group": Ref(log),
                "awslogs-region": Ref("AWS::Region"),
                "awslogs-stream-prefix": "backup",
            },
        ),
        LinuxParameters=ecs.LinuxParameters(InitProcessEnabled=True),
        StopTimeout=120,  # a stopped drill shuts its scratch Postgres down
    )
    td = b.add(
        b.app,
        ecs.TaskDefinition(
            TITLE,
            Family=family(b.name),
            Cpu=str(size.cpu),
            Memory=str(size.memory),
            EphemeralStorage=ecs.EphemeralStorage(SizeInGiB=size.ephemeral_gib),
            NetworkMode="awsvpc",
            RequiresCompatibilities=["FARGATE"],
            ExecutionRoleArn=GetAtt("ExecutionRole", "Arn"),
            TaskRoleArn=GetAtt("BackupTaskRole", "Arn"),
            ContainerDefinitions=[container],
            Volumes=[ecs.Volume(Name="scratch")],
            RuntimePlatform=ecs.RuntimePlatform(
                OperatingSystemFamily="LINUX",
                CpuArchitecture="ARM64" if b.config.deployment.arch == "arm64" else "X86_64",
            ),
        ),
        f"Backup task: dumps, restore drills, verify ({size.cpu / 1024:g} vCPU, {size.memory} MiB, "
        f"{size.ephemeral_gib} GiB scratch)",
    )
    b.app.add_output(
        Output(
            "BackupTaskDefinition", Description="ARN of the backup task definition (dump, verify, drill)", Value=Ref(td)
        )
    )
    bucket = "${Bucket}"
    _schedule(b, "BackupDump", dump_command(bucket, "nightly", server=b.name), DUMP_SCHEDULE, "Nightly database dump")
    _schedule(b, "RestoreDrill", drill_command(bucket, b.name), DRILL_SCHEDULE, "Monthly restore drill")
    _alarms(b)


def _schedule(b: Build, title: str, command: list[str], expression: str, what: str) -> None:
    payload = json.dumps({"containerOverrides": [{"name": CONTAINER, "command": command}]}, sort_keys=True)
    b.add(
        b.app,
        scheduler.Schedule(
            f"{title}Schedule",
            Name=f"{b.name}-{title}",
            Description=what,
            ScheduleExpression=expression,
            ScheduleExpressionTimezone="UTC",
            FlexibleTimeWindow=scheduler.FlexibleTimeWindow(
                Mode="FLEXIBLE", MaximumWindowInMinutes=SCHEDULE_WINDOW_MINUTES
            ),
            State="ENABLED",
            Target=run_task_target(b, TITLE, "FARGATE", Sub(payload, Bucket=b.imported("BackupBucketName"))),
        ),
        f"{what} ({expression} UTC, within {SCHEDULE_WINDOW_MINUTES} min)",
    )


def _alarms(b: Build) -> None:
    dims = [cloudwatch.MetricDimension(Name="Server", Value=b.name)]
    missing = cloudwatch.Alarm(
        "BackupMissingAlarm",
        AlarmName=f"{b.name}-BackupMissing",
        AlarmDescription=f"No database dump has succeeded for {BACKUP_ALARM_HOURS} hours",
        Namespace=METRIC_NAMESPACE,
        MetricName="BackupSucceeded",
        Dimensions=dims,
        Statistic="Maximum",
        Period=3600,
        EvaluationPeriods=BACKUP_ALARM_HOURS,
        DatapointsToAlarm=BACKUP_ALARM_HOURS,
        Threshold=1,
        ComparisonOperator="LessThanThreshold",
        TreatMissingData="breaching",
        AlarmActions=[Ref("AlarmTopic")],
        OKActions=[Ref("AlarmTopic")],
    )
    b.add(b.app, missing, f"Alarm: no database dump has succeeded for {BACKUP_ALARM_HOURS} hours")
    drill = cloudwatch.Alarm(
        "DrillFailedAlarm",
        AlarmName=f"{b.name}-DrillFailed",
        AlarmDescription="The restore drill failed: the newest backup did not restore and verify",
        Namespace=METRIC_NAMESPACE,
        MetricName="DrillSucceeded",
        Dimensions=dims,
        Statistic="Minimum",
        Period=3600,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="LessThanThreshold",
        # the drill runs monthly: between drills the last result stands
        TreatMissingData="ignore",
        AlarmActions=[Ref("AlarmTopic")],
        OKActions=[Ref("AlarmTopic")],
    )
    b.add(b.app, drill, "Alarm: the restore drill failed (stays in alarm until a drill succeeds)")
    if b.config.deployment.database != "task":
        return
    archive = cloudwatch.Alarm(
        "WalArchiveFailingAlarm",
        AlarmName=f"{b.name}-WalArchiveFailing",
        AlarmDescription=f"WAL archiving to S3 failed, or the Postgres task stopped reporting, for "
        f"{ARCHIVE_ALARM_MINUTES} minutes",
        Namespace=METRIC_NAMESPACE,
        MetricName="WalArchiveFailing",
        Dimensions=dims,
        Statistic="Maximum",
        Period=ARCHIVE_ALARM_MINUTES * 60 // 2,
        EvaluationPeriods=2,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="breaching",  # a silent keeper is no better than a failing archive
        AlarmActions=[Ref("AlarmTopic")],
        OKActions=[Ref("AlarmTopic")],
    )
    b.add(b.app, archive, f"Alarm: WAL archiving to S3 failing for {ARCHIVE_ALARM_MINUTES} minutes")
