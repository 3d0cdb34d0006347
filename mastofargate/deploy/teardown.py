"""`mastofargate destroy`: the app stack always; the data stack, images and secrets only when asked.

What holds user data is kept unless the user asks for it explicitly (DESIGN invariant 3); even then the
database leaves a final snapshot, and the bucket, file system, key and backup vault are retained by their
deletion policies. Secrets are scheduled for deletion with a recovery window, never deleted at once.
"""

from __future__ import annotations

from mastofargate import aws
from mastofargate.aws import NotFound
from mastofargate.deploy import bootstrap, stacks
from mastofargate.deploy.context import Run
from mastofargate.deploy.history import history_parameter
from mastofargate.target import StackState, Target

SECRET_RECOVERY_DAYS = 30
# What the data stack keeps after its own deletion (DeletionPolicy Retain), by output.
RETAINED = {
    "MediaBucketName": "media bucket (uploads and assets)",
    "FileSystemId": "EFS file system (Postgres/Redis task data)",
    "KeyArn": "KMS key (scheduled deletion is up to you)",
}


def show_plan(run: Run, app: StackState | None, data: StackState | None, delete_data: bool) -> None:
    target, line = run.target, run.out.line
    if stacks.exists(app):
        line(f"- {target.app_stack}: services, load balancer, one-off tasks, schedules, logs and alarms")
        if target.config.deployment.edge == "direct":
            line(f"- DNS: the A/AAAA records of {target.config.server.host} the DNS follower kept")
    else:
        line(f"  {target.app_stack}: not deployed")
    outputs = data.outputs if data is not None else {}
    if not delete_data:
        line(f"  kept: {target.data_stack} (database, file system, media bucket, network, image repositories)")
        line(f"  kept: secrets {', '.join(bootstrap.existing_names(target)) or target.secret_name}")
        return
    if data is not None:
        line(f"- {target.data_stack}: network, database, cache, image repositories (their images), deploy bucket")
        if target.config.deployment.database == "rds":
            line("  the RDS database leaves a final snapshot (DeletionPolicy Snapshot): restore from it if needed")
        if target.config.deployment.cache == "elasticache":
            line("  the ElastiCache cache leaves a final snapshot (DeletionPolicy Snapshot)")
        for key, what in RETAINED.items():
            if outputs.get(key):
                line(f"  retained (not deleted): {what}: {outputs[key]}")
        line(f"  retained (not deleted): backup vault {target.name}-backups with its recovery points")
    existing = ", ".join(bootstrap.existing_names(target)) or "(none)"
    line(f"- secrets {existing}: scheduled for deletion, recoverable for {SECRET_RECOVERY_DAYS} days")


def delete_app(run: Run, *, timeout: float) -> None:
    target = run.target
    run.out.step(f"Deleting {target.app_stack}")
    pending = f"CloudFormation is deleting {target.app_stack}; it carries on without mastofargate"
    with run.pending(pending):
        stacks.delete_stack(
            target,
            target.app_stack,
            run.poller,
            timeout=timeout,
            on_event=lambda e: run.out.stack_event(target.app_stack, e.line()),
        )
    if target.config.deployment.edge == "direct":
        from mastofargate.deploy.edgecheck import delete_records

        for record in delete_records(target):
            run.out.line(f"  DNS record {target.config.server.host} {record} deleted (its task is gone)")


def delete_data(run: Run, data: StackState | None, *, timeout: float) -> None:
    target = run.target
    if data is not None:
        outputs = target.stack_outputs(target.data_stack, refresh=True)
        if outputs.get("DatabaseId"):
            with aws.aws_errors("switching off the database's deletion protection"):
                target.client("rds").modify_db_instance(
                    DBInstanceIdentifier=outputs["DatabaseId"], DeletionProtection=False, ApplyImmediately=True
                )
        empty_repositories(target)
        if outputs.get("DeployBucketName"):
            empty_bucket(target, outputs["DeployBucketName"])
        stacks.set_termination_protection(target, target.data_stack, False)
        run.out.step(f"Deleting {target.data_stack}")
        with run.pending(f"CloudFormation is deleting {target.data_stack}; it carries on without mastofargate"):
            stacks.delete_stack(
                target,
                target.data_stack,
                run.poller,
                timeout=timeout,
                on_event=lambda e: run.out.stack_event(target.data_stack, e.line()),
            )
        for key, what in RETAINED.items():
            if outputs.get(key):
                run.out.line(f"  still there (retained): {what}: {outputs[key]}")
        run.out.line(f"  still there (retained): backup vault {target.name}-backups with its recovery points")
    for name in bootstrap.delete_secrets(target, SECRET_RECOVERY_DAYS):
        run.out.line(
            f"  secret {name}: deleted in {SECRET_RECOVERY_DAYS} days "
            f"(undo: aws secretsmanager restore-secret --secret-id {name})"
        )
    try:
        with aws.aws_errors("deleting the deploy history"):
            target.client("ssm").delete_parameter(Name=history_parameter(target))
    except NotFound:
        pass


def empty_repositories(target: Target) -> None:
    """CloudFormation cannot delete an ECR repository that holds images; the images are rebuildable."""
    from mastofargate.stack.registry import repository_names

    ecr = target.client("ecr")
    for repo in repository_names(target.name).values():
        try:
            with aws.aws_errors(f"listing the images in {repo}"):
                ids = [
                    i
                    for page in ecr.get_paginator("list_images").paginate(repositoryName=repo)
                    for i in page.get("imageIds", [])
                ]
        except NotFound:
            continue
        with aws.aws_errors(f"deleting the images in {repo}"):
            for i in range(0, len(ids), 100):
                ecr.batch_delete_image(repositoryName=repo, imageIds=ids[i : i + 100])


def empty_bucket(target: Target, bucket: str) -> None:
    """The deploy bucket (templates only) must be empty, every version, before CloudFormation deletes it."""
    s3 = target.client("s3")
    with aws.aws_errors(f"emptying s3://{bucket}"):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            objects = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if objects:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
