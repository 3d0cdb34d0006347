"""Names derived from the config's `aws.name`, stated once for the stack builders and the deploy alike."""

from __future__ import annotations


def data_stack(name: str) -> str:
    """The long-lived stack holding data, network and images."""
    return f"{name}-data"


def app_stack(name: str) -> str:
    """The replaceable stack holding the services."""
    return f"{name}-app"


def cluster(name: str) -> str:
    return name


def export(name: str, key: str) -> str:
    """Export name of a data-stack output read by the app stack."""
    return f"{data_stack(name)}:{key}"


def log_group(name: str, service_or_job: str) -> str:
    return f"/mastofargate/{name}/{service_or_job}"


def ci_stack(name: str) -> str:
    """The small stack holding the CI roles (and GitHub's OIDC provider unless the account has one)."""
    return f"{name}-ci"


CI_ROLES = ("plan", "images", "deploy")


def ci_role(name: str, kind: str) -> str:
    """IAM role a CI workflow assumes: plan (read-only), images (ECR push) or deploy."""
    return f"{name}-ci-{kind}"


def db_instance(name: str) -> str:
    """The RDS instance identifier (fixed, so its log group can exist before RDS writes to it)."""
    return f"{name}-postgres"


def backup_vault(name: str) -> str:
    """The AWS Backup vault of the data stack."""
    return f"{name}-backups"
