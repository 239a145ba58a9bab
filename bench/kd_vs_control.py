"""KD against its no-teacher control: the same student, data, epochs and seeds for every loss.

Rows: CE, CE + label smoothing 0.1, KD (Hinton) at T 1 / 2 / 4 (alpha 0.9), KD at T 1 with alpha 0.5 and
label smoothing 0.1 on the hard term (the release recipe's loss), logit-standardized KD (T 2, alpha 0.9) and
DKD (alpha 1, beta 8, T 4, KD weight warmed up over the first epoch). Teacher: the released ResNet-50's clean
logits from the cache (built once if missing). Prints mean +- std over the seeds of the last epoch's
validation accuracy (no selection by epoch) and writes every run to --out as JSON.

    python bench/kd_vs_control.py [--train-limit 15000] [--epochs 6] [--seeds 3] [--student res3_w16_d111]

`--table recipe` measures the release recipe's options instead (random erasing, weight EMA, both, neither)
under the release's loss (KD T 4, alpha 0.9), teacher (the 56-px one) and views (its logits per view):

    python bench/kd_vs_control.py --table recipe --teacher models/teacher/resnet50_x56.pt --views \
        --student res3_w16_32_76_d111 --epochs 15 --out bench/results/recipe_ablation.json
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

RECIPE_ROWS = {  # the release recipe's options, one at a time, under its loss (lr, warm-up, precision: the release's)
    "kd, no erasing, no EMA": dict(erase=0.0, ema=0.0),
    "kd + erasing 0.5": dict(erase=0.5, ema=0.0),
    "kd + EMA 0.999": dict(erase=0.0, ema=0.999),
    "kd + erasing 0.5 + EMA 0.999 (the release)": dict(erase=0.5, ema=0.999),
}
TABLES = {  # table -> (rows, the recipe every row shares)
    "losses": (ROWS, dict(lr=0.05, batch_size=128)),
    "recipe": (
        RECIPE_ROWS,
        dict(
            loss="kd",
            temperature=4.0,
            alpha=0.9,
            lr=0.1,
            warmup_frac=0.15,
            weight_decay=5e-4,
            batch_size=128,
            precision="auto",
        ),
    ),
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="models/teacher/resnet50.pt")
    p.add_argument("--student", default="res3_w16_d111")
    p.add_argument("--train-limit", type=int, default=15000, help="first N images of the seeded training split")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table", choices=list(TABLES), default="losses")
    p.add_argument("--rows", nargs="+", default=None, help="a subset of the table's rows (default: all)")
    p.add_argument("--views", action="store_true", help="the teacher's logits per view (else: clean images)")
    p.add_argument("--cache-dir", default="cache")
    p.add_argument("--out", default="bench/results/kd_vs_control.json")
    args = p.parse_args()
    from orchestrator import logs

    logs.setup()  # the product's progress lines on stdout
    torch.set_num_threads(args.threads)
    from orchestrator.data import load_split
    from orchestrator.machine import machine
    from orchestrator.teacher.cache import teacher_logits
    from orchestrator.teacher.model import load_teacher
    from trainables.augment import ViewSpec
    from trainables.config import TrainConfig
    from trainables.train import TrialData, train_student

    s = load_split()  # the full split, so the sweep's clean cache is a hit; then the first N images
    model, info = load_teacher(args.teacher)
    spec = ViewSpec(2, True)
    logits, forwards, _ = teacher_logits(
        model,
        info.sha256,
        info.preprocess,
        s.train_x,
        s.train_y,
        spec if args.views else ViewSpec(0, False),
        args.cache_dir,
    )
    n = args.train_limit or len(s.train_x)
    data = TrialData(
        s.train_x[:n],
        s.train_y[:n],
        s.val_x,
        s.val_y,
        spec,
        "views" if args.views else "clean",
        np.ascontiguousarray(logits[:n]),
    )
    rows, common = TABLES[args.table]
    print(
        f"{args.student}, {args.epochs} epochs, {n} train / {len(s.val_x)} val images, seeds "
        f"{list(range(args.seeds))}, {args.threads} thread(s), {machine()}",
        flush=True,
    )
    out = dict(
        table=args.table,
        student=args.student,
        epochs=args.epochs,
        train_images=n,
        val_images=len(s.val_x),
        machine=machine(),
        teacher=info.path,
        teacher_mode="views" if args.views else "clean",
        common=common,
        rows={},
    )
    for name in args.rows or list(rows):
        accs, t0 = [], time.time()
        for seed in range(args.seeds):
            cfg = TrainConfig(student=args.student, epochs=args.epochs, seed=seed, **{**common, **rows[name]})
            accs.append(train_student(cfg, data)["val_acc"])
        mean, std = statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0
        out["rows"][name] = dict(val_acc=accs, mean=mean, std=std, s_per_run=(time.time() - t0) / args.seeds)
        print(
            f"  {name:22s} val_acc {mean:.4f} +- {std:.4f}  {[round(a, 4) for a in accs]}  "
            f"({out['rows'][name]['s_per_run']:.0f} s per run)",
            flush=True,
        )
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
