"""The Ray Tune face of `train_student`: config dict in, `tune.report` + `tune.Checkpoint` out.

Ray API calls live here and in orchestrator/sweep.py only.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from ray import tune

from trainables.config import TrainConfig
from trainables.train import TrialData, train_student

CKPT_FILE = "checkpoint.pt"


def trial_config(config: dict, base: dict) -> TrainConfig:
    """A trial's settings: the sweep's base train settings + its explicit variant (`_variant`) + sampled keys.

    The driver has already validated every value of the search space with the strict YAML loader."""
    sampled = {k: v for k, v in config.items() if k != "_variant"}
    return TrainConfig(**{**base, **config.get("_variant", {}), **sampled})


def distill_trainable(config: dict, data: TrialData, base: dict, threads: int, use_gpu: bool):
    """One Tune trial. `data` (arrays, teacher logits) comes from the object store via `tune.with_parameters`."""
    torch.set_num_threads(threads)
    cfg = trial_config(config, base)
    resume = None
    ckpt = tune.get_checkpoint()
    if ckpt is not None:  # a retried or restored trial continues from its last epoch
        with ckpt.as_directory() as d:
            resume = torch.load(Path(d) / CKPT_FILE, map_location="cpu", weights_only=True)

    import ray
    node = ray.get_runtime_context().get_node_id()[:12]   # which node ran this epoch (results table, node loss)

    def report(metrics: dict, state: dict):
        metrics = {**metrics, "node": node}
        with tempfile.TemporaryDirectory() as d:
            torch.save(state, os.path.join(d, CKPT_FILE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
    last = {"epoch": resume["epoch"] if resume else 0}

    def report_and_remember(metrics: dict, state: dict):
        last["epoch"] = metrics["epoch"]
        report(metrics, state)

    try:
        train_student(cfg, data, report=report_and_remember, resume=resume, device=device)
    except FloatingPointError as e:
        # A NaN/inf loss is a property of the settings, not a crash: retrying from the checkpoint would
        # diverge again. End the trial with its reason recorded (val_acc 0: it cannot be selected).
        tune.report({"epoch": last["epoch"] + 1, "val_acc": 0.0, "diverged": str(e)})
