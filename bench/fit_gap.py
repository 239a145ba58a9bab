"""Underfitting or overfitting? An exported student's accuracy on its own clean training images beside
its validation accuracy (the same seeded split the sweep used; no test data).

A small gap with training accuracy far from 100% says the student cannot fit what it is taught
(capacity-bound: regularization will not help, capacity per parameter might); a large gap says it
overfits (augmentation and regularization might).

    python bench/fit_gap.py [--student models/student/student.pt] [--val-size 5000 --split-seed 0] [--json F]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from orchestrator.data import load_split  # noqa: E402
from orchestrator.release.deploy import deployable, predict  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--student", default="models/student/student.pt", help="a student.pt written by export")
    p.add_argument("--val-size", type=int, default=5000, help="the sweep's data.val_size")
    p.add_argument("--split-seed", type=int, default=0, help="the sweep's data.split_seed")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    a = p.parse_args()
    state = torch.load(a.student, map_location="cpu", weights_only=False)
    model = deployable(state)
    split = load_split(a.data_dir, a.val_size, a.split_seed)
    out = dict(student=state["student"], checkpoint=a.student)
    with torch.no_grad():
        for name, x, y in [("train", split.train_x, split.train_y), ("val", split.val_x, split.val_y)]:
            out[f"{name}_acc"] = float((predict(model, x).argmax(1).numpy() == y).mean())
            out[f"{name}_images"] = len(y)
    out["gap"] = out["train_acc"] - out["val_acc"]
    print(
        f"{out['student']}: clean train acc {out['train_acc']:.4f} ({out['train_images']:,} images), "
        f"val acc {out['val_acc']:.4f} ({out['val_images']:,}), gap {out['gap']:+.4f}"
    )
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
