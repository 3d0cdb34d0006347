"""`make images` speed: the first push, and an unchanged second push (target: < 3 s, 0 bytes pushed).

Runs against this machine's Docker engine and the local registry on 127.0.0.1:5000 (started through
scripts/ensure-docker.sh when absent) with the offline stand-in bases from tests/images_support.py,
padded with incompressible bytes so the first push has real layers to upload. The first run goes
through the Python API (for the byte count); second runs go through the CLI in a fresh process each,
as CI would run `make images`, and report the median.

    .venv/bin/python bench/images.py [--runs 5] [--pad-mb 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mastofargate.config import load_config  # noqa: E402
from mastofargate.images import Request, push_images  # noqa: E402
from mastofargate.images.context import images_dir_for  # noqa: E402
from mastofargate.images.progress import PlainDisplay  # noqa: E402
from tests import images_support as support  # noqa: E402


def _quiet() -> PlainDisplay:
    from rich.console import Console

    return PlainDisplay(Console(quiet=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="second runs to take the median of")
    parser.add_argument("--pad-mb", type=float, default=20, help="extra MB in the web stand-in base")
    args = parser.parse_args()

    client = support.ensure_docker()
    nonce = os.urandom(8).hex()
    bases = support.build_standins(client, suffix=f"bench-{nonce}", padding=os.urandom(int(args.pad_mb * 1e6)))
    with tempfile.TemporaryDirectory(prefix="mastofargate-bench-") as tmp:
        config_path = support.write_config(Path(tmp))
        request = Request(
            config=load_config(config_path),
            images_dir=images_dir_for(config_path),
            registry=support.REGISTRY,
            mastodon_base=bases.mastodon,
            streaming_base=bases.streaming,
            postgres_base=bases.postgres,
            platform="linux/amd64",
        )
        start = time.perf_counter()
        first = push_images(request, _quiet())
        first_s = time.perf_counter() - start
        first_bytes = sum(r.bytes_pushed for r in first)
        built = sum(r.built for r in first)

        cli = [
            sys.executable, "-m", "mastofargate", "images", "push", "--config", str(config_path),
            "--registry", support.REGISTRY, "--platform", "linux/amd64", *bases.flags(),
        ]  # fmt: skip
        times, outputs = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            run = subprocess.run(cli, capture_output=True, text=True, env={**os.environ, "CI": "1"}, cwd=ROOT)
            times.append(time.perf_counter() - start)
            outputs.append(run.stdout + run.stderr)
            if run.returncode != 0:
                print(run.stdout + run.stderr, file=sys.stderr)
                return 1
        api_start = time.perf_counter()
        second = push_images(request, _quiet())
        api_s = time.perf_counter() - api_start
        second_bytes = sum(r.bytes_pushed for r in second)
        nothing = all("0 built, 0 pushed, 0 B of layers sent" in out for out in outputs)

    for ref in (bases.mastodon, bases.streaming, bases.postgres, *(r.ref for r in first)):
        client.api.remove_image(ref, force=True)
    median = statistics.median(times)
    pushed = len(first)
    print(f"first run:  {first_s:6.2f} s wall, {first_bytes:,} bytes pushed ({built} images built, {pushed} pushed)")
    print(
        f"second run: {median:6.2f} s wall (CLI, median of {len(times)}: "
        f"{', '.join(f'{t:.2f}' for t in times)}), {second_bytes:,} bytes pushed, "
        f"{'nothing built or pushed' if nothing else 'SOMETHING WAS BUILT OR PUSHED'}"
    )
    print(f"second run via the API (no interpreter start-up): {api_s:.2f} s")
    ok = median < 3 and second_bytes == 0 and nothing
    print(f"target (< 3 s, 0 bytes): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
