"""Would a teacher ensemble teach more? Validation accuracy of each model the project trained and of the
average of every subset of two or more of them (logits averaged, and probabilities at temperature T
averaged: the two ways a distillation target can be combined). No test data.

A member is a teacher checkpoint (`kdsweep teacher train`'s .pt with its JSON sidecar) or a student
checkpoint (a trial's checkpoint.pt or an export's student.pt), each named NAME=PATH.

    python bench/ensemble_val.py x56=models/teacher/resnet50_x56.pt s121=runs/.../checkpoint.pt ...
        [--temperature 4] [--val-size 5000 --split-seed 0] [--json F]
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
from orchestrator.teacher.model import load_member, predict_logits  # noqa: E402


def member_logits(path: str, images) -> torch.Tensor:
    """(N, 10) logits of one member (a teacher or a student checkpoint, as teacher.ensemble takes) on uint8 images."""
    model, info = load_member(path)
    return predict_logits(model, images, info.preprocess)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("members", nargs="+", help="NAME=PATH, two or more")
    p.add_argument("--temperature", type=float, default=4.0, help="for the probability average")
    p.add_argument("--val-size", type=int, default=5000, help="the sweep's data.val_size")
    p.add_argument("--split-seed", type=int, default=0, help="the sweep's data.split_seed")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    a = p.parse_args()
    pairs = [m.split("=", 1) for m in a.members]
    if len(pairs) < 2 or any(len(m) != 2 or not m[0] for m in pairs):
        p.error("give two or more members as NAME=PATH")
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
    if a.json:
        Path(a.json).write_text(
            json.dumps(dict(members=dict(pairs), temperature=a.temperature, val_images=len(y), rows=rows), indent=1)
            + "\n"
        )


if __name__ == "__main__":
    main()
