"""synth: byte-identical output, --check, task definitions, and the committed example files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mastofargate.errors import EXIT_FAILED, EXIT_USAGE
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
    # A file an earlier synth wrote (its manifest says so) that the config no longer generates.
    (workdir / "task_definitions/social-old.json").write_text("{}\n")
    manifest = workdir / "cfn/social.manifest"
    manifest.write_text(manifest.read_text() + "task_definitions/social-old.json\n")
    (workdir / "cfn/social-app.yaml").write_text("edited by hand\n")
    (workdir / "task_definitions/social-web.json").unlink()
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


# ---------------------------------------------------------------- only our files, atomic, clear errors (issue 10)


def test_synth_never_removes_files_it_did_not_write_and_lists_them(workdir: Path) -> None:
    """Hand-written files and another config's output in the same folder survive a synth (and a config change
    that removes files of ours); they are listed, not deleted."""
    (workdir / "cfn").mkdir()
    (workdir / "task_definitions").mkdir()
    (workdir / "cfn/network-extra.yaml").write_text("Resources: {}\n")
    (workdir / "task_definitions/social-old.json").write_text("{}\n")  # looks like ours, but no manifest says so
    other = workdir / "other.toml"
    other.write_text(EXAMPLE.read_text().replace('name = "social"', 'name = "other"'))
    assert run("synth", "--config", str(other), cwd=workdir).returncode == 0
    others = {p: b for p, b in snapshot(workdir).items() if "other" in p}
    assert "cfn/other-app.yaml" in others and "cfn/other.manifest" in others

    result = run("synth", cwd=workdir)
    assert result.returncode == 0, result.stderr
    for path in ("cfn/network-extra.yaml", "task_definitions/social-old.json"):
        assert (workdir / path).exists() and f"  {path}" in result.stdout
    assert "Left alone (2," in result.stdout
    assert "other-app" not in result.stdout  # another config's manifest claims them: not even listed
    assert {p: b for p, b in snapshot(workdir).items() if "other" in p} == others

    cfg = workdir / "mastofargate.toml"
    cfg.write_text(cfg.read_text().replace('cache = "elasticache"', 'cache = "task"'))
    assert run("synth", cwd=workdir).returncode == 0
    cfg.write_text(cfg.read_text().replace('cache = "task"', 'cache = "elasticache"'))
    result = run("synth", cwd=workdir)
    assert "removed task_definitions/social-redis.json" in result.stdout  # ours, per the manifest
    assert (workdir / "task_definitions/social-old.json").exists()
    assert {p: b for p, b in snapshot(workdir).items() if "other" in p} == others
    assert run("synth", "--check", cwd=workdir).returncode == 0  # foreign files are not stale


def test_manifest_cannot_point_synth_outside_its_folders(workdir: Path) -> None:
    assert run("synth", cwd=workdir).returncode == 0
    victim = workdir / "keep.json"
    victim.write_text("{}\n")
    manifest = workdir / "cfn/social.manifest"
    manifest.write_text(manifest.read_text() + "../keep.json\ncfn/../keep.json\n/etc/hostname\n")
    assert run("synth", cwd=workdir).returncode == 0
    assert victim.exists()


def test_missing_or_read_only_output_folder_is_named(workdir: Path) -> None:
    assert run("synth", "-o", str(workdir / "new" / "folder"), cwd=workdir).returncode == 0  # created
    blocked = workdir / "mastofargate.toml" / "out"  # cannot exist: a file is in the way
    result = run("synth", "-o", str(blocked), cwd=workdir)
    assert result.returncode == EXIT_USAGE and str(blocked) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr

    locked = workdir / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user that ignores file modes (root): a read-only folder is writable")
        result = run("synth", "-o", str(locked), cwd=workdir)
        assert result.returncode == EXIT_USAGE and str(locked) in result.stderr and "Traceback" not in result.stderr
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_unwritable_folder_is_named_even_as_root(workdir: Path) -> None:
    """A path that is a file where a folder must be fails for every user, root included."""
    (workdir / "cfn").write_text("not a folder\n")
    result = run("synth", cwd=workdir)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert "cfn" in result.stderr and "Traceback" not in result.stderr
    assert (workdir / "cfn").read_text() == "not a folder\n"


def _writer(out_dir: str, files: list[tuple[str, str]], rounds: int) -> None:
    from mastofargate.render import RenderedFile, write_files

    rendered = [RenderedFile(p, c) for p, c in files]
    for _ in range(rounds):
        write_files(rendered, Path(out_dir))


def test_concurrent_synths_never_leave_a_partial_file(tmp_path: Path) -> None:
    """Two processes write two different configs' output (same paths, different content) into one folder,
    over and over, while this process reads: every read is one complete version, never a mix or a prefix."""
    import multiprocessing

    from mastofargate.config import load_config
    from mastofargate.render import render_all
    from mastofargate.stack import build

    small = load_config(EXAMPLE)
    cfg_text = EXAMPLE.read_text().replace('profile = "personal"', 'profile = "community"')
    (tmp_path / "big.toml").write_text(cfg_text)
    big = load_config(tmp_path / "big.toml")
    a = [(f.path, f.content) for f in render_all(build(small), "social")]
    b = [(f.path, f.content) for f in render_all(build(big), "social")]
    versions: dict[str, set[str]] = {}
    for path, content in a + b:
        versions.setdefault(path, set()).add(content)
    assert any(len(v) == 2 for v in versions.values())  # the two configs really differ
    out = tmp_path / "out"
    out.mkdir()
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_writer, args=(str(out), files, 150)) for files in (a, b)]
    differing = {p: v for p, v in versions.items() if len(v) == 2}
    for w in writers:
        w.start()
    reads = 0
    while any(w.is_alive() for w in writers):
        for path, allowed in differing.items():
            try:
                text = (out / path).read_text(encoding="utf-8")
            except FileNotFoundError:
                continue
            assert text in allowed, f"{path}: a partial or mixed file ({len(text)} characters)"
            reads += 1
    for w in writers:
        w.join()
        assert w.exitcode == 0
    assert reads > 0
    leftovers = [p.name for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    for path, allowed in versions.items():
        if (out / path).exists():
            assert (out / path).read_text(encoding="utf-8") in allowed


def test_concurrent_synth_commands_agree(workdir: Path) -> None:
    """The real command, several at once, repeated: each exits 0 and the result is exactly one synth's."""
    (workdir / "cfn").mkdir()
    assert run("synth", "-o", str(workdir / "cfn"), cwd=workdir).returncode == 0  # a reference copy
    reference = snapshot(workdir / "cfn")
    target = workdir / "target"
    target.mkdir()
    for _ in range(3):
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "mastofargate", "synth", "-o", str(target)],
                cwd=workdir,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        assert snapshot(target) == reference
