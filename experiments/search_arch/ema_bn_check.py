"""The check that found the EMA/BN mismatch (see README.md, "A false start"): one checkpoint of a trial,
evaluated three ways. Ran once, 2026-12-07, on c001's epoch-30 checkpoint of the discarded first start (its run
directory was not kept): EMA + copied BN 0.8174 flip, live weights 0.9296, EMA + recomputed BN 0.9368.

    .venv/bin/python experiments/search_arch/ema_bn_check.py runs/<name>/<trial>/checkpoint_<k>/checkpoint.pt
"""
import sys
import torch
import copy
from students import create_student
from orchestrator.data import load_split
from trainables.train import evaluate_tta
from trainables.augment import to_input
st = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
print(st["epoch"], st["student"], st["student_kwargs"])
sp = load_split(train_limit=5000)
vx, vy = torch.as_tensor(sp.val_x), torch.as_tensor(sp.val_y)
m = create_student(st["student"], **st["student_kwargs"]); m.load_state_dict(st["state_dict"])
print("EMA, copied BN:", evaluate_tta(m, vx, vy, 0.286, 0.353))
r = create_student(st["student"], **st["student_kwargs"]); r.load_state_dict(st["train_state_dict"])
print("raw:", evaluate_tta(r, vx, vy, 0.286, 0.353))
# EMA weights with BN statistics recomputed on training images
m2 = copy.deepcopy(m)
for mod in m2.modules():
    if isinstance(mod, torch.nn.BatchNorm2d):
        mod.reset_running_stats()
        mod.momentum = None
m2.train()
tx = torch.as_tensor(sp.train_x)
with torch.no_grad():
    for i in range(0, 5000, 250):
        m2(to_input(tx[i:i+250], 0.286, 0.353, 1))
print("EMA, BN recomputed:", evaluate_tta(m2, vx, vy, 0.286, 0.353))
