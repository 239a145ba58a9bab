"""A teacher ensemble (teacher.ensemble): its members (teachers or students) loaded and timed, each with its own
logits cache keyed by its bytes like the teacher's, and their logits averaged with the teacher's."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from orchestrator.loader import resolve_path
from orchestrator.run.io import project_relative
from orchestrator.teacher import history
from orchestrator.teacher.cache import missing_forwards, teacher_logits
from orchestrator.teacher.model import identity, load_member
from trainables.augment import ViewSpec
from trainables.infer import accuracy, in_precision, predict_logits

log = logging.getLogger(__name__)


def network(info) -> dict:
    """Which network a run's meta record names (the teacher, an ensemble member)."""
    return dict(path=project_relative(info.path), arch=info.arch, sha256=info.sha256, params=info.params)


def ensemble_paths(t) -> list[Path]:
    """teacher.ensemble's members as files, each checked to exist."""
    paths = [Path(resolve_path(m)) for m in t.ensemble]
    for m, p in zip(t.ensemble, paths):
        if not p.is_file():
            raise FileNotFoundError(
                f"teacher.ensemble member {m} not found ({p}); give a teacher or student checkpoint" + history.hint(p)
            )
    return paths


@dataclass
class Member:
    """An ensemble member, loaded and timed on its validation forwards before the plan (which counts its
    cache at this speed); `missing`: the forwards its cache still needs."""

    model: torch.nn.Module
    info: object
    batch: int
    val_logits: torch.Tensor
    img_s: float
    missing: int
    key: str  # its cache's identity: its bytes and precision

    @classmethod
    def load(cls, path: Path, t, split, spec: ViewSpec, cache_dir, device: str, precision: str) -> Member:
        model, info = load_member(path, device)
        model = in_precision(model, precision, device)
        bs = info.infer_batch or t.batch_size
        t0 = time.perf_counter()
        v = predict_logits(model, split.val_x, info.preprocess, bs, device)
        img_s = len(split.val_x) / max(time.perf_counter() - t0, 1e-9)
        key = identity(info.sha256, precision)
        missing = missing_forwards(key, info.preprocess, split.train_x, split.train_y, spec, cache_dir)
        return cls(model, info, bs, v, img_s, missing, key)


def ensemble_logits(
    logits: np.ndarray,
    val_logits,
    members: list[Member],
    split,
    spec: ViewSpec,
    cache_dir,
    device: str,
) -> tuple[np.ndarray, list[dict], int, float]:
    """The teacher's cached logits averaged with each teacher.ensemble member's on the same views (each
    member's own cache, keyed by its bytes like the teacher's): (the average, each member named with its
    validation accuracy and cache, the forwards the members' caches cost now, the average's validation
    accuracy)."""
    total, val_total, named, paid = logits.astype(np.float32), val_logits.clone(), [], 0
    for m in members:
        info = m.info
        z, forwards, cinfo = teacher_logits(
            m.model,
            m.key,
            info.preprocess,
            split.train_x,
            split.train_y,
            spec,
            cache_dir,
            m.batch,
            device,
        )
        total += z
        val_total += m.val_logits
        named.append(dict(**network(info), val_acc=accuracy(m.val_logits, split.val_y), cache=cinfo))
        paid += forwards
        log.info(f"ensemble member {info.arch} ({info.params:,} params) val_acc {named[-1]['val_acc']:.4f}")
    n = 1 + len(named)
    val_acc = accuracy(val_total / n, split.val_y)
    log.info(f"teacher ensemble of {n} (logits averaged) val_acc {val_acc:.4f}")
    return (total / n).astype(np.float16), named, paid, val_acc
