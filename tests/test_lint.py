"""cfn-lint and checkov, the validators of record, over every generated template.

Templates that come out byte-identical for several combinations (the data stack ignores arch and Spot)
are validated once; the verdict for identical bytes is identical.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from mastofargate.render import template_text
from mastofargate.stack import build
from tests.conftest import COMBINATIONS, combo_config, combo_id

pytestmark = pytest.mark.lint


@cache
def unique_templates() -> dict[str, str]:
    """{name: yaml} with one entry per distinct template text."""
    seen: dict[str, str] = {}
    out: dict[str, str] = {}
    for combo in COMBINATIONS:
        cfg = combo_config(combo)
        for name, template in build(cfg).items():
            text = template_text(template, "yaml")
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest not in seen:
                seen[digest] = f"{combo_id(combo)}-{name}"
                out[seen[digest]] = text
    return out


def test_every_combination_is_covered() -> None:
    names = unique_templates()
    assert len(COMBINATIONS) == 48 + 8 + 5  # every ALB split shape, the direct edge's and the one task's selected
    assert sum(n.endswith("-app") for n in names) == 61  # every app stack differs (arch, spot, sizes, edge, layout)
    # profile x database x cache behind the ALB, and with the direct edge: personal x database x cache (EFS and
    # the edge's security group differ), community (rds with elasticache, and with a Redis task) and large (rds +
    # elasticache); with Postgres in the one task, the data stack's setup task reaches it by that task's name
    # (behind the ALB, and with the direct edge)
    assert sum(n.endswith("-data") for n in names) == 12 + 5 + 2 + 2


@pytest.mark.parametrize("name", sorted(unique_templates()))
def test_cfn_lint_reports_nothing(name: str) -> None:
    from cfnlint.api import ManualArgs, lint

    matches = lint(unique_templates()[name], config=ManualArgs(regions=["us-east-1"]))
    problems = [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches if m.rule.id[0] in "EW"]
    assert problems == []


def test_checkov_reports_no_failed_check(tmp_path: Path) -> None:
    for name, text in unique_templates().items():
        (tmp_path / f"{name}.yaml").write_text(text)
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "checkov"),
            "-d",
            str(tmp_path),
            "--framework",
            "cloudformation",
            "--skip-download",
            "--quiet",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(result.stdout)
    summary = report["summary"] if isinstance(report, dict) else report[0]["summary"]
    results = report["results"] if isinstance(report, dict) else report[0]["results"]
    failed = [
        f"{r['check_id']} {r['resource']} in {Path(r['file_path']).name}" for r in results.get("failed_checks", [])
    ]
    assert failed == []
    assert summary["passed"] > 1000 and summary["parsing_errors"] == 0
    # every skip carries a reason
    for skipped in results.get("skipped_checks", []):
        assert skipped.get("check_result", {}).get("suppress_comment"), skipped["check_id"]
