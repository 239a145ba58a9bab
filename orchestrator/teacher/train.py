"""`kdsweep teacher train`: run `fit_teacher` on Ray Train (TorchTrainer) or in this process.

Both paths checkpoint every epoch and resume an interrupted run from its last
checkpoint; both end by writing the best-validation weights as a release
(`<out>`: fp16 state_dict + JSON sidecar with the preprocessing).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch

from orchestrator import logs
from orchestrator.config import from_dict
from orchestrator.data import load_split
from orchestrator.errors import UserError
from orchestrator.machine import machine
from orchestrator.run.io import atomic_save
from orchestrator.teacher.config import TeacherTrainConfig
from orchestrator.teacher.model import read_state_dict, release_weights
from trainables.teacher_train import fit_teacher

log = logging.getLogger(__name__)


def _split(cfg: TeacherTrainConfig, world: int = 1):
    """The training split, refused in one line where a worker's share holds no full batch."""
    d = cfg.data
    s = load_split(d.data_dir, d.val_size, d.split_seed, d.train_limit, d.val_limit)
    if len(s.train_x) // world < cfg.optim.batch_size:
        raise UserError(
            f"optim.batch_size {cfg.optim.batch_size} is larger than the {len(s.train_x) // world} training images "
            "per worker; lower it or train on more images"
        )
    return s


def _init(cfg: TeacherTrainConfig) -> dict | None:
    """The weights a new cycle starts from (cfg.init_from, e.g. the last release), or None."""
    return read_state_dict(cfg.init_from) if cfg.init_from else None


def kd_targets(cfg: TeacherTrainConfig, split, cache_dir: str = "cache"):
    """The logits of cfg.kd_from on the clean training images (N, 10), from the logits cache (built once,
    shared with the sweeps that use that teacher), or None without kd_from."""
    if not cfg.kd_from:
        return None
    from orchestrator.config import resolve_path
    from orchestrator.teacher.cache import teacher_logits
    from orchestrator.teacher.model import load_teacher
    from trainables.augment import ViewSpec

    model, info = load_teacher(resolve_path(cfg.kd_from))
    logits, _, _ = teacher_logits(
        model, info.sha256, info.preprocess, split.train_x, split.train_y, ViewSpec(0, False), resolve_path(cache_dir)
    )
    log.info(
        f"distilling {info.arch} ({cfg.kd_from}, alpha {cfg.kd_alpha:g}, T {cfg.kd_temperature:g}) into {cfg.arch}"
    )
    return logits[:, 0].astype("float32")


def history_path(out: Path) -> Path:
    """Per-epoch metrics beside the weights, named after them (several teachers share models/teacher/)."""
    return Path(out).with_name(f"{Path(out).stem}_history.json")


def _finish(cfg: TeacherTrainConfig, best_sd: dict, history: list, wall_s: float, out: Path, how: str) -> Path:
    best = max(history, key=lambda m: m["val_acc"])
    extra = dict(
        val_acc=best["val_acc"],
        best_epoch=best["epoch"],
        epochs=cfg.optim.epochs,
        wall_s=round(wall_s, 1),
        machine=machine(),
        trained_with=how,
        recipe=asdict(cfg),
    )
    release_weights(best_sd, out, cfg, extra)
    history_path(out).write_text(json.dumps(history, indent=1) + "\n")
    return out


def train_local(cfg: TeacherTrainConfig, run_dir: Path, out: Path, chunk_minutes: float | None = None) -> Path | None:
    """Plain PyTorch in this process (also what a GPU machine without Ray runs). `chunk_minutes`: stop after
    the epoch that passes them (a training of hours as chunks that each fit a session) and return None
    until the last epoch is done; the same call resumes from the run's last epoch."""
    run_dir.mkdir(parents=True, exist_ok=True)
    last, best_path = run_dir / "last.pt", run_dir / "best.pt"
    resume = torch.load(last, map_location="cpu", weights_only=True) if last.is_file() else None
    wall0 = resume["wall_s"] if resume else 0.0
    t0 = time.time()

    def save(state, metrics, is_best):
        state["wall_s"] = wall0 + time.time() - t0
        if is_best:  # best first: a crash between the two writes leaves last.pt one epoch behind, never ahead
            atomic_save({"model": state["model"], "epoch": state["epoch"]}, best_path)
        atomic_save(state, last)

    s = _split(cfg)
    log.info(f"teacher {cfg.arch}: {len(s.train_x)} train / {len(s.val_x)} val images, run dir {run_dir}")
    device = "cuda" if cfg.use_gpu and torch.cuda.is_available() else "cpu"
    fit_teacher(
        cfg,
        s.train_x,
        s.train_y,
        s.val_x,
        s.val_y,
        resume=resume,
        save=save,
        device=device,
        stop_after_s=None if chunk_minutes is None else chunk_minutes * 60,
        soft=kd_targets(cfg, s),
        init=_init(cfg),
    )
    final = torch.load(last, map_location="cpu", weights_only=True)
    if final["epoch"] + 1 < cfg.optim.epochs:
        return None
    best = torch.load(best_path, map_location="cpu", weights_only=True)
    return _finish(cfg, best["model"], final["history"], final["wall_s"], out, "local (no Ray)")


