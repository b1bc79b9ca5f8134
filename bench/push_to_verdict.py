"""Measure push-to-verdict time on a running stack (``make run``): push a real Debian image, poll the API."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid

import httpx

from bench.debian_image import debian_layout


def main() -> int:
    """Push the cached Debian layout under a fresh tag and time until the record has a verdict."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--registry", default="127.0.0.1:5000")
    parser.add_argument("--web", default="http://127.0.0.1:8080")
    parser.add_argument("--repository", default="bench/debian")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()

    layout, digest, size = debian_layout()
    print(f"image: Debian bookworm minbase, manifest {digest}, layer {size / 1e6:.1f} MB compressed")
    for run in range(args.runs):
        # A fresh repository each run: same digest, so nothing is cached by (repository, digest).
        repo = f"{args.repository}-{uuid.uuid4().hex[:8]}"
        start = time.monotonic()
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:bookworm",
             f"docker://{args.registry}/{repo}:bench"],
            check=True,
        )
        pushed = time.monotonic()
        verdict = None
        while time.monotonic() - start < args.timeout:
            response = httpx.get(f"{args.web}/api/v1/images/{repo}@{digest}", timeout=10)
            if response.status_code == 200 and response.json().get("status") in {"done", "error"}:
                verdict = response.json()
                break
            time.sleep(0.05)
        done = time.monotonic()
        if verdict is None:
            print(f"run {run + 1}: no verdict within {args.timeout}s")
            return 1
        print(
            f"run {run + 1}: push {pushed - start:.2f}s, push-complete→verdict {done - pushed:.2f}s, "
            f"push-start→verdict {done - start:.2f}s, status={verdict['status']} verdict={verdict['verdict']} "
            f"findings={len(verdict.get('findings') or [])}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
