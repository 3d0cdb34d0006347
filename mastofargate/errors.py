"""The one exception type users see.

Every failure a user can act on is raised as `MastofargateError` carrying what went wrong, why,
and what to do next; the CLI prints those three and exits with `exit_code`, never a traceback.
"""

from __future__ import annotations

# Exit codes shared by every verb (documented in the README).
EXIT_OK = 0
EXIT_FAILED = 1  # the operation failed (a deploy failed and was rolled back, a check found stale files)
EXIT_USAGE = 2  # bad input: config, flags, missing files
EXIT_TIMEOUT = 3  # gave up waiting; the state on AWS is unknown
EXIT_STUCK = 4  # a stack is stuck and needs a human (e.g. UPDATE_ROLLBACK_FAILED)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)


class MastofargateError(Exception):
    """A failure explained for the user: what happened, why, and the next step."""

    def __init__(self, what: str, *, why: str = "", fix: str = "", exit_code: int = EXIT_FAILED) -> None:
        super().__init__(what)
        self.what = what
        self.why = why
        self.fix = fix
        self.exit_code = exit_code

    def __str__(self) -> str:
        parts = [self.what]
        if self.why:
            parts.append(f"Why: {self.why}")
        if self.fix:
            parts.append(f"Next: {self.fix}")
        return "\n".join(parts)


class UsageError(MastofargateError):
    """Bad input (config value, flag, file): exit code 2."""

    def __init__(self, what: str, *, why: str = "", fix: str = "") -> None:
        super().__init__(what, why=why, fix=fix, exit_code=EXIT_USAGE)


class Interrupted(MastofargateError):
    """Ctrl-C: what was still going on at AWS when the user interrupted, and what to run next."""

    def __init__(self, in_flight: list[str], *, verb: str = "deploy") -> None:
        if in_flight:
            why = "still in flight on AWS: " + "; ".join(in_flight)
            fix = f"check with 'mastofargate status'; when it has settled, run 'mastofargate {verb}' again"
        else:
            why = "nothing was in flight on AWS at that moment"
            fix = f"run 'mastofargate {verb}' again when you are ready"
        super().__init__("Interrupted.", why=why, fix=fix, exit_code=EXIT_INTERRUPTED)
