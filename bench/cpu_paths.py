"""Run a bench's measurement on this CPU's own path and on the fp32 AVX2 path, each in its own process.

The AVX2 path is held by ATEN_CPU_CAPABILITY=avx2 and ONEDNN_MAX_CPU_ISA=AVX2 (set before torch loads); the
child says which ATen capability and precision it ran with, and a path that did not take effect is refused.
A child is the bench script itself with --one: it prints one JSON object (with "aten" and "precision")."""

from __future__ import annotations

import json
import os
import subprocess
import sys

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def on_both_paths(script: str, argv: list[str]) -> list[dict]:
    """[{"path": "native" | "avx2_fp32", **the child's JSON}] for `script --one argv` on each path."""
    argv = [a for i, a in enumerate(argv) if a != "--out" and (i == 0 or argv[i - 1] != "--out")]
    rows = []
    for name, extra in (("native", {}), ("avx2_fp32", AVX2_ENV)):
        env = {k: v for k, v in os.environ.items() if k not in AVX2_ENV} | extra
        out = subprocess.run(
            [sys.executable, script, "--one", *argv], env=env, check=True, capture_output=True, text=True
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        if extra and (row["aten"] != "AVX2" or row["precision"] != "fp32"):
            raise SystemExit(f"the AVX2 path did not take effect: ATen {row['aten']}, precision {row['precision']}")
        rows.append(dict(path=name, **row))
    return rows
