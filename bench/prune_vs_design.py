"""Pruned against designed-at-budget students, at the same parameter budget and the same total training time.

designed: res3_w16_32_76_d111 (96,906 params) trained for --epochs epochs; its wall time is the budget.
pruned:   a wider res3 (--source-widths, ~174k params) trained for about half of that time (its epochs
          sized by the two students' measured training speeds), pruned to at most 100,000 parameters
          (Torch-Pruning, --importance), then fine-tuned for as many epochs as fill the rest of the
          designed arm's wall time (at least one; the printed wall times say how close it came).
Both: the same data (the first --train-limit images of the seeded split), loss (KD T 1, alpha 0.5, label
smoothing 0.1 against the released teacher's clean logits), one-cycle SGD, seeds 0..--seeds-1.
Prints validation accuracy (last epoch), test accuracy (measured once at the end, never used to choose),
parameters and wall time; writes --out.

    python bench/prune_vs_design.py [--train-limit 15000] [--epochs 8] [--seeds 2] [--importance magnitude]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="models/teacher/resnet50.pt")
    p.add_argument("--train-limit", type=int, default=15000)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--source-widths", type=int, nargs=3, default=[24, 48, 96])
    p.add_argument("--importance", choices=["magnitude", "taylor"], default="magnitude")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench/results/prune_vs_design.json")
    args = p.parse_args()
    from orchestrator import logs

    logs.setup()  # the product's progress lines on stdout
    torch.set_num_threads(args.threads)
    from orchestrator.data import load_split, load_test
    from orchestrator.machine import machine
    from orchestrator.release.deploy import Deployable, predict
    from orchestrator.teacher.cache import teacher_logits
    from orchestrator.teacher.model import load_teacher
    from students import rebuild
    from trainables.augment import ViewSpec
    from trainables.config import TrainConfig
    from trainables.speed import train_speed
    from trainables.train import TrialData, train_student

    s = load_split()
    model, info = load_teacher(args.teacher)
    logits, _, _ = teacher_logits(
        model, info.sha256, info.preprocess, s.train_x, s.train_y, ViewSpec(0, False), "cache"
    )
    n = args.train_limit
    data = TrialData(
        s.train_x[:n], s.train_y[:n], s.val_x, s.val_y, ViewSpec(2, True), "clean", np.ascontiguousarray(logits[:n])
    )
    test_x, test_y = load_test()
    loss = dict(loss="kd", temperature=1.0, alpha=0.5, label_smoothing=0.1, lr=0.1, warmup_frac=0.15)

    def run(cfg):
        last = {}
        t0 = time.time()
        m = train_student(cfg, data, report=lambda met, st: last.update(state=copy.deepcopy(st)))
        wall = time.time() - t0
        st = last["state"]
        deploy = Deployable(rebuild(st), cfg.mean, cfg.std).eval()
        test = float((predict(deploy, test_x).argmax(1).numpy() == test_y).mean())
        return m, st, wall, test

    rows = {"designed": [], "pruned": []}
    print(f"{machine()}; {n} train images, {args.epochs} epochs budget, seeds {list(range(args.seeds))}", flush=True)
    for seed in range(args.seeds):
        m, _, wall, test = run(TrainConfig(student="res3_w16_32_76_d111", epochs=args.epochs, seed=seed, **loss))
        rows["designed"].append(dict(val_acc=m["val_acc"], test_acc=test, params=m["params"], wall_s=wall))
        per_epoch = wall / args.epochs
        slower = train_speed("res3_w16_32_76_d111") / train_speed("res3", widths=args.source_widths)
        src_epochs = max(1, round(args.epochs / 2 / slower))  # about half the designed arm's wall time
        sm, sst, swall, _ = run(
            TrainConfig(
                student="res3", student_kwargs={"widths": args.source_widths}, epochs=src_epochs, seed=seed, **loss
            )
        )
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "source.pt"
            torch.save(sst, path)
            ft_epochs = max(1, round((wall - swall) / per_epoch))
            pm, _, pwall, ptest = run(
                TrainConfig(prune_from=str(path), prune_importance=args.importance, epochs=ft_epochs, seed=seed, **loss)
            )
        rows["pruned"].append(
            dict(
                val_acc=pm["val_acc"],
                test_acc=ptest,
                params=pm["params"],
                wall_s=swall + pwall,
                source_params=sm["params"],
                source_epochs=src_epochs,
                fine_tune_epochs=ft_epochs,
                pruned=pm["pruned"],
            )
        )
        for k in rows:
            r = rows[k][-1]
            print(
                f"  seed {seed} {k:8s} val {r['val_acc']:.4f} test {r['test_acc']:.4f} params {r['params']:,} "
                f"wall {r['wall_s']:.0f} s"
                + (
                    f" (source {r['source_params']:,} params x {r['source_epochs']} "
                    f"epochs, fine-tune {r['fine_tune_epochs']})"
                    if k == "pruned"
                    else ""
                ),
                flush=True,
            )
    out = dict(machine=machine(), train_images=n, epochs=args.epochs, importance=args.importance, rows=rows)
    for k, rs in rows.items():
        v, t = [r["val_acc"] for r in rs], [r["test_acc"] for r in rs]
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        print(
            f"{k:8s}: val {statistics.mean(v):.4f} +- {sd:.4f}, test {statistics.mean(t):.4f}, "
            f"wall {statistics.mean(r['wall_s'] for r in rs):.0f} s"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
