"""What rounding pruned channels to multiples of 8 costs: the same trained source pruned to the same target
with Torch-Pruning's round_to 1 (any channel count) and 8 (the default since issue 22), each fine-tuned alike.

Per seed: a res3 (24, 48, 96) (173,842 params) trained --source-epochs on the first --train-limit images
(KD T 1, alpha 0.5, label smoothing 0.1 against the released teacher's clean logits, one-cycle SGD), then
pruned to at most --target parameters twice (round_to 1 and 8, magnitude importance), each fine-tuned
--epochs. Prints and writes validation accuracy (last epoch), parameters, the channel widths left, and
whether a layer of the oneDNN AVX2 bug's shape remains (trainables/layout.py). No test data.

    python experiments/prune_round_to/run.py [--seeds 2] [--train-limit 15000] [--source-epochs 3] [--epochs 4]
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default=str(ROOT / "models/teacher/resnet50.pt"))
    p.add_argument("--train-limit", type=int, default=15000)
    p.add_argument("--source-epochs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--target", type=int, default=100_000)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = p.parse_args()
    from orchestrator import logs
    logs.setup()   # the product's progress lines on stdout
    from orchestrator.data import load_split
    from orchestrator.machine import machine
    from orchestrator.teacher.cache import teacher_logits
    from orchestrator.teacher.model import load_teacher
    from students import create_student
    from trainables.augment import ViewSpec
    from trainables.config import TrainConfig
    from trainables.layout import hits_onednn_1x1_bug
    from trainables.train import TrialData, train_student

    s = load_split()
    model, info = load_teacher(args.teacher)
    logits, _, _ = teacher_logits(model, info.sha256, info.preprocess, s.train_x, s.train_y, ViewSpec(0, False),
                                  ROOT / "cache")
    n = args.train_limit
    data = TrialData(s.train_x[:n], s.train_y[:n], s.val_x, s.val_y, ViewSpec(2, True), "clean",
                     np.ascontiguousarray(logits[:n]))
    loss = dict(loss="kd", temperature=1.0, alpha=0.5, label_smoothing=0.1, lr=0.1, warmup_frac=0.15)
    print(machine(), flush=True)
    rows = {"1": [], "8": []}
    for seed in range(args.seeds):
        last = {}
        train_student(TrainConfig(student="res3", student_kwargs={"widths": [24, 48, 96]}, epochs=args.source_epochs,
                                  seed=seed, **loss), data, report=lambda m, st: last.update(st=copy.deepcopy(st)))
        with tempfile.TemporaryDirectory() as d:
            src = Path(d) / "source.pt"
            torch.save(last["st"], src)
            for r in (1, 8):
                t0, final = time.time(), {}
                m = train_student(TrainConfig(prune_from=str(src), prune_to=args.target, prune_round_to=r,
                                              epochs=args.epochs, seed=seed, **loss), data,
                                  report=lambda met, st: final.update(st=copy.deepcopy(st)))
                pruned = create_student(final["st"]["student"], **final["st"]["student_kwargs"])
                convs = [c for c in pruned.modules() if isinstance(c, torch.nn.Conv2d)]
                rows[str(r)].append(dict(seed=seed, val_acc=m["val_acc"], params=m["params"],
                                         widths=sorted({c.out_channels for c in convs}),
                                         bug_shaped_layers=sum(hits_onednn_1x1_bug(c) for c in convs),
                                         wall_s=round(time.time() - t0, 1), pruned=m["pruned"]))
                x = rows[str(r)][-1]
                print(f"seed {seed} round_to {r}: val {x['val_acc']:.4f}, {x['params']:,} params, widths "
                      f"{x['widths']}, bug-shaped layers {x['bug_shaped_layers']}, {x['wall_s']:.0f} s", flush=True)
    summary = {r: dict(val_acc_mean=statistics.mean(x["val_acc"] for x in v),
                       params_mean=statistics.mean(x["params"] for x in v)) for r, v in rows.items()}
    for r, v in summary.items():
        print(f"round_to {r}: val {v['val_acc_mean']:.4f} (mean of {args.seeds}), {v['params_mean']:,.0f} params")
    out = dict(machine=machine(), date=time.strftime("%Y-%m-%d"), args=vars(args) | {"teacher": "models/teacher/resnet50.pt",
               "out": Path(args.out).name}, rows=rows, summary=summary)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
