"""Validation accuracy of the released student (models/student/student.pt) under sets of test-time views:
each view as trainables.augment.apply_views makes it (mirror, then shift by dy, dx pixels, zero fill).
    .venv/bin/python experiments/tta_views/run.py > experiments/tta_views/results.json"""

import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from orchestrator.data import load_split  # noqa: E402
from orchestrator.machine import machine  # noqa: E402
from students.registry import rebuild  # noqa: E402
from trainables.augment import ViewSpec, apply_views, to_input  # noqa: E402

torch.set_num_threads(1)
ck = torch.load(ROOT / "models/student/student.pt", weights_only=False)
model = rebuild(ck).eval()
mean, std = ck["config"]["mean"], ck["config"]["std"]
split = load_split(val_size=5000, seed=0)
x, y = torch.as_tensor(split.val_x), torch.as_tensor(split.val_y)
spec = ViewSpec(1, True)
ids = {tuple(int(v) for v in spec.decode(torch.tensor([i]))): i for i in range(spec.n_views)}
cache: dict = {}


def logits(dy, dx, f):
    if (dy, dx, f) not in cache:
        with torch.no_grad():
            v = apply_views(x, torch.full((len(x),), ids[(dy, dx, f)]), spec)
            cache[(dy, dx, f)] = model(to_input(v, mean, std, model.in_chans))
    return cache[(dy, dx, f)]


def pair(dy, dx):
    return (logits(dy, dx, 0) + logits(dy, dx, 1)) / 2


SETS = {
    "none (1 view)": lambda: logits(0, 0, 0),
    "flip (2)": lambda: pair(0, 0),
    "flip_shift: airbench's six, diagonal, 1/2 1/4 1/4 (6)": lambda: 0.5 * pair(0, 0)
    + 0.25 * pair(-1, -1)
    + 0.25 * pair(1, 1),
    "diagonal, equal weights (6)": lambda: (pair(0, 0) + pair(-1, -1) + pair(1, 1)) / 3,
    "anti-diagonal, 1/2 1/4 1/4 (6)": lambda: 0.5 * pair(0, 0) + 0.25 * pair(-1, 1) + 0.25 * pair(1, -1),
    "horizontal +-1 (6)": lambda: (pair(0, 0) + pair(0, 1) + pair(0, -1)) / 3,
    "vertical +-1 (6)": lambda: (pair(0, 0) + pair(1, 0) + pair(-1, 0)) / 3,
    "all 18 (+-1 px both axes, flipped)": lambda: sum(pair(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)) / 9,
}
out = dict(machine=machine(), date=time.strftime("%Y-%m-%d"), model="models/student/student.pt", val_images=len(y))
out["val_acc"] = {k: round(float((f().argmax(1) == y).float().mean()), 4) for k, f in SETS.items()}
print(json.dumps(out, indent=1))
