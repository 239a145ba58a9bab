"""The Ray Tune face of `train_student`: config dict in, `tune.report` + `tune.Checkpoint` out.

Ray API calls live here, in the sweep driver and in the teacher's cluster code (orchestrator/).
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path

import torch
from ray import tune

from trainables.config import CKPT_FILE, FATAL_FILE, TrainConfig, merge_train, resume_key, to_report
from trainables.train import TrialData, load_resume, train_student

_fatal_log = None  # kept open for the worker's lifetime: faulthandler writes to it as it dies


def _record_fatal_signals():
    """Have faulthandler write a native crash (SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL) of this worker into
    the trial's directory: Ray's error then says only that the worker died, this file says how and where.
    Local (or shared-mount) storage only; on an object store the error's first line is all there is."""
    import faulthandler

    global _fatal_log
    st = tune.get_context().get_storage()
    if type(st.storage_filesystem).__name__ != "LocalFileSystem":
        return
    if _fatal_log is not None:
        _fatal_log.close()
    Path(st.trial_fs_path).mkdir(parents=True, exist_ok=True)
    _fatal_log = open(Path(st.trial_fs_path) / FATAL_FILE, "a")
    faulthandler.enable(_fatal_log)


def _close_fatal_log():
    """The trial's Python code has ended (returned or raised, so Tune records why): no crash file needed."""
    import faulthandler

    global _fatal_log
    if _fatal_log is None:
        return
    faulthandler.disable()
    _fatal_log.close()
    path, _fatal_log = Path(_fatal_log.name), None
    if path.is_file() and path.stat().st_size == 0:
        path.unlink()


def trial_config(config: dict, base: dict) -> TrainConfig:
    """A trial's settings: the sweep's base train settings + its explicit variant (`_variant`) + sampled keys.

    The driver has already validated every value of the search space with the strict YAML loader."""
    sampled = {k: v for k, v in config.items() if k != "_variant"}
    return TrainConfig(**merge_train(base, config.get("_variant", {}), sampled))


def distill_trainable(
    config: dict, data: TrialData, base: dict, threads: int, use_gpu: bool, resumes: dict[str, bytes] | None = None
):
    """One Tune trial. `data` (arrays, teacher logits) comes from the object store via `tune.with_parameters`;
    so do `resumes`: checkpoints (bytes, by resume_key of the trial's config) that a trial with none of its own
    goes on from (a search's ledger keeps them for the trials a chunk left mid-run)."""
    torch.set_num_threads(threads)
    _record_fatal_signals()
    try:
        _distill(config, data, base, use_gpu, resumes or {})
    finally:
        _close_fatal_log()


def _distill(config: dict, data: TrialData, base: dict, use_gpu: bool, resumes: dict[str, bytes]):
    cfg = trial_config(config, base)
    resume = None
    ckpt = tune.get_checkpoint()
    if ckpt is not None:  # a retried or restored trial continues from its last epoch
        with ckpt.as_directory() as d:
            resume = load_resume(Path(d) / CKPT_FILE)
    elif (blob := resumes.get(resume_key(config))) is not None:
        resume = load_resume(io.BytesIO(blob))  # None where torn: the trial starts over

    import ray

    node = ray.get_runtime_context().get_node_id()[:12]  # which node ran this epoch (results table, node loss)
    device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
    gpus = ",".join(str(g) for g in ray.get_gpu_ids())  # the GPU(s) Ray gave this trial (a share of one)
    started = time.time()  # with each report's `wall`: when this process ran

    def report(metrics: dict, state: dict):
        metrics = {**metrics, "node": node, "device": device, "gpus": gpus, "wall_start": started, "wall": time.time()}
        with tempfile.TemporaryDirectory() as d:
            torch.save(state, os.path.join(d, CKPT_FILE))
            tune.report(to_report(metrics), checkpoint=tune.Checkpoint.from_directory(d))

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
