"""Deploy step 4 and 6: one-off tasks (database preparation, migrations, tootctl) and the Owner account.

Migrations run on on-demand Fargate (ecs.run_one_off), their log lines streamed as they come; a failure
returns the task's stopped reason, exit code and last log lines for the error message.
"""

from __future__ import annotations

import re

from mastofargate import validate
from mastofargate.deploy import ecs
from mastofargate.deploy.context import Run
from mastofargate.deploy.ecs import TaskResult
from mastofargate.errors import EXIT_FAILED, MastofargateError

PREPARE = ["bundle", "exec", "rails", "db:prepare"]
JOB_COMMANDS = {
    "migrate-pre": "pre-deployment migrations: SKIP_POST_DEPLOYMENT_MIGRATIONS=true rails db:migrate",
    "migrate": "post-deployment migrations: rails db:migrate",
}
LOG_LINES_SHOWN = 15
# tootctl prints the generated password as "New password: ..." on stdout, which the awslogs driver would keep
# in the job's log group and a CI log would show. The line is dropped inside the container, before it reaches
# any log; pipefail keeps tootctl's own exit status. The Owner sets a password through the reset mail.
CREATE_OWNER = (
    'tootctl accounts create "$1" --email "$2" --confirmed --role Owner | grep --line-buffered -v "^New password:"'
)


def run_job(
    run: Run,
    job: str,
    command: list[str] | None,
    *,
    timeout: float,
    image: str | None = None,
    show_lines: bool = True,
    describe: str | None = None,
    environment: dict[str, str] | None = None,
) -> TaskResult:
    """Run the one-off task `{name}-{job}` (its command overridden by `command` unless None, `environment`
    added to its container's), its log lines shown as they come unless show_lines is False."""
    family = f"{run.target.name}-{job}"
    what = describe or (" ".join(command) if command else JOB_COMMANDS.get(job, "its own command"))
    run.out.step(f"Running {job} ({what})" + (f" on {image.rsplit('/', 1)[-1]}" if image else ""))
    pending = f"the one-off task {family} may still run on ECS; follow it with 'mastofargate logs {job}'"
    with run.pending(pending):
        return ecs.run_one_off(
            run.target,
            family,
            command,
            image=image,
            environment=environment,
            timeout=timeout,
            poll=run.poller.interval,
            clock=run.poller.clock,
            on_line=(lambda line: run.out.task_line(job, line)) if show_lines else None,
        )


def task_failure(job: str, result: TaskResult, what: str, fix: str) -> MastofargateError:
    lines = result.log_tail[-LOG_LINES_SHOWN:]
    tail = ("\nlast log lines:\n  " + "\n  ".join(lines)) if lines else "\n(no log lines)"
    return MastofargateError(
        what,
        why=f"task {ecs.task_id(result.task_arn)} stopped: {result.stopped_reason or '?'}, exit code "
        f"{result.exit_code}{tail}",
        fix=fix,
        exit_code=EXIT_FAILED,
    )


def admin_username(email: str, requested: str | None) -> str:
    """The Owner's username: the one asked for (checked as Mastodon checks it), else the admin email's
    local part made into one."""
    if requested:
        return validate.admin_username(requested)
    local = email.split("@", 1)[0].lower()
    name = re.sub(r"[^a-z0-9_]", "_", local).strip("_")[:30]
    return name or "admin"


def create_owner(run: Run, requested_username: str | None, *, timeout: float) -> list[str]:
    """The Owner account, confirmed and approved. Its generated password reaches no log and no output
    (see CREATE_OWNER): the Owner sets one with the password-reset mail. Returns notes for the report."""
    target = run.target
    user = admin_username(target.config.server.admin_email, requested_username)
    email = target.config.server.admin_email
    create = ["bash", "-o", "pipefail", "-c", CREATE_OWNER, "create-owner", user, email]
    shown = f"tootctl accounts create {user} --email {email} --confirmed --role Owner, password not shown"
    result = run_job(run, "tootctl", create, timeout=timeout, show_lines=False, describe=shown)
    if not result.ok:
        if any("taken" in ln.lower() for ln in result.log_tail):
            run.out.line(f"  @{user} exists already; left as it is")
            return [f"admin account @{user} already existed"]
        run.out.warn(
            f"the admin account @{user} was not created (exit code {result.exit_code}); create it later with "
            f"'mastofargate tootctl accounts create {user} --email {email} --confirmed --role Owner'"
        )
        return []
    approve = run_job(run, "tootctl", ["tootctl", "accounts", "modify", user, "--approve"], timeout=timeout)
    if not approve.ok:
        run.out.warn(f"approving @{user} failed; run 'mastofargate tootctl accounts modify {user} --approve'")
    host = target.config.server.host
    return [
        f"admin account @{user} <{email}> created (Owner); set its password with the reset mail: "
        f"https://{host}/auth/password/new"
    ]
