"""Teacher modes: `live` (the teacher runs inside each trial) vs `views` (cached logits per view) vs `clean`.

Part 1, speed: the same sweep (by default the shape of configs/sweep.yaml: the
three seed students, kd, 8 epochs, shift 1 + flip, 2 trials at a time, 1 CPU
each, on --train-limit images) run through Ray Tune once with mode `live` and
once with `views`, in this process, one after the other; prints the wall time
of each, their ratio, and the one-time cache build separately (a fresh cache
directory, so the build is timed). ASHA's grace period is the epoch count, so
both runs do the same training.

Part 2, accuracy: one student trained with `clean`, `views` and `live` for the
same epochs, on the same data (by default the full 55,000-image train split),
for several seeds (plain PyTorch, no Ray); prints the validation accuracy
(5,000 images) of each mode, mean and spread over seeds; --bf16 adds views
trained with `train.precision: bf16`. The logit cache in
--cache-dir is reused when it matches (e.g. the one `make sweep` built).

    python bench/teacher_modes.py [--part speed|accuracy|both] [--teacher models/teacher/resnet50.pt]
Run it inside the loopback namespace on this machine:
    bash scripts/loopback.sh .venv/bin/python bench/teacher_modes.py ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.config import SweepConfig, TrainConfig, from_dict  # noqa: E402


def sweep_cfg(args, mode: str, storage: str, cache: str) -> SweepConfig:
    return from_dict(
        SweepConfig,
        dict(
            name=f"bench_{mode}",
            data=dict(train_limit=args.train_limit, val_limit=args.val_limit),
            teacher=dict(
                checkpoint=args.teacher, mean=args.teacher_mean, std=args.teacher_std, mode=mode, cache_dir=cache
            ),
            augment=dict(shift=args.shift, flip=True),
            train=dict(loss="kd", epochs=args.epochs, batch_size=128, lr=0.05),
            search_space=dict(student=dict(grid=args.students)),
            sweep=dict(max_concurrent_trials=2, cpus_per_trial=1, storage=storage, grace_period=args.epochs),
        ),
    )


def part_speed(args):
    from orchestrator.sweep.driver import run_sweep

    tmp = tempfile.mkdtemp(prefix="kdsweep-bench-")
    times, meta = {}, {}
    for mode in ("live", "views"):
        t0 = time.time()
        run_dir = run_sweep(sweep_cfg(args, mode, f"{tmp}/runs", f"{tmp}/cache"))
        times[mode] = time.time() - t0
        meta[mode] = json.loads((run_dir / "kdsweep_meta.json").read_text())
    build = meta["views"]["cache"]["build_s"]
    print(
        f"speed: {len(args.students)} trials x {args.epochs} epochs on {args.train_limit} images, "
        f"{(2 * args.shift + 1) ** 2 * 2} views"
    )
    print(f"  live : {times['live']:.0f} s wall")
    print(
        f"  views: {times['views']:.0f} s wall, of which cache build {build:.0f} s "
        f"({meta['views']['teacher_forwards']:,} teacher forwards)"
    )
    print(
        f"  ratio live/views {times['live'] / times['views']:.2f}x including the build, "
        f"{times['live'] / max(times['views'] - build, 1e-9):.2f}x with a warm cache"
    )


def part_accuracy(args):
    import numpy as np

    from orchestrator.data import load_split
    from orchestrator.teacher.cache import teacher_logits
    from orchestrator.teacher.model import load_teacher
    from trainables.augment import ViewSpec
    from trainables.train import TrialData, train_student

    s = load_split(train_limit=args.acc_train_limit)
    model, info = load_teacher(args.teacher, args.teacher_mean, args.teacher_std)
    spec = ViewSpec(args.shift, True)
    t0 = time.time()
    logits, forwards, cinfo = teacher_logits(
        model, info.sha256, info.preprocess, s.train_x, s.train_y, spec, args.cache_dir
    )
    print(f"views cache: {'hit' if cinfo['hit'] else 'built'} in {time.time() - t0:.0f} s ({forwards:,} forwards)")
    clean = np.ascontiguousarray(logits[:, spec.identity : spec.identity + 1])
    live = dict(model=model, mean=info.preprocess.mean, std=info.preprocess.std, channels=info.preprocess.channels)
    data = {
        "clean": TrialData(s.train_x, s.train_y, s.val_x, s.val_y, spec, "clean", clean),
        "views": TrialData(s.train_x, s.train_y, s.val_x, s.val_y, spec, "views", logits),
        "live": TrialData(s.train_x, s.train_y, s.val_x, s.val_y, spec, "live", teacher=live),
    }
    print(
        f"accuracy: {args.acc_student}, kd, {args.acc_epochs} epochs, {len(s.train_x)} train / "
        f"{len(s.val_x)} val images, seeds {list(range(args.seeds))}",
        flush=True,
    )
    runs = [(mode, d, "fp32") for mode, d in data.items()]
    if args.bf16:
        runs.append(("views, bf16 step", data["views"], "bf16"))
    for mode, d, precision in runs:
        t0 = time.time()
        accs = [
            train_student(
                TrainConfig(
                    student=args.acc_student, loss="kd", epochs=args.acc_epochs, lr=0.05, seed=seed, precision=precision
                ),
                d,
            )["val_acc"]
            for seed in range(args.seeds)
        ]
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(
            f"  {mode:16s}: val_acc {statistics.mean(accs):.4f} +- {spread:.4f}  {[round(a, 4) for a in accs]}"
            f"  ({(time.time() - t0) / args.seeds:.0f} s per run)",
            flush=True,
        )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="models/teacher/resnet50.pt")
    p.add_argument("--teacher-mean", type=float, default=None)
    p.add_argument("--teacher-std", type=float, default=None)
    p.add_argument("--shift", type=int, default=1)
    p.add_argument("--train-limit", type=int, default=5000, help="speed: training images")
    p.add_argument("--val-limit", type=int, default=1000, help="speed: validation images")
    p.add_argument("--epochs", type=int, default=8, help="speed: epochs per trial")
    p.add_argument(
        "--students",
        nargs="+",
        default=["starter_model_1", "starter_model_2", "starter_model_3"],
        help="speed: one trial per student",
    )
    p.add_argument("--acc-train-limit", type=int, default=None, help="accuracy: training images (default all)")
    p.add_argument("--acc-epochs", type=int, default=3, help="accuracy: epochs per run")
    p.add_argument("--acc-student", default="starter_model_2")
    p.add_argument("--seeds", type=int, default=3, help="accuracy: runs per mode")
    p.add_argument("--cache-dir", default="cache", help="accuracy: logit cache to reuse or fill")
    p.add_argument("--bf16", action="store_true", help="accuracy: also views with train.precision bf16")
    p.add_argument("--part", choices=["speed", "accuracy", "both"], default="both")
    args = p.parse_args()
    from orchestrator import logs

    logs.setup()  # the product's progress lines on stdout
    if args.part in ("speed", "both"):
        part_speed(args)
    if args.part in ("accuracy", "both"):
        part_accuracy(args)


if __name__ == "__main__":
    main()