# ---------------------------------------------------------------- Ray Train

STATE_FILE, BEST_FILE = "state.pt", "best.pt"


def _ray_train_loop(config: dict):
    """Per worker: fetch the arrays from the object store, run fit_teacher, report a checkpoint per epoch."""
    import tempfile

    import ray
    import ray.train
    import ray.train.torch

    cfg = from_dict(TeacherTrainConfig, config["cfg"])
    torch.set_num_threads(max(1, cfg.cpus_per_worker))
    logs.setup()  # a Ray Train worker: its epochs' lines reach the driver's output through stdout
    d = ray.get(config["data"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if cfg.use_gpu else torch.device("cpu")
    resume, best_sd = None, None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as cd:
            resume = torch.load(Path(cd) / STATE_FILE, map_location="cpu", weights_only=True)
            best_sd = torch.load(Path(cd) / BEST_FILE, map_location="cpu", weights_only=True)
    t0, wall0 = time.time(), (resume or {}).get("wall_s", 0.0)

    def save(state, metrics, is_best):
        nonlocal best_sd
        if is_best:
            best_sd = {k: v.detach().clone().cpu() for k, v in state["model"].items()}
        state["wall_s"] = wall0 + time.time() - t0
        with tempfile.TemporaryDirectory() as tmp:
            if rank == 0:  # one copy of the weights; DDP keeps every rank identical
                torch.save(state, Path(tmp) / STATE_FILE)
                torch.save(best_sd, Path(tmp) / BEST_FILE)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None)

    wrap = ray.train.torch.prepare_model if world > 1 else (lambda m: m)
    fit_teacher(
        cfg,
        d["train_x"],
        d["train_y"],
        d["val_x"],
        d["val_y"],
        resume=resume,
        save=save,
        device=str(device),
        rank=rank,
        world=world,
        wrap=wrap,
        soft=d.get("soft"),
        init=_init(cfg),
    )


def train_ray(cfg: TeacherTrainConfig, run_dir: Path, out: Path, address: str | None = None) -> Path:
    """TorchTrainer with `cfg.workers` workers; rerunning with the same run_dir resumes from its last checkpoint."""
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    s = _split(cfg, cfg.workers)
    log.info(
        f"teacher {cfg.arch}: {len(s.train_x)} train / {len(s.val_x)} val images, {cfg.workers} Ray Train "
        f"worker(s), run dir {run_dir}"
    )
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, **({} if address else dict(include_dashboard=False)))
    try:
        data = ray.put(
            dict(train_x=s.train_x, train_y=s.train_y, val_x=s.val_x, val_y=s.val_y, soft=kd_targets(cfg, s))
        )
        trainer = TorchTrainer(
            _ray_train_loop,
            train_loop_config=dict(cfg=asdict(cfg), data=data),
            scaling_config=ray.train.ScalingConfig(
                num_workers=cfg.workers, use_gpu=cfg.use_gpu, resources_per_worker={"CPU": cfg.cpus_per_worker}
            ),
            run_config=ray.train.RunConfig(
                name=run_dir.name,
                storage_path=str(run_dir.parent),
                failure_config=ray.train.FailureConfig(max_failures=2),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            ),
        )
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"Ray Train finished without a checkpoint; see the logs under {run_dir}")
        with result.checkpoint.as_directory() as cd:
            state = torch.load(Path(cd) / STATE_FILE, map_location="cpu", weights_only=True)
            best_sd = torch.load(Path(cd) / BEST_FILE, map_location="cpu", weights_only=True)
    finally:
        if started:
            ray.shutdown()
    return _finish(cfg, best_sd, state["history"], state["wall_s"], out, f"Ray Train, {cfg.workers} worker(s)")
