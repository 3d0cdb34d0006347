"""One-off task definitions (migrations, tootctl) and scheduled maintenance.

Upgrades follow Mastodon's zero-downtime order: `migrate-pre` (SKIP_POST_DEPLOYMENT_MIGRATIONS=true) on
the new image before the rollout, `migrate` (all migrations) after it. `tootctl` runs any command the
deploy or the user passes as an override; EventBridge Scheduler runs it for media and preview-card
cleanup, without which the media bucket grows without bound (field notes).
"""

from __future__ import annotations

import json
import shlex

from troposphere import GetAtt, Ref, scheduler, sqs

from mastofargate.stack.context import Build
from mastofargate.stack.network import subnet_ids
from mastofargate.stack.services import JOB_CONTAINER, container, task_definition

MIGRATE = ["bundle", "exec", "rails", "db:migrate"]
JOBS: dict[str, tuple[list[str], dict[str, str], str]] = {
    "migrate-pre": (
        MIGRATE,
        {"SKIP_POST_DEPLOYMENT_MIGRATIONS": "true"},
        "Pre-deployment migrations, run on the new image before the rollout",
    ),
    "migrate": (MIGRATE, {}, "All migrations, including post-deployment ones, run after the rollout"),
    "tootctl": (["tootctl", "--help"], {}, "tootctl and other one-off commands (command given at run time)"),
}


# Printed (to the tootctl job's log group) by a scheduled run that succeeded, followed by the schedule's
# title: `status` reads when each job last succeeded from these lines (ECS forgets stopped tasks in an hour).
SUCCESS_MARKER = "mastofargate-scheduled-job-succeeded"


def scheduled_command(title: str, command: list[str]) -> list[str]:
    """The container command of a scheduled run: the tootctl command, then the success line only if it
    exited 0 (the task's exit code stays tootctl's)."""
    return ["sh", "-c", f"{shlex.join(command)} && echo {SUCCESS_MARKER} {title}"]


def maintenance_commands(b: Build) -> dict[str, tuple[list[str], str]]:
    media = b.config.media
    return {
        "MediaCleanup": (["tootctl", "media", "remove", "--days", str(media.cleanup_days)], media.schedule),
        "PreviewCardCleanup": (
            ["tootctl", "preview_cards", "remove", "--days", str(media.preview_card_days)],
            "cron(30 4 ? * SUN *)",
        ),
    }


DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600  # SQS's longest: two weeks to notice and look


def dead_letter_queue_name(stack_name: str) -> str:
    return f"{stack_name}-schedule-dead-letters"


def add(b: Build) -> None:
    size = b.config.job
    b.add(
        b.app,
        sqs.Queue(
            "ScheduleDeadLetterQueue",
            QueueName=dead_letter_queue_name(b.name),
            MessageRetentionPeriod=DEAD_LETTER_RETENTION_SECONDS,
            # SQS's AWS managed key: its key policy lets any principal of the account use it through SQS, so the
            # scheduler role needs no KMS permission to drop a message here.
            KmsMasterKeyId="alias/aws/sqs",
        ),
        "Scheduled runs (maintenance, backups) EventBridge Scheduler could not start (alarmed; shown by status)",
    )
    for name, (command, env, description) in JOBS.items():
        title = "".join(p.capitalize() for p in name.split("-")) + "TaskDefinition"
        task_definition(
            b,
            title,
            f"{b.name}-{name}",
            size,
            [container(b, size, job=name, command=command, extra_env=env)],
            "MastodonTaskRole",
            description,
        )
    strategy = "FARGATE_SPOT" if b.config.deployment.spot else "FARGATE"
    for title, (command, expression) in maintenance_commands(b).items():
        b.add(
            b.app,
            scheduler.Schedule(
                f"{title}Schedule",
                Name=f"{b.name}-{title}",
                Description=" ".join(command),
                ScheduleExpression=expression,
                ScheduleExpressionTimezone="UTC",
                FlexibleTimeWindow=scheduler.FlexibleTimeWindow(Mode="FLEXIBLE", MaximumWindowInMinutes=30),
                State="ENABLED",
                Target=run_task_target(
                    b,
                    "TootctlTaskDefinition",
                    strategy,
                    json.dumps(
                        {"containerOverrides": [{"name": JOB_CONTAINER, "command": scheduled_command(title, command)}]},
                        sort_keys=True,
                    ),
                ),
            ),
            f"Scheduled maintenance: {' '.join(command)} ({expression} UTC)",
        )


def run_task_target(b: Build, task_definition: str, strategy: str, payload: object) -> scheduler.Target:
    """What a schedule starts: one task of `task_definition` (a logical id) on `strategy` with `payload` as
    its overrides, in the task security group; two retries, then the shared dead-letter queue (and its alarm)."""
    return scheduler.Target(
        Arn=GetAtt("Cluster", "Arn"),
        RoleArn=GetAtt("SchedulerRole", "Arn"),
        Input=payload,
        RetryPolicy=scheduler.RetryPolicy(MaximumRetryAttempts=2, MaximumEventAgeInSeconds=3600),
        DeadLetterConfig=scheduler.DeadLetterConfig(Arn=GetAtt("ScheduleDeadLetterQueue", "Arn")),
        EcsParameters=scheduler.EcsParameters(
            TaskDefinitionArn=Ref(task_definition),
            TaskCount=1,
            PlatformVersion="LATEST",
            CapacityProviderStrategy=[scheduler.CapacityProviderStrategyItem(CapacityProvider=strategy, Weight=1)],
            EnableExecuteCommand=False,
            PropagateTags="TASK_DEFINITION",
            NetworkConfiguration=scheduler.NetworkConfiguration(
                AwsvpcConfiguration=scheduler.AwsVpcConfiguration(
                    AssignPublicIp="ENABLED",
                    Subnets=subnet_ids(b),
                    SecurityGroups=[b.imported("TaskSecurityGroupId")],
                )
            ),
        ),
    )
