"""`ci init` and the review comment: the generated workflows pass actionlint and zizmor (real binaries from
the dev extra, zizmor offline) with no findings, keep to their rules (pinned actions, least permissions,
no expression inside a script, deploys never overlapping), and are not overwritten without --force."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mastofargate.ci.comment import marker, render_comment
from tests.images_support import write_config

BIN = Path(sys.executable).parent
SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[^@]+)?@[0-9a-f]{40}$")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mastofargate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={"CI": "1", "PATH": "/usr/bin:/bin", "HOME": str(cwd), "PYTHONPATH": str(Path(__file__).parents[1])},
    )


def repo_with_config(tmp_path: Path, arch: str = "arm64", repository: str | None = "example/my-server") -> Path:
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    path = write_config(repo, name="social", arch=arch)
    if repository:
        path.write_text(path.read_text() + f'\n[ci]\nrepository = "{repository}"\n')
    return repo


def _tool(name: str) -> str:
    exe = BIN / name
    if not exe.exists():
        pytest.fail(f"{name} is not installed: run 'make install' (it is pinned in the dev extra)", pytrace=False)
    return str(exe)


def actionlint(files: list[Path]) -> list[str]:
    run = subprocess.run([_tool("actionlint"), "-no-color", *map(str, files)], capture_output=True, text=True)
    assert run.returncode in (0, 1), run.stderr
    return [line for line in run.stdout.splitlines() if re.match(r"^\S+:\d+:\d+: ", line)]


def zizmor(files: list[Path]) -> list[str]:
    run = subprocess.run(
        [_tool("zizmor"), "--offline", "--no-progress", "--format", "json", *map(str, files)],
        capture_output=True,
        text=True,
    )
    findings = json.loads(run.stdout or "[]")
    return [f"{f['ident']}: {f['desc']} ({f['locations'][0]['symbolic']['key']})" for f in findings]


@pytest.mark.parametrize(("arch", "account"), [("arm64", None), ("x86_64", "123456789012")])
def test_generated_workflows_pass_actionlint_and_zizmor(tmp_path: Path, arch: str, account: str | None) -> None:
    repo = repo_with_config(tmp_path, arch)
    result = cli("ci", "init", *(["--account-id", account] if account else []), cwd=repo)
    assert result.returncode == 0, result.stderr
    workflows = sorted((repo / ".github" / "workflows").glob("*.yml"))
    assert [w.name for w in workflows] == ["deploy.yml", "images.yml", "review.yml"]
    assert actionlint(workflows) == []
    assert zizmor(workflows) == []
    images = yaml.safe_load((repo / ".github/workflows/images.yml").read_text())
    assert images["jobs"]["images"]["runs-on"] == ("ubuntu-24.04-arm" if arch == "arm64" else "ubuntu-24.04")
    review = (repo / ".github/workflows/review.yml").read_text()
    assert f"arn:aws:iam::{account or '${{ vars.AWS_ACCOUNT_ID }}'}:role/social-ci-plan" in review


def test_workflow_rules(tmp_path: Path) -> None:
    repo = repo_with_config(tmp_path)
    assert cli("ci", "init", cwd=repo).returncode == 0
    for path in (repo / ".github" / "workflows").glob("*.yml"):
        doc = yaml.safe_load(path.read_text())
        assert doc["permissions"] == {}, path.name  # nothing by default; each job asks for what it uses
        for job_id, job in doc["jobs"].items():
            assert "permissions" in job and "write-all" not in str(job["permissions"]), (path.name, job_id)
            assert set(job["permissions"]) <= {"contents", "id-token", "pull-requests"}
            assert job["permissions"].get("contents") == "read"
            for step in job.get("steps", []):
                if "uses" in step:
                    assert SHA_PIN.match(step["uses"]), step["uses"]
                if "run" in step:
                    assert "${{" not in step["run"], (path.name, step)  # expressions reach scripts via env only
                if "actions/checkout" in step.get("uses", ""):
                    assert step["with"]["persist-credentials"] is False
    deploy = yaml.safe_load((repo / ".github/workflows/deploy.yml").read_text())["jobs"]["deploy"]
    assert deploy["environment"] == "production"
    assert deploy["concurrency"] == {"group": "mastofargate-deploy-social", "cancel-in-progress": False}
    assert "deploy --yes" in deploy["steps"][-1]["run"] and "--images-json" in deploy["steps"][-1]["run"]
    images = yaml.safe_load((repo / ".github/workflows/images.yml").read_text())
    assert images[True]["push"]["branches"] == ["main"]  # `on:` is YAML 1.1's True
    assert images["jobs"]["deploy"]["uses"] == "./.github/workflows/deploy.yml"
    review = yaml.safe_load((repo / ".github/workflows/review.yml").read_text())
    assert set(review[True]) == {"pull_request"}  # never pull_request_target
    plan_job = review["jobs"]["plan"]
    assert plan_job["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}
    runs = "\n".join(s.get("run", "") for s in plan_job["steps"])
    assert "synth --check" in "\n".join(s.get("run", "") for s in review["jobs"]["check"]["steps"])
    assert "plan --config" in runs and "cost --config" in runs and "--diff" in runs and "PATCH" in runs
    makefile = (repo / "Makefile").read_text()
    for target in ("images:", "synth:", "plan:"):
        assert target in makefile
    make = subprocess.run(["make", "-n", "-C", str(repo), "images", "synth", "plan"], capture_output=True, text=True)
    assert make.returncode == 0 and "mastofargate images push --config mastofargate.toml" in make.stdout


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    repo = repo_with_config(tmp_path)
    (repo / "Makefile").write_text("mine:\n\ttrue\n")
    refused = cli("ci", "init", cwd=repo)
    assert refused.returncode == 2 and "Makefile already exists" in refused.stderr and "--force" in refused.stderr
    assert not (repo / ".github").exists() and (repo / "Makefile").read_text() == "mine:\n\ttrue\n"
    assert cli("ci", "init", "--force", cwd=repo).returncode == 0
    assert "images push" in (repo / "Makefile").read_text()


def test_config_in_a_subfolder_and_bad_input(tmp_path: Path) -> None:
    repo = repo_with_config(tmp_path)
    sub = repo / "servers" / "social"
    sub.mkdir(parents=True)
    (repo / "mastofargate.toml").rename(sub / "mastofargate.toml")
    ok = cli("ci", "init", "--config", "servers/social/mastofargate.toml", cwd=repo)
    assert ok.returncode == 0, ok.stderr
    assert '--config "servers/social/mastofargate.toml"' in (repo / ".github/workflows/deploy.yml").read_text()
    bad = cli(
        "ci", "init", "--force", "--account-id", "12345", "--config", "servers/social/mastofargate.toml", cwd=repo
    )
    assert bad.returncode == 2 and "--account-id '12345'" in bad.stderr and "12 digits" in bad.stderr
    other = cli(
        "ci", "init", "--provider", "gitlab", "--force", "--config", "servers/social/mastofargate.toml", cwd=repo
    )
    assert other.returncode == 2 and "'gitlab'" in other.stderr and "github" in other.stderr


def _change(action: str, rid: str, rtype: str, replacement: str = "", loses: bool = False) -> dict[str, object]:
    return {
        "action": action,
        "logical_id": rid,
        "resource_type": rtype,
        "replacement": replacement,
        "description": f"the {rid} | of it",
        "data_kind": "database" if loses else None,
        "loses_data": loses,
    }


def test_comment_shows_counts_data_loss_in_bold_and_the_cost_difference() -> None:
    plan = {
        "stacks": [
            {
                "stack": "social-data",
                "kind": "UPDATE",
                "note": "",
                "deferred": False,
                "changes": [
                    _change("Modify", "Database", "AWS::RDS::DBInstance", "True", loses=True),
                    _change("Add", "Alarm", "AWS::CloudWatch::Alarm"),
                    _change("Remove", "OldQueue", "AWS::SQS::Queue"),
                ],
            },
            {"stack": "social-app", "kind": "UPDATE", "note": "", "deferred": False, "changes": []},
        ],
        "images": None,
    }
    cost = {
        "ref": "main",
        "total": {"base_usd_month": 40.0, "head_usd_month": 55.5, "delta_usd_month": 15.5},
        "lines": [
            {"name": "RDS db.t4g.small", "base_usd_month": None, "head_usd_month": 25.5, "delta_usd_month": 25.5},
            {"name": "RDS db.t4g.micro", "base_usd_month": 10.0, "head_usd_month": None, "delta_usd_month": -10.0},
        ],
    }
    text = render_comment("social", plan, cost)
    assert text.splitlines()[0] == marker("social") == "<!-- mastofargate:plan social -->"
    assert "**social-data**: 1 added, 1 modified, 1 removed" in text
    assert "**⚠️ Data loss: Database (database) would be replaced.**" in text
    assert "| ~ | **`Database`** | AWS::RDS::DBInstance | **replaced** |" in text
    assert "| + | `Alarm` | AWS::CloudWatch::Alarm |  | the Alarm \\| of it |" in text
    assert "**social-app**: no changes" in text
    assert "**Monthly cost**: $40.00 → $55.50 (**+$15.50**) against `main`" in text
    assert "| RDS db.t4g.micro | $10.00 | — | −$10.00 |" in text
    assert "The plan did not run" in render_comment("social", None, None)
    gross = render_comment("social", plan, {**cost, "free_tier": {"applied": False}})
    assert "against `main`, gross (without AWS's always-free tiers)" in gross


def test_plan_summary_reads_the_deploy_layers_plans(tmp_path: Path) -> None:
    """plan_summary() over real deploy.stacks.Plan objects, rendered by `ci comment` (the files the review
    workflow passes it)."""
    from mastofargate.ci.comment import plan_summary
    from mastofargate.deploy.stacks import Change, Plan, deferred_plan

    data = Plan(
        "social-data",
        "UPDATE",
        [
            Change("Modify", "Database", "AWS::RDS::DBInstance", "True", "Postgres"),
            Change("Modify", "MediaBucket", "AWS::S3::Bucket", "False", "Media"),
        ],
        {},
        {},
    )
    app = deferred_plan("social-app", {}, {}, "planned once the images are built")
    summary = plan_summary([data, app], images="v4.5.4-a1")
    assert summary["stacks"][0]["changes"][0] == {
        "action": "Modify",
        "logical_id": "Database",
        "resource_type": "AWS::RDS::DBInstance",
        "replacement": "True",
        "description": "Postgres",
        "data_kind": "database",
        "loses_data": True,
    }
    assert summary["stacks"][1]["deferred"] is True
    repo = repo_with_config(tmp_path)
    (repo / "plan.json").write_text(json.dumps(summary))
    out = cli("ci", "comment", "--plan", "plan.json", "--output", "comment.md", cwd=repo)
    assert out.returncode == 0, out.stderr
    text = (repo / "comment.md").read_text()
    assert text.startswith("<!-- mastofargate:plan social -->\n")
    assert "**⚠️ Data loss: Database (database) would be replaced.**" in text
    assert "| ~ | `MediaBucket` | AWS::S3::Bucket |  | Media |" in text
    assert "**social-app**: planned during the deploy (planned once the images are built)" in text
    (repo / "bad.json").write_text("{")
    bad = cli("ci", "comment", "--plan", "bad.json", cwd=repo)
    assert bad.returncode == 2 and "--plan bad.json is not JSON" in bad.stderr
