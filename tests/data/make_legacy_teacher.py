"""Writes tests/data/legacy_teacher_chunk.pt: the resumable state `fit_teacher` saved after the first epoch of
two of a CIFAR-style ResNet-20 on 256 training images (a time-boxed chunk that stopped there), as the kdsweep
checkout it runs from wrote it (run it from an older checkout to pin that format):

    cd <older checkout> && python <this checkout>/tests/data/make_legacy_teacher.py <this checkout>/tests/data
"""

import sys
from pathlib import Path

import torch

here, out = Path.cwd(), Path(sys.argv[1]).resolve()
sys.path.insert(0, str(here))
from orchestrator.config import from_dict  # noqa: E402
from orchestrator.data import load_split  # noqa: E402
from orchestrator.teacher.config import TeacherTrainConfig  # noqa: E402
from trainables.teacher_train import fit_teacher  # noqa: E402

CFG = {"name": "legacy", "arch": "cifar_resnet20", "optim": {"epochs": 2, "batch_size": 64}, "precision": "fp32"}
torch.set_num_threads(1)
s = load_split(val_size=5000, seed=0, train_limit=256, val_limit=64)
saved = []
fit_teacher(
    from_dict(TeacherTrainConfig, CFG),
    s.train_x,
    s.train_y,
    s.val_x,
    s.val_y,
    save=lambda state, metrics, best: saved.append(state),
    stop_after_s=0.0,
)
assert len(saved) == 1 and saved[0]["epoch"] == 0
torch.save(saved[0], out / "legacy_teacher_chunk.pt")
print(f"wrote {out / 'legacy_teacher_chunk.pt'}")
