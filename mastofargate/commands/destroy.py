"""`mastofargate destroy`: delete the services and everything that holds no data; the data only on request.

Without --delete-data the data stack (network, database, file system, media bucket, image repositories)
and the secrets stay, so a later `deploy` brings the same server back. With --delete-data, confirmed by
typing the domain: the database's deletion protection and the stack's termination protection are
switched off, the data stack is deleted (RDS and ElastiCache leave final snapshots by their deletion
policies; the media bucket, EFS, KMS key and backup vault are retained), and the secrets are scheduled
for deletion with a recovery window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from mastofargate.commands.deploy import DryRun, Timeout, Yes
from mastofargate.commands.options import DEFAULT_CONFIG, ConfigOption

if TYPE_CHECKING:
    from mastofargate.deploy.target import Target

SECRET_RECOVERY_DAYS = 30
# What the data stack keeps after its own deletion (DeletionPolicy Retain), by output or resource type.
RETAINED = {
    "MediaBucketName": "media bucket (uploads and assets)",
    "FileSystemId": "EFS file system (Postgres/Redis task data)",
    "KeyArn": "KMS key (scheduled deletion is up to you)",
}


def destroy(
    config: ConfigOption = DEFAULT_CONFIG,
    delete_data: Annotated[
        bool, typer.Option("--delete-data", help="Also delete the database, network and secrets (asks for the domain).")
    ] = False,
    confirm_domain: Annotated[
        str | None,
        typer.Option("--confirm-domain", help="The server's domain, to confirm --delete-data without a terminal."),
    ] = None,
    yes: Yes = False,
    dry_run: DryRun = False,
    timeout: Timeout = 3600.0,
) -> None:
    """Delete the app stack (services, load balancer, tasks, logs). Keeps the database, file system, media
    bucket and secrets unless --delete-data (confirmed by typing the domain)."""
    from mastofargate.config import load_config
    from mastofargate.deploy import flow, stacks
    from mastofargate.deploy.target import Target

    cfg = load_config(config)
    target = Target(cfg)
    flow.require_confirmation_possible(flow.Options(yes=yes, dry_run=dry_run), verb="destroy")
    if delete_data and not dry_run:
        _confirm_domain(cfg.server.domain, confirm_domain)
    app = stacks.describe(target, target.app_stack)
    data = stacks.describe(target, target.data_stack)
    _show_plan(target, app, data, delete_data)
    if dry_run:
        flow.out("Dry run: nothing was changed.")
        return
    if not stacks.exists(app) and not (delete_data and data is not None):
        flow.out("Nothing to delete.")
        return
    if not yes and not typer.confirm("Delete this?", default=False):
        from mastofargate.errors import MastofargateError

        raise MastofargateError("Cancelled; nothing was deleted.")
    reporter = flow.Reporter()
    if app is not None:
        reporter.step(f"Deleting {target.app_stack}")
        stacks.delete_stack(
            target, target.app_stack, timeout=timeout, on_event=lambda e: reporter.event(e, target.app_stack)
        )
    if delete_data:
        _delete_data(target, data, timeout, reporter)
    else:
        flow.out(
            f"Kept {target.data_stack} (database, file system, media bucket, network) and the secrets; "
            "'mastofargate deploy' brings the server back."
        )


def _confirm_domain(domain: str, given: str | None) -> None:
    from mastofargate.errors import UsageError
    from mastofargate.ui import stdin_is_tty

    if given is None:
        if not stdin_is_tty():
            raise UsageError(
                "--delete-data needs the domain typed to confirm; without a terminal pass --confirm-domain DOMAIN. "
                "Nothing was deleted."
            )
        given = typer.prompt(f"This deletes the database and every post of {domain}. Type the domain to confirm")
    if given.strip().lower() != domain:
        raise UsageError(f"{given!r} is not {domain}; nothing was deleted.")


def _show_plan(target: Target, app: dict[str, Any] | None, data: dict[str, Any] | None, delete_data: bool) -> None:
    from mastofargate.deploy import stacks
    from mastofargate.deploy.flow import out

    if stacks.exists(app):
        out(f"- {target.app_stack}: services, load balancer, one-off tasks, schedules, logs and alarms")
    else:
        out(f"  {target.app_stack}: not deployed")
    outputs = target.stack_outputs(target.data_stack) if data is not None else {}
    if not delete_data:
        out(f"  kept: {target.data_stack} (database, file system, media bucket, network, image repositories)")
        out(f"  kept: secrets {', '.join(target.secret_names.values())}")
        return
    if data is not None:
        out(f"- {target.data_stack}: network, database, cache, image repositories (their images), deploy bucket")
        if target.config.deployment.database == "rds":
            out("  the RDS database leaves a final snapshot (DeletionPolicy Snapshot): restore from it if needed")
        if target.config.deployment.cache == "elasticache":
            out("  the ElastiCache cache leaves a final snapshot (DeletionPolicy Snapshot)")
        for key, what in RETAINED.items():
            if outputs.get(key):
                out(f"  retained (not deleted): {what}: {outputs[key]}")
        out(f"  retained (not deleted): backup vault {target.name}-backups with its recovery points")
    out(
        f"- secrets {', '.join(target.secret_names.values())}: scheduled for deletion, recoverable for "
        f"{SECRET_RECOVERY_DAYS} days"
    )


def _delete_data(target: Target, data: dict[str, Any] | None, timeout: float, reporter: Any) -> None:
    from mastofargate import aws
    from mastofargate.deploy import bootstrap, stacks
    from mastofargate.deploy.flow import history_parameter, out

    if data is not None:
        outputs = target.stack_outputs(target.data_stack, refresh=True)
        if outputs.get("DatabaseId"):
            with aws.aws_errors("switching off the database's deletion protection"):
                target.client("rds").modify_db_instance(
                    DBInstanceIdentifier=outputs["DatabaseId"], DeletionProtection=False, ApplyImmediately=True
                )
        _empty_repositories(target)
        if outputs.get("DeployBucketName"):
            _empty_bucket(target, outputs["DeployBucketName"])
        stacks.set_termination_protection(target, target.data_stack, False)
        reporter.step(f"Deleting {target.data_stack}")
        stacks.delete_stack(
            target, target.data_stack, timeout=timeout, on_event=lambda e: reporter.event(e, target.data_stack)
        )
        for key, what in RETAINED.items():
            if outputs.get(key):
                out(f"  still there (retained): {what}: {outputs[key]}")
        out(f"  still there (retained): backup vault {target.name}-backups with its recovery points")
    deleted = bootstrap.delete_secrets(target, SECRET_RECOVERY_DAYS)
    for name in deleted:
        out(
            f"  secret {name}: deleted in {SECRET_RECOVERY_DAYS} days "
            f"(undo: aws secretsmanager restore-secret --secret-id {name})"
        )
    from botocore.exceptions import ClientError

    with aws.aws_errors("deleting the deploy history"):
        try:
            target.client("ssm").delete_parameter(Name=history_parameter(target))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ParameterNotFound":
                raise


def _empty_repositories(target: Target) -> None:
    """CloudFormation cannot delete an ECR repository that holds images; the images are rebuildable."""
    from botocore.exceptions import ClientError

    from mastofargate import aws
    from mastofargate.stack.registry import repository_names

    ecr = target.client("ecr")
    for repo in repository_names(target.name).values():
        with aws.aws_errors(f"deleting the images in {repo}"):
            try:
                ids = [
                    i
                    for page in ecr.get_paginator("list_images").paginate(repositoryName=repo)
                    for i in page.get("imageIds", [])
                ]
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") == "RepositoryNotFoundException":
                    continue
                raise
            for i in range(0, len(ids), 100):
                ecr.batch_delete_image(repositoryName=repo, imageIds=ids[i : i + 100])


def _empty_bucket(target: Target, bucket: str) -> None:
    """The deploy bucket (templates only) must be empty, every version, before CloudFormation deletes it."""
    from mastofargate import aws

    s3 = target.client("s3")
    with aws.aws_errors(f"emptying s3://{bucket}"):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            objects = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if objects:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})


def register(app: typer.Typer) -> None:
    app.command("destroy")(destroy)
