"""KD against its no-teacher control: the same student, data, epochs and seeds for every loss.

Rows: CE, CE + label smoothing 0.1, KD (Hinton) at T 1 / 2 / 4 (alpha 0.9), KD at T 1 with alpha 0.5 and
label smoothing 0.1 on the hard term (the release recipe's loss), logit-standardized KD (T 2, alpha 0.9) and
DKD (alpha 1, beta 8, T 4, KD weight warmed up over the first epoch). Teacher: the released ResNet-50's clean
logits from the cache (built once if missing). Prints mean +- std over the seeds of the last epoch's
validation accuracy (no selection by epoch) and writes every run to --out as JSON.

    python bench/kd_vs_control.py [--train-limit 15000] [--epochs 6] [--seeds 3] [--student res3_w16_d111]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROWS = {  # name -> train keys (the rest: the common recipe below)
    "ce": dict(loss="ce"),
    "ce + ls 0.1": dict(loss="ce", label_smoothing=0.1),
    "kd T1 a0.9": dict(loss="kd", temperature=1.0, alpha=0.9),
    "kd T2 a0.9": dict(loss="kd", temperature=2.0, alpha=0.9),
    "kd T4 a0.9": dict(loss="kd", temperature=4.0, alpha=0.9),
    "kd T1 a0.5 + ls 0.1": dict(loss="kd", temperature=1.0, alpha=0.5, label_smoothing=0.1),
    "lskd T2 a0.9": dict(loss="lskd", temperature=2.0, alpha=0.9),
    "dkd a1 b8 T4": dict(loss="dkd", temperature=4.0, alpha=1.0, beta=8.0, kd_warmup=1),
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="models/teacher/resnet50.pt")
    p.add_argument("--student", default="res3_w16_d111")
    p.add_argument("--train-limit", type=int, default=15000, help="first N images of the seeded training split")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rows", nargs="+", default=list(ROWS), help="subset of: " + ", ".join(ROWS))
    p.add_argument("--cache-dir", default="cache")
    p.add_argument("--out", default="bench/results/kd_vs_control.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from orchestrator.cache import teacher_logits
    from orchestrator.data import load_split
    from orchestrator.teacher import load_teacher
    from orchestrator.teacher_train import machine
    from trainables.augment import ViewSpec
    from trainables.config import TrainConfig
    from trainables.train import TrialData, train_student

    s = load_split()  # the full split, so the sweep's clean cache is a hit; then the first N images
    model, info = load_teacher(args.teacher)
    logits, forwards, _ = teacher_logits(model, info.sha256, info.preprocess, s.train_x, s.train_y, ViewSpec(0, False),
                                         args.cache_dir, log=print)
    n = args.train_limit or len(s.train_x)
    data = TrialData(s.train_x[:n], s.train_y[:n], s.val_x, s.val_y, ViewSpec(2, True), "clean",
                     np.ascontiguousarray(logits[:n]))
    print(f"{args.student}, {args.epochs} epochs, {n} train / {len(s.val_x)} val images, seeds "
          f"{list(range(args.seeds))}, {args.threads} thread(s), {machine()}", flush=True)
    out = dict(student=args.student, epochs=args.epochs, train_images=n, val_images=len(s.val_x),
               machine=machine(), teacher=info.path, rows={})
    for name in args.rows:
        accs, t0 = [], time.time()
        for seed in range(args.seeds):
            cfg = TrainConfig(student=args.student, epochs=args.epochs, lr=0.05, batch_size=128, seed=seed,
                              **ROWS[name])
            accs.append(train_student(cfg, data)["val_acc"])
        mean, std = statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0
        out["rows"][name] = dict(val_acc=accs, mean=mean, std=std, s_per_run=(time.time() - t0) / args.seeds)
        print(f"  {name:22s} val_acc {mean:.4f} +- {std:.4f}  {[round(a, 4) for a in accs]}  "
              f"({out['rows'][name]['s_per_run']:.0f} s per run)", flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
