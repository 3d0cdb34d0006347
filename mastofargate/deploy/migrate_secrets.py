"""From three secrets to one: the migration of deployed servers, and pruning the three afterwards.

Servers deployed before issue 12 hold their values in `mastofargate/NAME/app`, `/database` and `/redis`
(`stack.secrets.legacy_secret_names`); new ones in ONE secret, `mastofargate/NAME/server`. The deploy's
secrets step (bootstrap.ensure_secrets) calls `migrate` when the one secret does not exist but legacy ones do:

  1. read every legacy secret (one scheduled for deletion stops everything: its keys may exist nowhere else);
  2. make the one secret's value: every legacy key VERBATIM under its flat name (`stack.secrets.flat_key`),
     plus, generated, only the keys missing everywhere (exactly what a fresh server would get);
  3. create it, read it back, and compare every key and value with what was meant; on any difference or
     failure the new secret is force-deleted (it is a copy nothing references yet) and the error says that
     the running server still uses the legacy secrets, untouched;
  4. only then do the stacks get planned, with the one secret's ARN: the change sets switch the tasks'
     `valueFrom`, and the dynamic references of RDS MasterUserPassword / ElastiCache AuthToken, to the same
     values (stack/database.py and stack/cache.py say what AWS does then).

A deploy NEVER deletes a legacy secret (DESIGN invariant 3). While they exist, every deploy checks that the
one secret still holds each of their generated keys with the same value (`check_consistent`): a key missing
from the one secret is copied from the legacy one, a different value stops the deploy before anything
changes. `prune` (`mastofargate secrets prune-legacy`) schedules them for deletion, with the 30-day recovery
window, and only when the one secret holds every legacy key (generated keys with the same value; derived or
operator keys — a re-issued certificate, a rotated SMTP password — may be newer) and no stack references
them any more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mastofargate import aws
from mastofargate.deploy import bootstrap
from mastofargate.errors import EXIT_USAGE, MastofargateError, UsageError
from mastofargate.stack.secrets import KINDS, flat_key, join, split

if TYPE_CHECKING:
    from mastofargate.target import Target

RECOVERY_DAYS = 30
UNTOUCHED = "the running server still uses the three legacy secrets, which were not changed"


def _legacy_values(target: Target, kinds: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    values: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
    for kind in kinds:
        values[kind] = bootstrap.read_secret(target, target.legacy_secret_names[kind])
    return values


def _meant(target: Target, legacy: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """The one secret's flat value for these legacy values, and the flat keys generated (missing everywhere)."""
    if split(join(legacy)) != legacy:  # e.g. an app key named database_x: the flat layout could not tell
        clash = sorted(k for k in legacy["app"] if flat_key("app", k) != k or k.startswith(("database_", "redis_")))
        raise MastofargateError(
            f"The legacy secret {target.legacy_secret_names['app']} holds keys the one secret cannot keep apart: "
            f"{', '.join(clash)}. Nothing was written; {UNTOUCHED}.",
            why="keys starting with database_ or redis_ are reserved for the database and Redis values",
            fix="remove or rename those keys in the legacy secret (they are not mastofargate's), then deploy again",
            exit_code=EXIT_USAGE,
        )
    generated = {kind: bootstrap.required_values(kind, legacy[kind]) for kind in KINDS}
    meant = {**join(legacy), **join(generated)}
    return meant, sorted(join(generated))


def migrate(target: Target, store: bootstrap.Store, *, dry_run: bool = False) -> tuple[str, str]:
    """(ARN, action): the one secret made from the legacy ones, verified, or (dry run) what would be done."""
    names = ", ".join(target.legacy_secret_names[k] for k in store.legacy)
    try:
        legacy = _legacy_values(target, store.legacy)
    except aws.AccessDenied:
        if dry_run:  # CI's plan role may see the secrets exist, not their values
            return "", f"would be created from {names} (their keys are not readable with these credentials)"
        raise
    meant, generated = _meant(target, legacy)
    extra = f"; generated {', '.join(generated)} (missing everywhere)" if generated else ""
    if dry_run:
        return "", f"would be created from {names}: {len(meant) - len(generated)} keys copied verbatim{extra}"
    name = target.secret_name
    arn = ""
    try:
        arn = bootstrap.create_secret(target, name, meant)
        back = bootstrap.read_secret(target, name)
        wrong = sorted(k for k in set(meant) | set(back) if back.get(k) != meant.get(k) or (k in back) != (k in meant))
        if wrong:
            raise MastofargateError(
                f"The new secret {name} read back differs from what was written, at {', '.join(wrong)}.",
                why="Secrets Manager returned another value than the one just stored (values are not shown)",
            )
    except MastofargateError as e:
        # Only a copy this run created is removed (never one a concurrent deploy made); a create whose answer was
        # lost leaves a copy the next deploy compares with the legacy secrets before using it (check_consistent).
        removed = _remove_unverified(target, name) if arn else f"{name} was not created"
        raise MastofargateError(
            f"Moving the secrets into {name} failed; {UNTOUCHED}. {removed}.",
            why=f"{e.what}{' ' + e.why if e.why else ''}",
            fix="fix the cause, then run 'mastofargate deploy' again (it migrates afresh)",
            exit_code=e.exit_code,
        ) from None
    return arn, f"created from {names}: {len(meant) - len(generated)} keys copied verbatim and verified{extra}"


