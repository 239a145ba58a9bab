"""Teacher candidates on this CPU: training and inference images/s of each architecture a CPU can train
(students/teachers.py) beside the ResNet-50 at 28 px, as `kdsweep teacher train` runs its step
(channels_last, CE, backward, SGD; bf16 autocast where asked and native). Per architecture: parameters and
multiply-adds (torchinfo), the achieved GFLOP/s (a training image ~3x the forward's 2 x MACs), the minutes
of one 55,000-image epoch and the views cache's cost (18 views of 55,000 images). Median of --runs.

    python bench/teacher_speed.py [--threads 2] [--runs 3] [--steps 8] [--out experiments/teacher_assistant/speed.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from orchestrator.machine import machine  # noqa: E402
from orchestrator.run.io import atomic_write_json  # noqa: E402
from students.teachers import CIFAR_ARCHS, build_resnet  # noqa: E402
from trainables.engine import autocast, resolve_precision  # noqa: E402
from trainables.layout import prepare_for_training  # noqa: E402
from trainables.speed import step_rate  # noqa: E402

N_TRAIN, VIEWS = 55_000, 18


@torch.inference_mode()
def infer_rate(model, bs: int, batches: int, precision: str) -> float:
    x = torch.randn(bs, 3, 28, 28).contiguous(memory_format=torch.channels_last)
    model.eval()
    with autocast(precision, "cpu"):
        model(x)
        t0 = time.perf_counter()
        for _ in range(batches):
            model(x)
    return batches * bs / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=[*CIFAR_ARCHS, "resnet50"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--precisions", nargs="+", default=["fp32", "auto"])
    p.add_argument("--out", default=None)
    args = p.parse_args()
    import torchinfo

    torch.set_num_threads(args.threads)
    rows = []
    for arch in args.archs:
        torch.manual_seed(0)
        model = build_resnet(arch)
        s = torchinfo.summary(model, input_size=(1, 3, 28, 28), verbose=0)
        prepare_for_training(model)
        for asked in dict.fromkeys(args.precisions):
            prec = resolve_precision(asked, "cpu")
            if any(r["arch"] == arch and r["precision"] == prec for r in rows):
                continue  # auto resolved to fp32 here: measured already
            tr = statistics.median(step_rate(model, 3, args.batch_size, args.steps, 2, prec) for _ in range(args.runs))
            inf = statistics.median(infer_rate(model, 256, 4, prec) for _ in range(args.runs))
            row = dict(
                arch=arch,
                precision=prec,
                params=s.total_params,
                macs_m=round(s.total_mult_adds / 1e6, 1),
                train_img_s=round(tr, 1),
                infer_img_s=round(inf, 1),
                train_gflop_s=round(tr * 6 * s.total_mult_adds / 1e9, 1),
                epoch_min=round(N_TRAIN / tr / 60, 2),
                views_cache_min=round(N_TRAIN * VIEWS / inf / 60, 1),
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    rec = dict(
        bench="teacher_speed",
        threads=args.threads,
        runs=args.runs,
        steps=args.steps,
        batch_size=args.batch_size,
        machine=machine(),
        date=time.strftime("%Y-%m-%d"),
        rows=rows,
        note="epoch_min: the bare step's rate; a real epoch adds augmentation and validation",
    )
    if args.out:
        atomic_write_json(args.out, rec)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
