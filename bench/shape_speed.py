"""What a student's shape costs to train on this CPU: training images/s of each shape (`arch` kwargs, or a
registered name) on this CPU's own path and on the fp32 AVX2 path, beside its parameters and multiply-adds,
and the seconds an epoch of 55,000 images would take. For choosing the default's student: an epoch that
fits `make sweep`'s ten minutes on both paths.

Each figure is the median of --repeats timings of --steps SGD steps on random data (trainables.train.
train_speed, the layout the sweep's plan would pick timed too, the faster kept).

    .venv/bin/python bench/shape_speed.py --out bench/results/shape_speed_<cpu>.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cpu_paths import on_both_paths  # noqa: E402

SHAPES = [  # the default's student today, then shapes at about half its multiply-adds or less
    "res3_w16_32_76_d111",
    {"depths": [1, 1, 1], "strides": [1, 2, 2], "ratios": [1, 2, 8]},
    {"depths": [1, 1, 2], "strides": [1, 2, 2], "ratios": [1, 2, 6]},
    {"depths": [1, 1, 1], "strides": [2, 1, 2], "ratios": [1, 2, 6]},
    {"depths": [1, 1, 2], "strides": [2, 1, 2], "ratios": [1, 2, 4.75]},
    {"depths": [1, 1, 1], "strides": [2, 2, 1], "ratios": [1, 2, 4.75]},
    {"depths": [1, 1, 2], "strides": [2, 2, 1], "ratios": [1, 2, 6]},
]
TRAIN_IMAGES = 55_000


def measure(shapes: list, threads: int, steps: int, repeats: int) -> dict:
    import torch

    from orchestrator.machine import machine
    from students import count_macs, count_params, create_student, deployed
    from trainables.engine import resolve_precision
    from trainables.speed import train_speed

    torch.set_num_threads(threads)
    precision = resolve_precision("auto", "cpu")
    rows = []
    for shape in shapes:
        name, kw = (shape, {}) if isinstance(shape, str) else ("arch", dict(shape, attn="none", block="basic"))
        model = deployed(create_student(name, **kw))
        best = {}
        for layout in ("channels_last", "contiguous"):
            rates = [train_speed(name, steps=steps, precision=precision, layout=layout, **kw) for _ in range(repeats)]
            best[layout] = statistics.median(rates)
        layout = max(best, key=best.get)
        rows.append(
            dict(
                student=name,
                kwargs=kw,
                params=count_params(model),
                macs=count_macs(model),
                layout=layout,
                images_per_s=round(best[layout], 1),
                epoch_s=round(TRAIN_IMAGES / best[layout], 1),
            )
        )
    return dict(
        machine=machine(),
        aten=torch.backends.cpu.get_cpu_capability(),
        precision=precision,
        threads=threads,
        steps=steps,
        repeats=repeats,
        rows=rows,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", help="a JSON list of arch kwargs or names (default: SHAPES)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: one path, JSON out
    ap.add_argument("--out")
    a = ap.parse_args()
    shapes = json.loads(a.shapes) if a.shapes else SHAPES
    if a.one:
        print(json.dumps(measure(shapes, a.threads, a.steps, a.repeats)))
        return
    paths = on_both_paths(__file__, sys.argv[1:])
    for p in paths:
        print(f"{p['path']} ({p['aten']}, {p['precision']}, {p['threads']} threads):")
        for r in p["rows"]:
            print(
                f"  {r['student']} {r['kwargs'] or ''}: {r['params']:,} params, {r['macs'] / 1e6:.1f} M MACs, "
                f"{r['images_per_s']:.0f} img/s ({r['layout']}), {r['epoch_s']:.1f} s an epoch"
            )
    if a.out:
        Path(a.out).write_text(json.dumps(dict(date=time.strftime("%Y-%m-%d"), paths=paths), indent=1) + "\n")


if __name__ == "__main__":
    main()
