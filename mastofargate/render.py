"""Deterministic files for review: cfn/<stack>.yaml and task_definitions/<family>.json.

Same config in, byte-identical files out: keys are sorted, nothing carries a timestamp, and values known
only at deploy time (image tags, secret ARNs, data-stack outputs, role ARNs) appear as readable
placeholders such as `{{MastodonImageTag}}` or `{{social-data:MediaDomain}}`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from troposphere import Template

Format = Literal["yaml", "json"]
CFN_DIR = "cfn"
TASKDEF_DIR = "task_definitions"

# ECS API names that are not just the CloudFormation name with a lower-case first letter.
_API_NAMES = {"EFSVolumeConfiguration": "efsVolumeConfiguration", "IAM": "iam", "FilesystemId": "fileSystemId"}
# Maps whose keys are data, not property names.
_OPAQUE = {"Options", "DockerLabels", "SystemControls"}
# Task definition properties the RegisterTaskDefinition API names differently or does not take.
_SKIP_TASKDEF_KEYS = {"Tags"}
# A path a manifest may list: a plain file name directly inside cfn/ or task_definitions/.
_OUR_PATH = re.compile(rf"(?:{CFN_DIR}|{TASKDEF_DIR})/[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class RenderedFile:
    path: str  # relative to the output directory, with forward slashes
    content: str


def template_text(template: Template, fmt: Format) -> str:
    data = template.to_dict()
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    return _yaml(data)


def _yaml(data: dict[str, Any]) -> str:
    import yaml  # lazily: only synth pays for it

    # libyaml's emitter when present (~10x faster); identical output either way.
    base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    class _Dumper(base):  # type: ignore[valid-type,misc]
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=120, allow_unicode=True)


def placeholder(value: Any) -> Any:
    """Replace CloudFormation intrinsics with readable {{...}} placeholders."""
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return "{{" + str(arg).replace("AWS::", "") + "}}"
        if fn == "Fn::ImportValue":
            return "{{" + str(placeholder(arg)) + "}}"
        if fn == "Fn::GetAtt":
            return "{{" + ".".join(arg) + "}}"
        if fn == "Fn::Join":
            sep, parts = arg
            return sep.join(str(placeholder(p)) for p in parts)
        if fn == "Fn::Sub":
            text = arg if isinstance(arg, str) else arg[0]
            return re.sub(r"\$\{([^}]+)\}", lambda m: "{{" + m.group(1).replace("AWS::", "") + "}}", text)
        if fn == "Fn::If":
            _, yes, _no = arg
            return placeholder(yes)
    if isinstance(value, dict):
        return {k: placeholder(v) for k, v in value.items()}
    if isinstance(value, list):
        return [placeholder(v) for v in value]
    return value


def _api_case(value: Any, opaque: bool = False) -> Any:
    if isinstance(value, dict):
        if opaque:
            return {k: _api_case(v) for k, v in value.items()}
        return {_API_NAMES.get(k, k[:1].lower() + k[1:]): _api_case(v, k in _OPAQUE) for k, v in value.items()}
    if isinstance(value, list):
        return [_api_case(v) for v in value]
    return value


def task_definitions(template: Template) -> dict[str, dict[str, Any]]:
    """RegisterTaskDefinition-shaped JSON for every task definition in the template, by family."""
    out: dict[str, dict[str, Any]] = {}
    for resource in template.resources.values():
        if resource.resource_type != "AWS::ECS::TaskDefinition":
            continue
        props = {k: v for k, v in resource.to_dict()["Properties"].items() if k not in _SKIP_TASKDEF_KEYS}
        body = _api_case(placeholder(props))
        for c in body.get("containerDefinitions", []):
            for key in ("environment", "secrets"):
                if key in c:
                    c[key] = sorted(c[key], key=lambda e: e["name"])
        out[body["family"]] = body
    return out


def manifest_path(stack_prefix: str) -> str:
    """The list of files one config's synth wrote: the only files a later synth may remove."""
    return f"{CFN_DIR}/{stack_prefix}.manifest"


def _manifest_text(stack_prefix: str, paths: list[str]) -> str:
    return (
        f"# Written by 'mastofargate synth' for the server {stack_prefix!r}: the files below are generated.\n"
        "# synth removes a file only when it is listed here and no longer generated; keep this file committed.\n"
        + "".join(f"{p}\n" for p in sorted(paths))
    )


def read_manifest(out_dir: Path, manifest: str) -> set[str]:
    """Paths an earlier synth listed in `manifest` (relative to out_dir); empty when there is none. Only
    paths inside cfn/ and task_definitions/ count, so an edited manifest cannot point synth elsewhere."""
    try:
        text = (out_dir / manifest).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return set()
    return {line for line in map(str.strip, text.splitlines()) if _OUR_PATH.fullmatch(line)}


