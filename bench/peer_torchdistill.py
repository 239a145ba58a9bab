"""The same distillation through torchdistill 1.1.5 and through kdsweep, on this machine, in one run.

One student (default `res3_w16_32_76_d111`), one teacher (default `models/teacher/resnet50.pt`), KD at the same
T and alpha, the same views (shift <= 2 px with a black fill, horizontal flip), SGD (Nesterov, momentum 0.9),
the same one-cycle schedule (the same function, per step), batch 128, no EMA, no test-time views, fp32 or bf16
as asked. The tools differ in what they are: torchdistill runs the teacher on every batch (its `DistillationBox`,
a DataLoader over a Dataset); kdsweep runs `train_student` twice, with the teacher live on every batch (the same
work) and with its logits cached once per image (`teacher.mode: clean`, what `make sweep` does; the cache's
time counts). Per run: images per second, wall time to
the teacher's validation accuracy, validation accuracy each epoch; medians over --seeds.

torchdistill is not a kdsweep dependency: it runs from its own environment, e.g.
    python3 -m venv /work/peer-venv && /work/peer-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 \\
        torchdistill==1.1.5 pyyaml
    PYTHONPATH=. /work/peer-venv/bin/python bench/peer_torchdistill.py --epochs 12 --seeds 3 \\
        --out bench/results/peer_torchdistill.json
(torchdistill's alpha weighs the labels' cross-entropy, kdsweep's the teacher's term: the script converts.)
With --out, each finished run is kept in OUT.partial: a killed run, rerun alike on the same machine, resumes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from orchestrator.data import load_split  # noqa: E402
from orchestrator.machine import machine  # noqa: E402
from orchestrator.run.io import atomic_write_text  # noqa: E402
from orchestrator.teacher.model import load_teacher  # noqa: E402
from students import create_student  # noqa: E402
from trainables.augment import ViewSpec, apply_views, to_input  # noqa: E402
from trainables.config import TrainConfig  # noqa: E402
from trainables.engine import autocast, resolve_precision  # noqa: E402
from trainables.infer import predict_logits  # noqa: E402
from trainables.optim import lr_factor  # noqa: E402
from trainables.train import TrialData, evaluate, train_student  # noqa: E402

SPEC = ViewSpec(2, True)


class Views(torch.utils.data.Dataset):
    """Training images as pixels in [0, 1], (1, 28, 28), each drawn through a random view (kdsweep's)."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = torch.as_tensor(x), torch.as_tensor(y)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        v = apply_views(self.x[i : i + 1], SPEC.random(1), SPEC)[0]
        return v.float().div(255).unsqueeze(0), self.y[i]


class Pixels(nn.Module):
    """A model that takes (N, 1, 28, 28) pixels in [0, 1]: its own preprocessing inside."""

    def __init__(self, model: nn.Module, mean: float, std: float, channels: int, size: int | None = None):
        super().__init__()
        self.model, self.mean, self.std, self.channels, self.size = model, mean, std, channels, size

    def forward(self, x):
        x = (x * 255).round().to(torch.uint8)[:, 0]
        return self.model(to_input(x, self.mean, self.std, self.channels, self.size))


def run_torchdistill(a, split, teacher, info, seed: int) -> dict:
    import torchdistill.core.interfaces.forward_proc  # noqa: F401  (registers the forward functions)
    from torchdistill.core.distillation import get_distillation_box

    torch.manual_seed(seed)
    student = create_student(a.student)
    steps = -(-len(split.train_x) // a.batch)
    total = a.epochs * steps
    cfg = {
        "num_epochs": a.epochs,
        "train_data_loader": {
            "dataset_id": "train",
            "sampler": {"class_or_func": torch.utils.data.RandomSampler, "kwargs": {}},
            "kwargs": {"batch_size": a.batch, "num_workers": 0},
        },
        "val_data_loader": {
            "dataset_id": "val",
            "sampler": {"class_or_func": torch.utils.data.SequentialSampler, "kwargs": {}},
            "kwargs": {"batch_size": 1000, "num_workers": 0},
        },
        "teacher": {"forward_proc": "forward_batch_only", "sequential": [], "requires_grad": False},
        "student": {"forward_proc": "forward_batch_only", "sequential": [], "requires_grad": True},
        "optimizer": {
            "key": "SGD",
            "kwargs": {"lr": a.lr, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        },
        "scheduler": {
            "key": "LambdaLR",
            "kwargs": {"lr_lambda": lambda s: lr_factor(s, total, "onecycle", 0.15)},
            "scheduling_step": 1,
        },
        "criterion": {
            "key": "WeightedSumLoss",
            "kwargs": {
                "sub_terms": {
                    "kd": {
                        "criterion": {
                            "key": "KDLoss",
                            "kwargs": {
                                "student_module_path": ".",
                                "student_module_io": "output",
                                "teacher_module_path": ".",
                                "teacher_module_io": "output",
                                "temperature": a.temperature,
                                "alpha": 1 - a.alpha,  # torchdistill's alpha weighs the cross-entropy
                                "reduction": "batchmean",
                            },
                        },
                        "weight": 1.0,
                    }
                }
            },
        },
    }
    pre = info.preprocess
    t = Pixels(teacher, pre.mean, pre.std, pre.channels, pre.size).eval()
    s = Pixels(student, 0.2860, 0.3530, student.in_chans)
    datasets = {"train": Views(split.train_x, split.train_y), "val": Views(split.val_x, split.val_y)}
    box = get_distillation_box(t, s, datasets, cfg, torch.device("cpu"), None, False, 1)
    cast = autocast(resolve_precision(a.precision, "cpu"), "cpu")
    curve, t0 = [], time.time()
    for epoch in range(a.epochs):
        box.pre_epoch_process(epoch=epoch)
        te, seen = time.time(), 0
        for xb, yb, supp in box.train_data_loader:
            with cast:
                loss = box.forward_process(xb, yb, supp)
            box.post_forward_process(loss=loss)
            seen += len(xb)
        train_s = time.time() - te
        acc = evaluate(student, torch.as_tensor(split.val_x), torch.as_tensor(split.val_y), 0.2860, 0.3530)[0]
        curve.append(
            dict(
                epoch=epoch + 1,
                val_acc=round(acc, 4),
                images_per_s=round(seen / train_s, 1),
                elapsed_s=round(time.time() - t0, 1),
            )
        )
        box.post_epoch_process()
        print(f"  torchdistill seed {seed} epoch {epoch + 1}: val {acc:.4f} {seen / train_s:.0f} img/s", flush=True)
    return dict(tool="torchdistill 1.1.5", mode="live teacher", seed=seed, curve=curve)


def run_kdsweep(a, split, teacher, info, seed: int, mode: str) -> dict:
    pre = info.preprocess
    logits, cache_s = None, 0.0
    if mode == "clean":  # the default's cache: the teacher once per training image, reused for every view
        t0 = time.time()
        logits = predict_logits(teacher, split.train_x, pre).numpy()[:, None].astype(np.float16)  # (N, 1, 10)
        cache_s = time.time() - t0
    tdict = dict(model=teacher, mean=pre.mean, std=pre.std, channels=pre.channels, size=pre.size)
    data = TrialData(
        split.train_x, split.train_y, split.val_x, split.val_y, SPEC, mode, logits, tdict if mode == "live" else None
    )
    cfg = TrainConfig(
        student=a.student,
        loss="kd",
        alpha=a.alpha,
        temperature=a.temperature,
        label_smoothing=0.0,
        optimizer="sgd",
        lr=a.lr,
        weight_decay=5e-4,
        schedule="onecycle",
        warmup_frac=0.15,
        epochs=a.epochs,
        batch_size=a.batch,
        ema=0.0,
        tta="none",
        seed=seed,
        precision=a.precision,
    )
    curve = []

    def report(m, state):
        curve.append(
            dict(
                epoch=m["epoch"],
                val_acc=round(m["val_acc"], 4),
                images_per_s=round(m["images_per_s"], 1),
                elapsed_s=round(m["elapsed_s"], 1),
            )
        )
        print(
            f"  kdsweep ({mode}) seed {seed} epoch {m['epoch']}: val {m['val_acc']:.4f} {m['images_per_s']:.0f} img/s",
            flush=True,
        )

    train_student(cfg, data, report=report)
    out = dict(tool="kdsweep", mode="live teacher" if mode == "live" else "cached clean logits", seed=seed, curve=curve)
    if mode == "clean":
        out["cache_s"] = round(cache_s, 1)
    return out


def summarize(runs: list[dict], target: float) -> dict:
    def to_target(c):
        hit = next((r for r in c if r["val_acc"] >= target), None)
        return hit["elapsed_s"] if hit else None

    med = statistics.median
    return dict(
        images_per_s=med(med(r["images_per_s"] for r in x["curve"]) for x in runs),
        final_val_acc=med(x["curve"][-1]["val_acc"] for x in runs),
        train_s=med(x["curve"][-1]["elapsed_s"] + x.get("cache_s", 0) for x in runs),
        s_to_teacher_val=[to_target(x["curve"]) for x in runs],
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="models/teacher/resnet50.pt")
    ap.add_argument("--student", default="res3_w16_32_76_d111")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--alpha", type=float, default=0.9, help="kdsweep's: the weight of the teacher's term")
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"))
    ap.add_argument("--train-limit", type=int, default=None)
    ap.add_argument("--val-limit", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    split = load_split(val_size=5000, seed=0, train_limit=a.train_limit, val_limit=a.val_limit)
    teacher, info = load_teacher(str(ROOT / a.teacher))
    teacher.eval()
    target = float((predict_logits(teacher, split.val_x, info.preprocess).argmax(1).numpy() == split.val_y).mean())
    print(f"{machine()}\nteacher val {target:.4f}; {len(split.train_x)} training images, {a.epochs} epochs", flush=True)
    runs = {"torchdistill": [], "kdsweep_live": [], "kdsweep_clean": []}
    partial = Path(a.out + ".partial") if a.out else None
    if partial and partial.exists():  # a killed run resumes: the runs it finished on this machine stand
        kept = json.loads(partial.read_text())
        if kept["machine"] == machine() and kept["args"] == vars(a):
            runs = kept["runs"]
            print(f"resuming: {sum(map(len, runs.values()))} runs kept from {partial}", flush=True)
    steps = {
        "torchdistill": lambda seed: run_torchdistill(a, split, teacher, info, seed),
        "kdsweep_live": lambda seed: run_kdsweep(a, split, teacher, info, seed, "live"),
        "kdsweep_clean": lambda seed: run_kdsweep(a, split, teacher, info, seed, "clean"),
    }
    for seed in range(a.seeds):  # interleaved, so that a drift of the machine touches all three alike
        for key, step in steps.items():
            if len(runs[key]) > seed:
                continue
            runs[key].append(step(seed))
            if partial:
                atomic_write_text(partial, json.dumps(dict(machine=machine(), args=vars(a), runs=runs)))
    summary = {k: summarize(v, target) for k, v in runs.items()}
    ratio = summary["torchdistill"]["train_s"] / summary["kdsweep_clean"]["train_s"]
    out = dict(
        machine=machine(),
        date=time.strftime("%Y-%m-%d"),
        args=vars(a),
        teacher_val_acc=round(target, 4),
        summary=summary,
        wall_ratio_torchdistill_over_kdsweep_clean=round(ratio, 2),
        runs=runs,
    )
    print(json.dumps(summary, indent=1))
    if a.out:
        atomic_write_text(Path(a.out), json.dumps(out, indent=1) + "\n")
        partial.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
