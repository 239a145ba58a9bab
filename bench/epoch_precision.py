"""Seconds per epoch of `make sweep`'s KD finalist in fp32 and in bf16, two trials side by side on one core
each (as the search and the final stage run them), and the final epochs `final.minutes` grants each.

    bash scripts/loopback.sh .venv/bin/python bench/epoch_precision.py   # ~3 min on 2 cores

A CPU without native bf16 (avx512_bf16 / AMX) trains in fp32 (`precision: auto`); this machine has both,
so the fp32 figure is what the same cores do without bf16, not what another CPU does.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def one_epoch(precision: str, seed: int, q) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from orchestrator.config import load_sweep_config, to_dict
    from orchestrator.data import load_split
    from orchestrator.teacher.cache import teacher_logits
    from orchestrator.teacher.model import load_teacher
    from trainables.augment import ViewSpec
    from trainables.config import TrainConfig
    from trainables.train import TrialData, train_student

    cfg = load_sweep_config(ROOT / "configs" / "sweep.yaml")
    kd = next(t for t in cfg.trials if t.get("loss") == "kd")
    s = load_split()
    model, info = load_teacher(str(ROOT / cfg.teacher.checkpoint))
    logits, _, _ = teacher_logits(
        model, info.sha256, info.preprocess, s.train_x, s.train_y, ViewSpec(0, False), str(ROOT / cfg.teacher.cache_dir)
    )
    del model
    data = TrialData(
        s.train_x,
        s.train_y,
        s.val_x,
        s.val_y,
        ViewSpec(cfg.augment.shift, cfg.augment.flip),
        "clean",
        np.ascontiguousarray(logits),
    )
    tcfg = TrainConfig(**{**to_dict(cfg.train), **kd, "epochs": cfg.final.epochs, "seed": seed, "precision": precision})
    seen = []
    try:
        train_student(tcfg, data, report=lambda m, state: (seen.append(m), _stop()))
    except StopIteration:
        pass
    q.put(dict(precision=seen[0]["precision"], seconds=seen[0]["elapsed_s"], images_per_s=seen[0]["images_per_s"]))


def _stop():
    raise StopIteration  # one epoch is all we time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", default="bench/results/epoch_precision.json")
    args = p.parse_args()
    from orchestrator.config import load_sweep_config
    from orchestrator.machine import machine
    from orchestrator.sweep.final_budget import fit_final_epochs

    cfg = load_sweep_config(ROOT / "configs" / "sweep.yaml")
    ctx = mp.get_context("spawn")
    runs = {"fp32": [], "bf16": []}
    for r in range(args.repeats):
        for precision in runs:
            q = ctx.Queue()
            procs = [ctx.Process(target=one_epoch, args=(precision, seed, q)) for seed in (0, 1)]
            for pr in procs:
                pr.start()
            got = [q.get() for _ in procs]
            for pr in procs:
                pr.join()
            runs[precision] += got
            print(
                f"repeat {r + 1}: {precision}: " + ", ".join(f"{g['seconds']:.1f} s ({g['precision']})" for g in got),
                flush=True,
            )
    out = dict(
        command="bash scripts/loopback.sh .venv/bin/python bench/epoch_precision.py",
        machine=machine(),
        trials_side_by_side=2,
        threads_per_trial=1,
        final=dict(epochs=cfg.final.epochs, minutes=cfg.final.minutes, top=cfg.final.top),
        results={},
    )
    for precision, got in runs.items():
        sec = statistics.median(g["seconds"] for g in got)
        epochs = fit_final_epochs(
            cfg.final.epochs, cfg.final.minutes, [sec] * cfg.final.top, cfg.final.seeds, cfg.sweep.max_concurrent_trials
        )
        out["results"][precision] = dict(
            seconds_per_epoch=sec, runs=got, final_epochs=epochs, final_minutes_est=round(epochs * sec / 60, 1)
        )
        print(
            f"{precision}: {sec:.1f} s an epoch (median of {len(got)}), final stage: {epochs} epochs, "
            f"~{epochs * sec / 60:.1f} min",
            flush=True,
        )
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
