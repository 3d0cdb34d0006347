"""Data-stack exports the app stack still imports stay published until the app stack lets go of them.

CloudFormation refuses to delete (or change) an export another stack imports: the update fails at its end
and rolls back ("Export X cannot be deleted as it is in use by Y"). The deploy updates the data stack BEFORE
the app stack, so a release whose data template drops an export (issue 12: `ExecKeyArn`, the retired ECS
Exec key) would fail on every server deployed before it. Instead, the data template gets back each dropped
export that the deployed app stack imports, with the value it has now, as a literal (the same value: no
change CloudFormation refuses). The app stack then updates off it, and the next data-stack change drops it.
"""

from __future__ import annotations

from typing import Any

from mastofargate import names
from mastofargate.target import Target


def template_imports(node: Any) -> set[str]:
    """Export names a template imports (literal Fn::ImportValue, the only kind the generated ones use)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Fn::ImportValue" and isinstance(value, str):
                found.add(value)
            else:
                found |= template_imports(value)
    elif isinstance(node, list):
        for item in node:
            found |= template_imports(item)
    return found


def keep_imported_exports(
    target: Target, data_template: dict[str, Any], app_template: dict[str, Any] | None
) -> list[str]:
    """Add to `data_template` (in place) every output of the deployed data stack that it drops while the
    deployed app stack (`app_template`, None when there is none) still imports its export; the export names."""
    if app_template is None:
        return []
    imported = template_imports(app_template)
    outputs = data_template.setdefault("Outputs", {})
    published = {(o.get("Export") or {}).get("Name") for o in outputs.values()}
    kept = []
    for key, value in sorted(target.stack_outputs(target.data_stack).items()):
        export = names.export(target.name, key)
        if export in imported and export not in published and key not in outputs:
            outputs[key] = {
                "Description": f"Kept while {target.app_stack} imports it (deploy/exports.py); gone after that",
                "Value": value,
                "Export": {"Name": export},
            }
            kept.append(export)
    return kept
