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


def render_all(templates: dict[str, Template], stack_prefix: str, fmt: Format = "yaml") -> list[RenderedFile]:
    files = [
        RenderedFile(f"{CFN_DIR}/{stack_prefix}-{name}.{fmt}", template_text(t, fmt))
        for name, t in sorted(templates.items())
    ]
    for t in templates.values():
        for family, body in sorted(task_definitions(t).items()):
            files.append(
                RenderedFile(f"{TASKDEF_DIR}/{family}.json", json.dumps(body, indent=2, sort_keys=True) + "\n")
            )
    return sorted(files, key=lambda f: f.path)


def stale_files(files: list[RenderedFile], out_dir: Path) -> list[str]:
    """Paths under out_dir that differ from `files`: changed, missing, or left over from an old config."""
    stale = [
        f.path
        for f in files
        if not (out_dir / f.path).is_file() or (out_dir / f.path).read_text(encoding="utf-8") != f.content
    ]
    wanted = {f.path for f in files}
    for sub in (CFN_DIR, TASKDEF_DIR):
        folder = out_dir / sub
        if folder.is_dir():
            stale += [
                f"{sub}/{p.name}"
                for p in sorted(folder.iterdir())
                if p.is_file() and p.suffix in (".yaml", ".json") and f"{sub}/{p.name}" not in wanted
            ]
    return sorted(set(stale))


def write_files(files: list[RenderedFile], out_dir: Path) -> list[str]:
    """Write the files, remove generated files the config no longer produces; returns what changed."""
    changed = stale_files(files, out_dir)
    wanted = {f.path for f in files}
    for f in files:
        if f.path in changed:
            target = out_dir / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f.content, encoding="utf-8")
    for path in changed:
        if path not in wanted:
            (out_dir / path).unlink()
    return changed
