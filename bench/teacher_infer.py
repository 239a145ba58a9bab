"""Teacher inference speed by batch size, as the logit cache runs it.

Prints images/s (median of --repeats passes) and the system time spent (cores) for each batch size on
the same 4,000 training images in one process; large batches lose time to glibc mmap/munmap of their
activations, which is why teacher.INFER_BATCH is 256 for a ResNet-50 and MEMBER_INFER_BATCH 64 for a
student in a teacher ensemble. --teacher takes a teacher or a student checkpoint (teacher.load_member).

    python bench/teacher_infer.py [--teacher models/teacher/resnet50.pt] [--batches 1000 500 256 128]
    python bench/teacher_infer.py --teacher models/teacher/ensemble/s121.pt --batches 16 32 64 128 256
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from orchestrator.data import load_split  # noqa: E402
from orchestrator.teacher.model import load_member  # noqa: E402
from trainables.augment import to_input  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="models/teacher/resnet50.pt")
    p.add_argument("--images", type=int, default=4000)
    p.add_argument("--batches", type=int, nargs="+", default=[1000, 500, 256, 128])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, info = load_member(args.teacher)
    model.eval()
    pre = info.preprocess
    x = to_input(
        torch.as_tensor(load_split(train_limit=args.images, val_limit=100).train_x),
        pre.mean,
        pre.std,
        pre.channels,
        pre.size,
    )
    with torch.no_grad():
        for bs in args.batches:
            model(x[:bs])  # warm-up at this size
            rates, sys_cores = [], []
            for _ in range(args.repeats):
                t0, c0 = time.time(), os.times()
                for i in range(0, len(x), bs):
                    model(x[i : i + bs])
                dt, c1 = time.time() - t0, os.times()
                rates.append(len(x) / dt)
                sys_cores.append((c1.system - c0.system) / dt)
            print(
                f"batch {bs:5d}: {statistics.median(rates):6.0f} img/s, system time "
                f"{statistics.median(sys_cores):.2f} cores",
                flush=True,
            )


if __name__ == "__main__":
    main()
