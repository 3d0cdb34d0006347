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
