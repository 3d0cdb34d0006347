"""Start-up and synth speed (issue: --help < 0.3 s, synth < 0.5 s wall; `cdk synth` of a comparable stack ~5 s).

Runs each command several times in a fresh process and prints the median wall time.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = 9
CDK_SYNTH_S = 5.0  # measured reference for `cdk synth` of a comparable stack on these machines (issue text)


def median_wall(args: list[str], cwd: Path) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(args, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    exe = str(Path(sys.executable).parent / "mastofargate")
    # Bytecode as an installed package has it (this machine sets PYTHONDONTWRITEBYTECODE, so an editable
    # checkout would otherwise recompile every module on every start).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "mastofargate")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copy(REPO / "mastofargate.toml", work / "mastofargate.toml")
        subprocess.run([exe, "synth"], cwd=work, check=True, capture_output=True)  # warm the disk cache
        rows = [
            ("mastofargate --help", median_wall([exe, "--help"], work), 0.3),
            ("mastofargate synth (files current)", median_wall([exe, "synth"], work), 0.5),
            ("mastofargate synth --check", median_wall([exe, "synth", "--check"], work), 0.5),
        ]
        for path in (work / "cfn").iterdir():
            path.unlink()
        rows.append(("mastofargate synth (writes all)", median_wall([exe, "synth"], work), 0.5))
    print(f"{'command':40} {'median s':>9} {'target s':>9}  vs cdk synth ({CDK_SYNTH_S:.0f} s)")
    for name, seconds, target in rows:
        verdict = "ok" if seconds < target else "SLOW"
        print(f"{name:40} {seconds:9.3f} {target:9.1f}  {CDK_SYNTH_S / seconds:5.1f}x faster  {verdict}")


if __name__ == "__main__":
    main()