def _remove_unverified(target: Target, name: str) -> str:
    """Force-delete a just-made, unverified copy (nothing references it), so the next deploy migrates afresh
    instead of trusting it. Says what happened, for the error message."""
    try:
        with bootstrap._quiet_errors(f"deleting the unverified secret {name}"):
            target.client("secretsmanager").delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    except MastofargateError:
        return (
            f"The unverified copy {name} could not be removed: the next deploy compares it with the legacy "
            "secrets again before using it"
        )
    return f"The unverified copy {name} was removed"


@dataclass
class Comparison:
    """The one secret against the legacy ones, by flat key (never values)."""

    missing: list[str] = field(default_factory=list)  # legacy keys the one secret lacks
    differ: list[str] = field(default_factory=list)  # generated keys whose values differ: never acceptable
    newer: list[str] = field(default_factory=list)  # derived/operator keys re-made since the migration: fine
    copy: dict[str, Any] = field(default_factory=dict)  # flat key -> legacy value, missing GENERATED keys only


def compare(one: dict[str, Any], legacy: dict[str, dict[str, Any]]) -> Comparison:
    out = Comparison()
    for kind in KINDS:
        for key, value in legacy[kind].items():
            flat = flat_key(kind, key)
            if flat not in one:
                out.missing.append(flat)
                if not bootstrap.replaceable(kind, key):
                    # Generated keys only: a derived key the deploy dropped from the one secret on purpose
                    # (the owner setup record, forgotten after a restore) must not come back from a stale copy.
                    out.copy[flat] = value
            elif one[flat] != value:
                (out.newer if bootstrap.replaceable(kind, key) else out.differ).append(flat)
    return out


def check_consistent(target: Target, store: bootstrap.Store, *, dry_run: bool = False) -> None:
    """While legacy secrets exist beside the one secret: a generated key whose value differs stops the deploy
    (nothing changed); a generated legacy key the one secret lacks is copied into it (an interrupted
    migration). Derived and operator keys are the one secret's own once it exists."""
    try:
        one = bootstrap.read_secret(target, target.secret_name)
        legacy = _legacy_values(target, store.legacy)
    except aws.AccessDenied:
        if dry_run:
            return
        raise
    result = compare(one, legacy)
    if result.differ:
        raise MastofargateError(
            f"The secret {target.secret_name} and the legacy secrets hold different values for "
            f"{', '.join(result.differ)}. Nothing was changed.",
            why="these keys are generated once and never change; one of the secrets was edited after the "
            "migration (perhaps by an older mastofargate)",
            fix="'mastofargate status' names the secrets the stacks use: the one in use is right; restore the "
            "other's previous version in Secrets Manager (versions are kept), then deploy again",
            exit_code=EXIT_USAGE,
        )
    if result.copy and not dry_run:
        bootstrap.write_secret(target, target.secret_name, {**one, **result.copy}, one)


# --- who still references the legacy secrets ------------------------------------------------------------


def legacy_uses(target: Target) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """How a stack USES a legacy secret: (in its template) a dynamic reference `{{resolve:secretsmanager:NAME:`,
    (in its parameters) the secret's ARN, which task definitions' `valueFrom` are built from. Not the execution
    role's permission to read the names (stack/iam.py keeps it for tasks of previous task definitions)."""
    kinds = "|".join(KINDS)
    name = r"mastofargate/" + re.escape(target.name) + r"/(?:" + kinds + r")"
    return re.compile(r"resolve:secretsmanager:" + name + r":"), re.compile(r":secret:" + name + r"-[A-Za-z0-9]{6}")


