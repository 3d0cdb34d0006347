"""synth: byte-identical output, --check, task definitions, and the committed example files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mastofargate.errors import EXIT_FAILED
from mastofargate.render import placeholder

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "mastofargate.toml"


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mastofargate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "mastofargate.toml").write_text(EXAMPLE.read_text())
    return tmp_path


def test_synth_is_byte_identical_across_runs_and_hash_seeds(
    workdir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("other")
    assert run("synth", cwd=workdir, env={"PYTHONHASHSEED": "1"}).returncode == 0
    assert (
        run(
            "synth",
            "-c",
            str(workdir / "mastofargate.toml"),
            "-o",
            str(other),
            cwd=workdir,
            env={"PYTHONHASHSEED": "2"},
        ).returncode
        == 0
    )
    first = {k: v for k, v in snapshot(workdir).items() if k != "mastofargate.toml"}
    assert first == snapshot(other)
    assert "cfn/social-app.yaml" in first and "task_definitions/social-web.json" in first


def test_check_passes_when_current_and_writes_nothing(workdir: Path) -> None:
    run("synth", cwd=workdir)
    before = snapshot(workdir)
    result = run("synth", "--check", cwd=workdir)
    assert result.returncode == 0 and "up to date" in result.stdout
    assert snapshot(workdir) == before


def test_check_lists_stale_missing_and_leftover_files(workdir: Path) -> None:
    run("synth", cwd=workdir)
    (workdir / "cfn/social-app.yaml").write_text("edited by hand\n")
    (workdir / "task_definitions/social-web.json").unlink()
    (workdir / "task_definitions/social-old.json").write_text("{}\n")
    before = snapshot(workdir)
    result = run("synth", "--check", cwd=workdir)
    assert result.returncode == EXIT_FAILED
    for path in ("cfn/social-app.yaml", "task_definitions/social-web.json", "task_definitions/social-old.json"):
        assert path in result.stderr
    assert "cfn/social-data.yaml" not in result.stderr
    assert snapshot(workdir) == before  # --check writes nothing
    assert run("synth", cwd=workdir).returncode == 0
    assert run("synth", "--check", cwd=workdir).returncode == 0
    assert not (workdir / "task_definitions/social-old.json").exists()


def test_config_change_makes_committed_files_stale(workdir: Path) -> None:
    run("synth", cwd=workdir)
    cfg = workdir / "mastofargate.toml"
    cfg.write_text(cfg.read_text().replace('profile = "personal"', 'profile = "community"'))
    result = run("synth", "--check", cwd=workdir)
    assert result.returncode == EXIT_FAILED and "cfn/social-app.yaml" in result.stderr


def test_json_format(workdir: Path) -> None:
    assert run("synth", "--format", "json", cwd=workdir).returncode == 0
    data = json.loads((workdir / "cfn/social-app.json").read_text())
    assert data["AWSTemplateFormatVersion"] == "2010-09-09"
    bad = run("synth", "--format", "xml", cwd=workdir)
    assert bad.returncode == 2 and "allowed: yaml, json" in bad.stderr


def test_task_definitions_are_register_task_definition_shaped(workdir: Path) -> None:
    run("synth", cwd=workdir)
    web = json.loads((workdir / "task_definitions/social-web.json").read_text())
    assert {
        "family",
        "containerDefinitions",
        "cpu",
        "memory",
        "networkMode",
        "requiresCompatibilities",
        "executionRoleArn",
        "taskRoleArn",
        "runtimePlatform",
    } <= set(web)
    c = web["containerDefinitions"][0]
    assert c["image"] == "{{social-data:MastodonRepositoryUri}}:{{MastodonImageTag}}"
    assert c["logConfiguration"]["options"]["awslogs-stream-prefix"] == "web"  # opaque map keeps its keys
    assert all(s["valueFrom"].startswith("{{") for s in c["secrets"])
    cfg = workdir / "mastofargate.toml"
    cfg.write_text(cfg.read_text().replace('cache = "elasticache"', 'cache = "task"'))
    result = run("synth", cwd=workdir)
    assert "task_definitions/social-redis.json" in result.stdout
    redis = json.loads((workdir / "task_definitions/social-redis.json").read_text())
    efs = redis["volumes"][0]["efsVolumeConfiguration"]
    assert efs["fileSystemId"] == "{{social-data:FileSystemId}}" and efs["authorizationConfig"]["iam"] == "ENABLED"


def test_placeholders_are_readable() -> None:
    assert placeholder({"Ref": "AWS::Region"}) == "{{Region}}"
    assert placeholder({"Fn::GetAtt": ["ExecutionRole", "Arn"]}) == "{{ExecutionRole.Arn}}"
    assert placeholder({"Fn::Join": [":", [{"Ref": "A"}, "b"]]}) == "{{A}}:b"
    assert placeholder({"Fn::Sub": "arn:${AWS::Partition}:x:${Bucket}"}) == "arn:{{Partition}}:x:{{Bucket}}"


def test_the_committed_example_files_are_current() -> None:
    """The repository's cfn/ and task_definitions/ are what its mastofargate.toml generates."""
    result = run("synth", "--check", cwd=REPO)
    assert result.returncode == 0, result.stderr