def render_all(templates: dict[str, Template], stack_prefix: str, fmt: Format = "yaml") -> list[RenderedFile]:
    """Every generated file, plus the manifest naming them (so a later synth knows what it may remove)."""
    files = [
        RenderedFile(f"{CFN_DIR}/{stack_prefix}-{name}.{fmt}", template_text(t, fmt))
        for name, t in sorted(templates.items())
    ]
    for t in templates.values():
        for family, body in sorted(task_definitions(t).items()):
            files.append(
                RenderedFile(f"{TASKDEF_DIR}/{family}.json", json.dumps(body, indent=2, sort_keys=True) + "\n")
            )
    manifest = manifest_path(stack_prefix)
    files.append(RenderedFile(manifest, _manifest_text(stack_prefix, [f.path for f in files])))
    return sorted(files, key=lambda f: f.path)


def _manifest_of(files: list[RenderedFile]) -> str:
    names = [f.path for f in files if f.path.startswith(f"{CFN_DIR}/") and f.path.endswith(".manifest")]
    if len(names) != 1:
        raise ValueError(f"render_all output carries {len(names)} manifests; expected one")
    return names[0]


def _differs(f: RenderedFile, out_dir: Path) -> bool:
    try:
        return (out_dir / f.path).read_text(encoding="utf-8") != f.content
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, UnicodeDecodeError):
        return True


def leftovers(files: list[RenderedFile], out_dir: Path) -> list[str]:
    """Files this config's earlier synth wrote (per its manifest) that it no longer generates: ours to remove."""
    wanted = {f.path for f in files}
    return sorted(p for p in read_manifest(out_dir, _manifest_of(files)) if p not in wanted and (out_dir / p).is_file())


def foreign_files(files: list[RenderedFile], out_dir: Path) -> list[str]:
    """Template-like files (*.yaml, *.json) in cfn/ and task_definitions/ that no manifest claims: written by
    hand, by another tool or by a synth before manifests existed. synth never removes them; it lists them."""
    claimed = {f.path for f in files}
    cfn = out_dir / CFN_DIR
    if cfn.is_dir():
        for manifest in sorted(cfn.glob("*.manifest")):
            claimed |= read_manifest(out_dir, f"{CFN_DIR}/{manifest.name}")
    found = []
    for sub in (CFN_DIR, TASKDEF_DIR):
        folder = out_dir / sub
        if folder.is_dir():
            found += [
                f"{sub}/{p.name}"
                for p in sorted(folder.iterdir())
                if p.is_file() and p.suffix in (".yaml", ".yml", ".json") and f"{sub}/{p.name}" not in claimed
            ]
    return found


def stale_files(files: list[RenderedFile], out_dir: Path) -> list[str]:
    """Paths under out_dir that differ from `files`: changed, missing, or left over from this config's last
    synth. Files no manifest claims are not stale (they are not ours): see foreign_files."""
    return sorted({f.path for f in files if _differs(f, out_dir)} | set(leftovers(files, out_dir)))


def write_files(files: list[RenderedFile], out_dir: Path) -> list[str]:
    """Write what changed (each file atomically: a temporary file in the same folder, then a rename, so a
    reader or a second synth running at once sees the old or the new file, never part of one), remove
    only leftovers this config's manifest lists, and write the manifest last; returns what changed.

    A missing output folder is created; one that cannot be created or written (read-only, a file in the
    way) is a UsageError naming it."""
    from mastofargate.errors import UsageError

    manifest = _manifest_of(files)
    old = leftovers(files, out_dir)
    changed = [f for f in files if _differs(f, out_dir)]
    folder = out_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for f in sorted(changed, key=lambda f: f.path == manifest):  # the manifest last
            folder = (out_dir / f.path).parent
            folder.mkdir(exist_ok=True)
            _atomic_write(out_dir / f.path, f.content)
        for path in old:
            folder = (out_dir / path).parent
            (out_dir / path).unlink(missing_ok=True)
    except OSError as e:
        raise UsageError(
            f"cannot write in {folder}: {e.strerror or e}; the files written so far are complete.",
            why="synth writes cfn/ and task_definitions/ in the output folder",
            fix=f"make {folder} writable, or pass --output-dir with a writable folder",
        ) from None
    return sorted([f.path for f in changed] + old)


def _atomic_write(path: Path, content: str) -> None:
    """Write `content` to `path` through a temporary file and a rename (atomic on POSIX and Windows). The new
    file gets the old one's mode, or the umask's default for a new file, not mkstemp's 0600."""
    import os
    import tempfile

    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
