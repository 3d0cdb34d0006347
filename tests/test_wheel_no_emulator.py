"""The shipped wheel holds the product and nothing of the local AWS emulator.

The emulator (the top-level `sandbox` package) patches moto, a dev-only dependency; a user installing
mastofargate must get neither. Builds the real wheel with `pip wheel . --no-deps` (pip's build isolation
installs setuptools from the configured index, as for any release) from a clean copy of the source tree
(an in-tree build would leave build/ behind, and a stale build/lib could put removed files in the wheel),
and reads what is inside.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_contains_no_emulator_code(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    skip = shutil.ignore_patterns(".git", ".venv", "build", "dist", "demo", "*.egg-info", "__pycache__", ".*_cache")
    shutil.copytree(REPO, src, ignore=skip)
    assert (src / "sandbox" / "__init__.py").exists()  # the emulator is in the tree the wheel is built from
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(out)],
        cwd=src,
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = out.glob("mastofargate-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        code = {n: zf.read(n).decode("utf-8", "replace") for n in names if n.endswith(".py")}
    assert "mastofargate/cli.py" in names  # the product is there
    top = {n.split("/", 1)[0] for n in names}
    assert all(t.startswith("mastofargate") for t in top), top
    assert not [n for n in names if "sandbox" in n.lower()]
    emulator_imports = ("import moto", "from moto", "import sandbox", "from sandbox")
    assert [n for n, text in code.items() if any(i in text for i in emulator_imports)] == []
