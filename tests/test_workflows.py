"""The scheduled Mastodon-release workflow example: zizmor (GitHub Actions security linter, a dev
dependency) finds nothing, and its bump step really rewrites a mastofargate.toml pin.

actionlint is not run: its PyPI package downloads the binary from GitHub at install time, which this
machine cannot reach (no Go toolchain either)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "mastodon-release.yml"


def test_zizmor_finds_nothing() -> None:
    zizmor = shutil.which("zizmor") or str(Path(sys.executable).parent / "zizmor")
    run = subprocess.run([zizmor, "--offline", str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_it_runs_daily_with_least_privilege() -> None:
    wf = yaml.safe_load(WORKFLOW.read_text())
    triggers = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as a boolean
    assert triggers["schedule"][0]["cron"] and "workflow_dispatch" in triggers
    assert wf["permissions"] == {}
    assert wf["jobs"]["bump"]["permissions"] == {"contents": "write", "pull-requests": "write"}


def test_the_bump_step_rewrites_the_pin(tmp_path: Path) -> None:
    sed = next(line.strip() for line in WORKFLOW.read_text().splitlines() if line.strip().startswith("sed -i"))
    toml = tmp_path / "mastofargate.toml"
    toml.write_text((REPO / "mastofargate.toml").read_text().replace('"v4.5.15"', '"v4.5.4"'))
    assert re.search(r'^mastodon_version = "v4\.5\.4"$', toml.read_text(), re.M)
    subprocess.run(
        ["bash", "-c", sed],
        cwd=tmp_path,
        env={"PINNED": "v4.5.4", "PATCH": "v4.5.15", "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert re.search(r'^mastodon_version = "v4\.5\.15"$', toml.read_text(), re.M)
    assert toml.read_text().count("v4.5.4") == 0