def referencing_stacks(target: Target) -> list[str]:
    """The stacks (data, app) that still use a legacy secret (`legacy_uses`)."""
    in_template, in_parameters = legacy_uses(target)
    cfn = target.cloudformation
    out = []
    for stack in (target.data_stack, target.app_stack):
        try:
            with aws.aws_errors(f"reading stack {stack}"):
                described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
                body = cfn.get_template(StackName=stack, TemplateStage="Original")["TemplateBody"]
        except aws.NotFound:
            continue
        if described.get("StackStatus") == "DELETE_COMPLETE":
            continue
        text = body if isinstance(body, str) else repr(body)
        params = " ".join(str(p.get("ParameterValue", "")) for p in described.get("Parameters") or [])
        if in_template.search(text) or in_parameters.search(params):
            out.append(stack)
    return out


def unused_note(target: Target, legacy: list[str], *, dry_run: bool, migrating: bool) -> str:
    """One line for the deploy: the legacy secrets stay; when they are unused, and how to remove them."""
    names = ", ".join(legacy)
    if dry_run:
        return f"legacy secrets {names}: kept; unused once a deploy has switched the stacks to {target.secret_name}"
    if migrating:
        return (
            f"legacy secrets {names}: kept, never deleted by a deploy; unused once this deploy has switched the "
            f"stacks to {target.secret_name}; then 'mastofargate secrets prune-legacy' removes them ($0.40/month each)"
        )
    return (
        f"legacy secrets {names}: kept, never deleted by a deploy; 'mastofargate status' says whether a stack "
        "still uses them, 'mastofargate secrets prune-legacy' removes them ($0.40/month each)"
    )


# --- prune-legacy ---------------------------------------------------------------------------------------


@dataclass
class PrunePlan:
    names: list[str]  # legacy secrets that would be scheduled for deletion
    newer: list[str]  # derived/operator keys that differ (the one secret's are newer): reported, fine


def plan_prune(target: Target) -> PrunePlan:
    """What prune-legacy would delete; raises (UsageError, nothing changed) when it must not."""
    store = bootstrap.locate(target)
    if store.layout != "one":
        raise UsageError(
            f"{target.secret_name} does not exist yet: the legacy secrets are the only copy of the keys.",
            why="'mastofargate deploy' moves them into the one secret first",
            fix="run 'mastofargate deploy', then this command again",
        )
    if not store.legacy:
        return PrunePlan([], [])
    result = compare(bootstrap.read_secret(target, target.secret_name), _legacy_values(target, store.legacy))
    if result.missing or result.differ:
        problems = []
        if result.missing:
            problems.append(f"lacks {', '.join(result.missing)}")
        if result.differ:
            problems.append(f"holds different values for {', '.join(result.differ)}")
        raise UsageError(
            f"Refusing to remove the legacy secrets: {target.secret_name} {'; '.join(problems)}. Nothing was deleted.",
            why="the legacy secrets would then hold the only copy of those keys",
            fix="run 'mastofargate deploy' (it copies missing keys and stops on differing ones, saying what to do)",
        )
    users = referencing_stacks(target)
    if users:
        raise UsageError(
            f"Refusing to remove the legacy secrets: {', '.join(users)} still reference them. Nothing was deleted.",
            why="tasks and the database/cache settings would fail to read their secrets",
            fix="run 'mastofargate deploy' to switch the stacks to the one secret, then this command again",
        )
    return PrunePlan([target.legacy_secret_names[k] for k in store.legacy], result.newer)


def prune(target: Target, plan: PrunePlan) -> list[str]:
    """Schedule the planned legacy secrets for deletion (30-day recovery window); returns their names."""
    for name in plan.names:
        bootstrap.delete_secret(target, name, RECOVERY_DAYS)
    return plan.names


def legacy_status(target: Target) -> dict[str, Any] | None:
    """For `status`: the legacy secrets that exist, whether a stack still uses them, and what to run."""
    store = bootstrap.locate(target)
    if not store.legacy:
        return None
    names = [target.legacy_secret_names[k] for k in store.legacy]
    if store.layout == "legacy":
        return {"names": names, "in_use": True, "note": f"in use; the next deploy moves them into {target.secret_name}"}
    users = referencing_stacks(target)
    if users:
        return {"names": names, "in_use": True, "note": f"still referenced by {', '.join(users)}; deploy to switch"}
    return {
        "names": names,
        "in_use": False,
        "note": "unused: 'mastofargate secrets prune-legacy' schedules them for deletion ($0.40/month each)",
    }
