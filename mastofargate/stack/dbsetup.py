"""The database setup task: `psql` as the master user, which hands Mastodon's database to its owner role.

Mastodon logs in as `mastodon_owner` (deploy/dbowner.py), a plain LOGIN role that owns its database and
nothing else, not as the RDS master user or the Postgres task's superuser. A one-off task of the official
Postgres image creates that role and hands it the database: the deploy runs it before Mastodon first logs
in as the owner (deploy/dbsetup.py), passing the SQL (which carries a SCRAM verifier, never the password)
as the `OWNER_SQL` environment override.

It lives in the DATA stack, not beside the other one-off tasks in the app stack, because of ordering: on
the first upgrade of an existing server the app change set itself switches every Mastodon task to the owner
role, so the setup must be runnable before that change set executes, and the data stack is always applied
first. It also belongs with the database: its image follows the Postgres major version, not a release.

Minimal on purpose: its own execution role may read only the server's secret (ECS hands the container
only its `database_password`) and write only its own log group; it has no task role (psql calls no AWS
API) and no ECS Exec. The master password reaches the container as PGPASSWORD through the task
definition's `secrets`; the command holds no secret and the SQL reaches psql on stdin, not in its arguments.
"""

from __future__ import annotations

from awacs import logs as logs_actions
from awacs import secretsmanager as sm_actions
from awacs.aws import Allow, Statement
from troposphere import GetAtt, Join, Ref, Sub, ecs, logs

from mastofargate import names
from mastofargate.stack.context import Build
from mastofargate.stack.database import DB_NAME, DB_USER
from mastofargate.stack.iam import least_privilege_role
from mastofargate.stack.network import POSTGRES_PORT
from mastofargate.stack.secrets import flat_key, secret_name

JOB = "dbsetup"
CONTAINER = "dbsetup"
SQL_ENV = "OWNER_SQL"
CPU = 256
MEMORY = 512
# Waits up to a minute for Postgres (a Postgres task may still be starting on a first install), then feeds the
# SQL to psql on stdin: in an argument it would show in the process list. ON_ERROR_STOP makes psql exit 3 on
# the first error, so the script's transaction is never committed half-way.
SCRIPT = f"""\
set -eu -o pipefail
: "${{{SQL_ENV}:?{SQL_ENV} is empty: this task runs only through 'mastofargate deploy'}}"
for _ in $(seq 30); do pg_isready -q && break; sleep 2; done
printf '%s\\n' "${SQL_ENV}" | psql -X -q -v ON_ERROR_STOP=1 -f -
"""
COMMAND = ["bash", "-c", SCRIPT, JOB]


def family(name: str) -> str:
    return f"{name}-{JOB}"


def role_name(name: str) -> str:
    """Its execution role's name (<= 64 characters: names are <= 20), under the data stack's prefix."""
    return f"{names.data_stack(name)}-{JOB}-execution"


def database_host(b: Build) -> object:
    if b.config.deployment.database == "rds":
        return GetAtt("Database", "Endpoint.Address")
    from mastofargate.stack.environment import data_host  # the task holding Postgres (its own, or the one task)

    return data_host(b, "postgres", None)


def environment(b: Build) -> dict[str, object]:
    """libpq's own variables: the master user, TLS required (RDS forces it; the Postgres task offers only it)."""
    return {
        "PGHOST": database_host(b),
        "PGPORT": str(POSTGRES_PORT),
        "PGDATABASE": DB_NAME,
        "PGUSER": DB_USER,
        "PGSSLMODE": "require",
        "PGCONNECT_TIMEOUT": "10",
        "PGAPPNAME": f"mastofargate-{JOB}",
    }


def add(b: Build) -> None:
    # the official Postgres image (psql), not the backup image: that one lives in the app stack's release
    from mastofargate.stack.services import POSTGRES_IMAGE  # services imports the app-side builders

    t = b.data
    secret_arn = b.data_param("SecretArn")
    log_group = b.add(
        t,
        logs.LogGroup(
            "DatabaseSetupLogGroup",
            LogGroupName=names.log_group(b.name, JOB),
            RetentionInDays=b.config.logs.retention_days,
            KmsKeyId=GetAtt("EncryptionKey", "Arn"),
        ),
        f"Logs of the database setup task, kept {b.config.logs.retention_days} days",
    )
    arn = "arn:${AWS::Partition}:%s:${AWS::Region}:${AWS::AccountId}:%s"
    role = least_privilege_role(
        b,
        "DatabaseSetupExecutionRole",
        "ecs-tasks.amazonaws.com",
        "Lets ECS start the database setup task: the server's secret (of which the task gets only the master "
        "password) and the task's log group only",
        [
            Statement(
                Sid="WriteItsLog",
                Effect=Allow,
                Action=[logs_actions.CreateLogStream, logs_actions.PutLogEvents],
                Resource=[Sub(arn % ("logs", f"log-group:{names.log_group(b.name, JOB)}:*"))],
            ),
            Statement(
                Sid="ReadTheServerSecret",
                Effect=Allow,
                Action=[sm_actions.GetSecretValue],
                Resource=[Sub(arn % ("secretsmanager", f"secret:{secret_name(b.name)}-??????"))],
            ),
        ],
        template=t,
        RoleName=role_name(b.name),  # a fixed name, so the CI deploy role may pass exactly this one
    )
    container = ecs.ContainerDefinition(
        Name=CONTAINER,
        Image=POSTGRES_IMAGE.format(major=b.config.rds.postgres_version.split(".")[0]),
        Essential=True,
        Memory=MEMORY,  # the whole task, as a hard limit and reservation like every other container's
        MemoryReservation=MEMORY,
        Command=COMMAND,
        Environment=[ecs.Environment(Name=k, Value=v) for k, v in sorted(environment(b).items())],
        Secrets=[
            ecs.Secret(Name="PGPASSWORD", ValueFrom=Join("", [secret_arn, f":{flat_key('database', 'password')}::"]))
        ],
        LogConfiguration=ecs.LogConfiguration(
            LogDriver="awslogs",
            Options={
                "awslogs-group": Ref(log_group),
                "awslogs-region": Ref("AWS::Region"),
                "awslogs-stream-prefix": JOB,
            },
        ),
    )
    b.add(
        t,
        ecs.TaskDefinition(
            "DatabaseSetupTaskDefinition",
            Family=family(b.name),
            Cpu=str(CPU),
            Memory=str(MEMORY),
            NetworkMode="awsvpc",
            RequiresCompatibilities=["FARGATE"],
            ExecutionRoleArn=GetAtt(role, "Arn"),
            ContainerDefinitions=[container],
            # The official image is multi-arch; one architecture keeps the data stack the same for every arch.
            RuntimePlatform=ecs.RuntimePlatform(OperatingSystemFamily="LINUX", CpuArchitecture="X86_64"),
        ),
        "One-off task run by the deploy as the master user: creates Mastodon's owner role and hands it the "
        "database (psql, the SQL passed at run time)",
    )
