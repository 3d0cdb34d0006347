"""Deploy speed: a no-change `deploy` against the local emulator (target: < 5 s of our own overhead), and the
rollout critical path the generated templates imply for web and streaming (target: web < 60 s, against
450 s with AWS's defaults).

No-change deploy: the emulator (the top-level `sandbox` package) gets a first install, then `deploy` runs again
with nothing to do, several times. Each run is timed in this process (flow.deploy) and split into time
spent inside AWS API calls (botocore's `_make_api_call`, i.e. the emulator's answers over HTTP), time
sleeping between polls (counted by the clock the deploy is given), and the rest: our own overhead (config,
templates, plan, output). The same no-change deploy through the CLI in a fresh process
(`python -m mastofargate deploy`) adds interpreter and import start-up. Medians are reported.

Rollout critical path: from a healthy new task to the old one gone = health-check interval x healthy
threshold + deregistration delay, read from the target groups in the generated app template (and checked
against stack.edge.rollout_critical_path).

    .venv/bin/python bench/deploy.py [--runs 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.deploy_sandbox import create_zone, push_fake_images, run_cli, running_sandbox, write_config  # noqa: E402

AWS_DEFAULT_PATH_S = 30 * 5 + 300  # interval x healthy threshold + deregistration delay, AWS defaults
TAG = "v4.5.15-bench"


class CountingClock:
    """The system clock, counting the seconds the deploy spends sleeping between polls (passed in, as the
    deploy takes its clock from its caller)."""

    def __init__(self, totals: dict[str, float]) -> None:
        self.totals = totals

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        start = time.perf_counter()
        time.sleep(seconds)
        self.totals["sleep"] += time.perf_counter() - start


@contextlib.contextmanager
def timed_aws(totals: dict[str, float]) -> Any:
    """Accumulate seconds spent in AWS calls."""
    from botocore.client import BaseClient

    original_call = BaseClient._make_api_call

    def call(self: Any, name: str, params: dict[str, Any]) -> Any:
        start = time.perf_counter()
        try:
            return original_call(self, name, params)
        finally:
            totals["aws"] += time.perf_counter() - start
            totals["calls"] += 1

    BaseClient._make_api_call = call  # type: ignore[method-assign]
    try:
        yield
    finally:
        BaseClient._make_api_call = original_call  # type: ignore[method-assign]


def no_change_deploy(config_path: Path, runs: int) -> None:
    from mastofargate.config import load_config
    from mastofargate.deploy import flow
    from mastofargate.deploy.context import Run
    from mastofargate.deploy.options import DeployOptions
    from mastofargate.deploy.polling import Poller
    from mastofargate.ui import Output

    config = load_config(config_path)
    rows = []
    for _ in range(runs):
        totals = {"aws": 0.0, "sleep": 0.0, "calls": 0.0}
        run = Run.for_config(config, Output(live=False), Poller(CountingClock(totals), 0.1))
        opts = DeployOptions(config_path=config_path, yes=True, skip_assets=True)
        with timed_aws(totals), contextlib.redirect_stdout(io.StringIO()) as out:
            start = time.perf_counter()
            outcome = flow.deploy(run, opts, confirm=lambda question: True)
            total = time.perf_counter() - start
        assert not outcome.changed and "No changes" in out.getvalue(), out.getvalue()
        rows.append((total, totals["aws"], totals["sleep"], total - totals["aws"] - totals["sleep"], totals["calls"]))
    med = [statistics.median(r[i] for r in rows) for i in range(5)]
    print(f"no-change deploy, in process (median of {runs}):")
    print(
        f"  total {med[0]:.2f} s = AWS calls {med[1]:.2f} s ({med[4]:.0f} calls) + poll sleeps {med[2]:.2f} s "
        f"+ our own overhead {med[3]:.2f} s   (target: own overhead < 5 s)"
    )
    cli = []
    env = dict(os.environ)
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "mastofargate", "deploy", "--config", str(config_path), "--yes", "--skip-assets"],
            capture_output=True,
            text=True,
            env=env,
        )
        cli.append(time.perf_counter() - start)
        assert proc.returncode == 0 and "No changes" in proc.stdout, proc.stdout + proc.stderr
    print(f"no-change deploy, CLI in a fresh process (median of {runs}): {statistics.median(cli):.2f} s wall")


def critical_path() -> None:
    from mastofargate.config import parse_config
    from mastofargate.stack import build
    from mastofargate.stack.edge import rollout_critical_path

    config = parse_config(
        {
            "server": {"domain": "social.example.org", "admin_email": "admin@example.org"},
            "aws": {"name": "social", "hosted_zone_id": "Z0123456789EXAMPLE"},
        }
    )
    app = build(config)["app"].to_dict()["Resources"]
    print("rollout critical path (health-check interval x healthy threshold + deregistration delay):")
    for service in ("web", "streaming"):
        tg = app[f"{service.capitalize()}TargetGroup"]["Properties"]
        interval, healthy = int(tg["HealthCheckIntervalSeconds"]), int(tg["HealthyThresholdCount"])
        delay = next(
            int(a["Value"]) for a in tg["TargetGroupAttributes"] if a["Key"] == "deregistration_delay.timeout_seconds"
        )
        path = interval * healthy + delay
        assert path == rollout_critical_path(service), (service, path)
        target = "  (target < 60 s)" if service == "web" else ""
        print(
            f"  {service:<9} {interval} s x {healthy} + {delay} s = {path} s   vs AWS defaults 30 s x 5 + 300 s = "
            f"{AWS_DEFAULT_PATH_S} s ({AWS_DEFAULT_PATH_S / path:.1f}x faster){target}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    critical_path()
    with tempfile.TemporaryDirectory(prefix="mastofargate-bench-") as tmp, running_sandbox(Path(tmp)):
        config = write_config(Path(tmp) / "mastofargate.toml", create_zone())
        for step in (["--data-only"], None):
            if step is None:
                push_fake_images(TAG)
                step = ["--mastodon-tag", TAG, "--streaming-tag", TAG]
            result = run_cli("deploy", "--config", str(config), "--yes", "--skip-assets", *step)
            assert result.exit_code == 0, result.output
        no_change_deploy(config, args.runs)


if __name__ == "__main__":
    main()
