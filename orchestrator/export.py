"""Export the best trial of a sweep as a ready-to-ship student.

Selection is by validation accuracy over every kept checkpoint in the run
directory (no Ray needed, works on an interrupted sweep). Test accuracy is
measured here, once, and never fed back into selection.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from orchestrator.data import load_test
from students import BUDGET, count_params, create_student

CKPT_FILE = "checkpoint.pt"


class Deployable(nn.Module):
    """(N, 1, 28, 28) pixels in [0, 1] -> (N, 10) logits; normalization and channel repetition inside."""

    def __init__(self, student: nn.Module, mean: float, std: float):
        super().__init__()
        self.student = student
        self.mean, self.std, self.channels = float(mean), float(std), student.in_chans

    def forward(self, x):
        x = (x - self.mean) / self.std
        return self.student(x.expand(-1, self.channels, -1, -1))


def find_checkpoints(run_dir: Path) -> list[Path]:
    return sorted(Path(run_dir).rglob(CKPT_FILE))


def best_checkpoint(run_dir: Path) -> tuple[Path, dict]:
    """The kept checkpoint with the highest validation accuracy (ties: fewer epochs, then path)."""
    best = None
    for p in find_checkpoints(run_dir):
        state = torch.load(p, map_location="cpu", weights_only=True)
        key = (state["metrics"]["val_acc"], -state["epoch"])
        if best is None or key > best[0]:
            best = (key, p, state)
    if best is None:
        raise FileNotFoundError(f"no {CKPT_FILE} under {run_dir}; is it a kdsweep run directory (runs/<name>)? "
                                "Run `kdsweep sweep` first")
    return best[1], best[2]


def rebuild(state: dict) -> nn.Module:
    model = create_student(state["student"], **state["student_kwargs"])
    model.load_state_dict(state["state_dict"])
    return model.eval()


def export_program(model: Deployable, path: Path):
    """torch.export with a dynamic batch dimension, saved as .pt2."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    ep = torch.export.export(model.eval(), (torch.rand(4, 1, 28, 28),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(ep, str(path))


@torch.no_grad()
def predict(model: nn.Module, images_u8: np.ndarray, batch_size: int = 1000) -> torch.Tensor:
    x = torch.as_tensor(images_u8).float().div_(255).unsqueeze(1)   # (N, 1, 28, 28) in [0, 1]
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def export(run_dir: Path, out: Path, data_dir=None, budget: int = BUDGET, log=print) -> dict:
    import torchinfo
    from orchestrator.teacher_train import machine
    t0 = time.time()
    run_dir, out = Path(run_dir), Path(out)
    ckpt, state = best_checkpoint(run_dir)
    student = rebuild(state)
    params = count_params(student)
    if params > budget:
        raise ValueError(f"refusing to export {state['student']}: {params:,} parameters > budget {budget:,}")
    cfg = state["config"]
    deploy = Deployable(student, cfg["mean"], cfg["std"]).eval()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(dict(student=state["student"], student_kwargs=state["student_kwargs"], config=cfg,
                    state_dict=student.state_dict(), metrics=state["metrics"]), out / "student.pt")
    export_program(deploy, out / "student.pt2")
    summary = torchinfo.summary(student, input_size=(1, student.in_chans, 28, 28), verbose=0, device="cpu",
                                col_names=("output_size", "num_params"))
    (out / "summary.txt").write_text(f"{state['student']} {state['student_kwargs']}\n{summary}\n")
    test_x, test_y = load_test(data_dir)
    logits = predict(deploy, test_x)
    pred = logits.argmax(1).numpy()
    test_acc = float((pred == test_y).mean())
    with open(out / "submission.csv", "w") as f:
        f.write("id,label\n")
        f.writelines(f"{i},{int(p)}\n" for i, p in enumerate(pred))
    meta_path = run_dir / "kdsweep_meta.json"
    run_meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    teacher = run_meta.get("teacher") or {}
    metrics = dict(student=state["student"], student_kwargs=state["student_kwargs"], params=params,
                   val_acc=state["metrics"]["val_acc"], test_acc=test_acc, epoch=state["epoch"],
                   trial_checkpoint=str(ckpt.relative_to(run_dir)), loss=cfg["loss"],
                   train_precision=state["metrics"].get("precision", cfg.get("precision", "fp32")),
                   teacher_val_acc=teacher.get("val_acc"), teacher_sha256=teacher.get("sha256"),
                   teacher_mode=teacher.get("mode"), teacher_forwards=run_meta.get("teacher_forwards"),
                   sweep_wall_s=run_meta.get("wall_s"), export_wall_s=time.time() - t0, machine=machine())
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    from orchestrator.report import write_report
    write_report(run_dir, out, metrics, run_meta)
    log(f"exported {state['student']} ({params:,} params) val_acc {metrics['val_acc']:.4f} "
        f"test_acc {test_acc:.4f} -> {out}")
    return metrics
