"""Would a teacher ensemble teach more? Validation accuracy of each model the project trained and of the
average of every subset of two or more of them (logits averaged, and probabilities at temperature T
averaged: the two ways a distillation target can be combined); with --weights, each pair's logit average at
weights w and 1 - w (accuracy and cross-entropy), to see whether weights chosen on validation beat equal
ones. No test data.

A member is a teacher checkpoint (`kdsweep teacher train`'s .pt with its JSON sidecar) or a student
checkpoint (a trial's checkpoint.pt or an export's student.pt), each named NAME=PATH.

    python bench/ensemble_val.py x56=models/teacher/resnet50_x56.pt s121=runs/.../checkpoint.pt ...
        [--temperature 4] [--weights 0.05] [--val-size 5000 --split-seed 0] [--json F]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from orchestrator.data import load_split  # noqa: E402
from orchestrator.machine import machine  # noqa: E402
from orchestrator.teacher.model import load_member  # noqa: E402
from trainables.infer import predict_logits  # noqa: E402


def member_logits(path: str, images) -> torch.Tensor:
    """(N, 10) logits of one member (a teacher or a student checkpoint, as teacher.ensemble takes) on uint8 images."""
    model, info = load_member(path)
    return predict_logits(model, images, info.preprocess)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("members", nargs="+", help="NAME=PATH, two or more")
    p.add_argument("--temperature", type=float, default=4.0, help="for the probability average")
    p.add_argument("--weights", type=float, default=None, help="step of each pair's weight grid (0 to 1)")
    p.add_argument("--val-size", type=int, default=5000, help="the sweep's data.val_size")
    p.add_argument("--split-seed", type=int, default=0, help="the sweep's data.split_seed")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    a = p.parse_args()
    pairs = [m.split("=", 1) for m in a.members]
    if len(pairs) < 2 or any(len(m) != 2 or not m[0] for m in pairs):
        p.error("give two or more members as NAME=PATH")
    if a.weights is not None and not 0 < a.weights <= 0.5:
        p.error("--weights is the grid's step: give a number in (0, 0.5], e.g. 0.05")
    split = load_split(a.data_dir, a.val_size, a.split_seed)
    y = torch.as_tensor(split.val_y)
    logits = {name: member_logits(path, split.val_x) for name, path in pairs}
    acc = lambda z: float((z.argmax(1) == y).float().mean())  # noqa: E731
    rows = [dict(members=[n], logit_avg=acc(z), prob_avg=acc(z)) for n, z in logits.items()]
    for r in range(2, len(logits) + 1):
        for names in itertools.combinations(logits, r):
            rows.append(
                dict(
                    members=list(names),
                    logit_avg=acc(sum(logits[n] for n in names) / r),
                    prob_avg=acc(sum(logits[n].div(a.temperature).softmax(1) for n in names) / r),
                )
            )
    print(f"{'members':40s} {'logit avg':>10s} {'prob avg (T ' + format(a.temperature, 'g') + ')':>16s}")
    for row in rows:
        print(f"{'+'.join(row['members']):40s} {row['logit_avg']:10.4f} {row['prob_avg']:16.4f}")
    weighted = []
    if a.weights is not None:
        steps = round(1 / a.weights)
        for m1, m2 in itertools.combinations(logits, 2):
            for i in range(steps + 1):
                z = i / steps * logits[m1] + (1 - i / steps) * logits[m2]
                nll = float(torch.nn.functional.cross_entropy(z, y))
                weighted.append(dict(members=[m1, m2], weight=i / steps, logit_avg=acc(z), nll=nll))
        print(f"\n{'weighted pair (weight of the first)':40s} {'logit avg':>10s} {'cross-entropy':>16s}")
        for row in weighted:
            name = f"{row['weight']:.2f} {row['members'][0]} + {row['members'][1]}"
            print(f"{name:40s} {row['logit_avg']:10.4f} {row['nll']:16.4f}")
    if a.json:
        out = dict(machine=machine(), members=dict(pairs), temperature=a.temperature, val_images=len(y), rows=rows)
        if weighted:
            out["weighted_pairs"] = weighted
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
