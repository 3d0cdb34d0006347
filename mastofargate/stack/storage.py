"""Alarms on the shared file system (EFS) that the Postgres/Redis tasks keep their data on.

The file system runs in Bursting throughput mode by default (`[efs] throughput`): no charge per GB read or
written, throughput from burst credits. A new file system starts with 2.1 TiB of credits and earns them back
whenever it runs below its baseline; a small server's Postgres and Redis stay far below it. Should they not
(a long import, a relay, a runaway job), the credits drain, and once empty the file system is held to its
baseline: Postgres then crawls. The alarm fires at half the starting balance, days before that point, with
the fix in its description.
"""

from __future__ import annotations

from mastofargate.stack.context import Build
from mastofargate.stack.observability import _alarm

TIB = 1024**4
BURST_CREDIT_FLOOR = TIB  # bytes: half of the 2.1 TiB a new file system starts with


def add(b: Build) -> None:
    if "FileSystem" not in b.data.resources or b.config.efs.throughput != "bursting":
        return
    _alarm(
        b,
        "EfsBurstCreditAlarm",
        "EFS burst credits below 1 TiB: the data file system has long run above its baseline; set [efs] "
        'throughput = "elastic" and deploy before they run out (then Postgres and Redis slow to the baseline)',
        "AWS/EFS",
        "BurstCreditBalance",
        {"FileSystemId": b.imported("FileSystemId")},
        BURST_CREDIT_FLOOR,
        "Minimum",
        "LessThanThreshold",
    )
