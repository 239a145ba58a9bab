"""What a sweep needs before any trial runs: the budget checked, the data split, the teacher's logits (once,
cached; on a cluster built on every node), an ensemble's averaged logits, and the teacher's identity."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from orchestrator.config import SweepConfig, resolve_path
from orchestrator.data import load_split
from orchestrator.errors import UserError
from orchestrator.run.io import is_uri, project_relative, sha256_file
from orchestrator.teacher import history
from orchestrator.teacher.cache import missing_forwards, teacher_logits
from orchestrator.teacher.model import accuracy, identity, in_precision, load_member, load_teacher, predict_logits
from students import count_params, create_student, deployed
from trainables.augment import ViewSpec
from trainables.engine import resolve_precision
from trainables.layout import LAYOUTS, memory_format
from trainables.losses import NEEDS_TEACHER
from trainables.train import TrialData

log = logging.getLogger(__name__)


class BudgetError(UserError):
    pass


def check_budget(cfg: SweepConfig) -> dict[str, int]:
    """torchinfo parameter count of every student the config can train, as deployed (a re-parameterizable
    student's folded form); over budget is an error."""
    counts = {}
    for name in cfg.students():
        n = count_params(deployed(create_student(name, **cfg.train.student_kwargs)))
        if n > cfg.budget:
            raise BudgetError(
                f"student {name} has {n:,} parameters, over the budget of {cfg.budget:,}; "
                "pick a smaller variant (`kdsweep students`) or prune it"
            )
        counts[name] = n
    return counts


def with_absolute_sources(cfg: SweepConfig) -> SweepConfig:
    """prune_from paths made absolute (trials run in other directories and on other nodes), and checked."""

    def fix(d: dict) -> dict:
        if d.get("prune_from"):
            p = resolve_path(d["prune_from"])
            if not is_uri(p) and not Path(p).is_file():
                raise FileNotFoundError(
                    f"prune_from {d['prune_from']}: no such checkpoint; export the source sweep "
                    "first (`kdsweep sweep --config ...` writes artifacts/<name>/student.pt)"
                )
            d = {**d, "prune_from": p}
        return d

    space = dict(cfg.search_space)
    if "prune_from" in space:
        dom = cfg.space()["prune_from"]
        space["prune_from"] = dom.map(lambda v: fix({"prune_from": v})["prune_from"]).to_yaml()
    train = dataclasses.replace(cfg.train, prune_from=fix({"prune_from": cfg.train.prune_from})["prune_from"])
    return dataclasses.replace(cfg, train=train, search_space=space, trials=[fix(dict(t)) for t in cfg.trials])


@dataclass
class TeacherFacts:
    """What a run found about its teacher (and the ensemble averaged with it): its part of the meta record."""

    path: str
    arch: str
    sha256: str
    params: int
    preprocess: dict
    mode: str
    precision: str
    layout: str | None = None  # chosen here (teacher.layout auto), with each layout's images/s
    layout_img_s: dict | None = None
    infer_img_s: float = 0.0  # timed on the validation forwards
    val_acc: float = 0.0
    ensemble: list[dict] | None = None  # each member's identity, accuracy and cache
    ensemble_val_acc: float | None = None


@dataclass
class Prepared:
    """What prepare_data found: the split's sizes, the views, the teacher and its forwards, the cache. `record()`
    is the start of the run's meta record (the same keys a run has always written; unset ones left out)."""

    n_train: int
    n_val: int
    views: dict
    teacher_forwards: int = 0  # teacher forwards this run paid for (cache misses, ensemble members)
    teacher: TeacherFacts | None = None
    teacher_val_forwards: int | None = None
    cache: dict | None = None

    def record(self) -> dict:
        def drop_unset(d: dict) -> dict:
            return {k: v for k, v in d.items() if v is not None}

        out = drop_unset(asdict(self))
        if self.teacher is not None:
            out["teacher"] = drop_unset(asdict(self.teacher))
        return out


def uses_teacher(cfg: SweepConfig) -> bool:
    return bool(set(cfg.losses()) & NEEDS_TEACHER)


def prepare_data(
    cfg: SweepConfig, teacher_path: str | None = None, device: str = "cpu", before_cache=None
) -> tuple[TrialData, Prepared]:
    """Everything trials need, computed in the driver: split, teacher logits (the only teacher run), and the
    facts the run's meta record keeps (`Prepared`).
    `device`: where the teacher runs, live or building the cache (`kdsweep train/cache --device cuda`).
    `before_cache(n_train, n_val, teacher_img_s, cache_forwards, members_s)` is called once the teacher's speed
    is known (timed on the validation forwards) and before the cache is built: the sweep's plan; `members_s`
    is what the ensemble members' caches will take, each at its own measured speed."""
    d = cfg.data
    split = load_split(d.data_dir, d.val_size, d.split_seed, d.train_limit, d.val_limit)
    spec = ViewSpec(cfg.augment.shift, cfg.augment.flip)
    facts = Prepared(n_train=len(split.train_x), n_val=len(split.val_x), views=asdict(spec))
    data = TrialData(split.train_x, split.train_y, split.val_x, split.val_y, spec, mode="none")
    if not uses_teacher(cfg):
        if before_cache is not None:
            before_cache(len(split.train_x), len(split.val_x), 0.0, 0, 0.0)
        return data, facts
    path = resolve_path(teacher_path or cfg.teacher.checkpoint)
    if path is None:
        raise UserError("a loss in this config needs a teacher: set teacher.checkpoint or pass --teacher PATH")
    t = cfg.teacher
    model, info = load_teacher(path, t.mean, t.std)
    precision = resolve_precision(t.precision, device)
    tf = TeacherFacts(**_named(info), preprocess=asdict(info.preprocess), mode=t.mode, precision=precision)
    facts.teacher = tf
    plain = model.to(device)
    model, key = in_precision(plain, precision, device), identity(info.sha256, precision)
    layout = t.layout
    if layout == "auto":  # the forwards in the layout faster here: a few validation batches in each, in turn
        rates = probe_teacher_layout(model, split.val_x, info.preprocess, t.batch_size, device)
        layout = max(rates, key=rates.get)
        log.info(
            f"teacher layout: {layout}, the faster here ("
            + ", ".join(f"{k} {v:.0f} img/s" for k, v in rates.items())
            + ")"
        )
        tf.layout, tf.layout_img_s = layout, rates
    plain.to(memory_format=memory_format(layout))  # the cache's and validation's inputs follow the model
    t0 = time.perf_counter()
    val_logits = predict_logits(model, split.val_x, info.preprocess, t.batch_size, device)  # for the report only
    tf.infer_img_s = len(split.val_x) / (time.perf_counter() - t0)
    tf.val_acc = accuracy(val_logits, split.val_y)
    facts.teacher_val_forwards = len(split.val_x)
    log.info(f"teacher {info.arch} ({info.params:,} params) val_acc {tf.val_acc:.4f}")
    cache_spec, cache_dir = spec if t.mode == "views" else ViewSpec(0, False), resolve_path(t.cache_dir)
    members = [Member.load(p, t, split, cache_spec, cache_dir, device, precision) for p in ensemble_paths(t)]
    if before_cache is not None:
        x, y = split.train_x, split.train_y
        forwards = 0 if t.mode == "live" else missing_forwards(key, info.preprocess, x, y, cache_spec, cache_dir)
        members_s = sum(m.missing / m.img_s for m in members)
        before_cache(len(split.train_x), len(split.val_x), tf.infer_img_s, forwards, members_s)
    if t.mode == "live":
        data.teacher = dict(
            model=model,
            mean=info.preprocess.mean,
            std=info.preprocess.std,
            channels=info.preprocess.channels,
            size=info.preprocess.size,
        )
    else:
        runner = None
        if t.build == "cluster":
            from orchestrator.teacher.cache_ray import ray_runner

            runner = ray_runner(
                plain,
                info.arch,
                info.preprocess.channels,
                split.train_x,
                cache_spec,
                info.preprocess,
                t.batch_size,
                t.cpus_per_actor,
                t.gpus_per_actor,
                precision=precision,
                layout=layout,
            )
        logits, forwards, cinfo = teacher_logits(
            model,
            key,
            info.preprocess,
            split.train_x,
            split.train_y,
            cache_spec,
            cache_dir,
            t.batch_size,
            device,
            runner=runner,
        )
        facts.teacher_forwards, facts.cache = forwards, cinfo
        if members:
            logits = ensemble_logits(logits, val_logits, members, split, cache_spec, cache_dir, facts, device)
        data.teacher_logits = logits
    data.mode = t.mode
    return data, facts


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
    facts: Prepared,
    device: str,
) -> np.ndarray:
    """The teacher's cached logits averaged with each teacher.ensemble member's on the same views (each
    member's own cache, keyed by its bytes like the teacher's); the members, their forwards and the average's
    validation accuracy go into `facts`."""
    total, val_total, named = logits.astype(np.float32), val_logits.clone(), []
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
        named.append(dict(**_named(info), val_acc=accuracy(m.val_logits, split.val_y), cache=cinfo))
        facts.teacher_forwards += forwards
        log.info(f"ensemble member {info.arch} ({info.params:,} params) val_acc {named[-1]['val_acc']:.4f}")
    n = 1 + len(named)
    facts.teacher.ensemble = named
    facts.teacher.ensemble_val_acc = accuracy(val_total / n, split.val_y)
    log.info(f"teacher ensemble of {n} (logits averaged) val_acc {facts.teacher.ensemble_val_acc:.4f}")
    return (total / n).astype(np.float16)


def probe_teacher_layout(model, val_x, pre, batch_size: int, device: str, images: int = 512) -> dict[str, float]:
    """The teacher's inference images/s in each memory layout on the first `images` validation images (a
    warm-up batch, then two rounds taken in turn, the better of each); leaves the model channels_last."""
    x = val_x[:images]
    best = dict.fromkeys(LAYOUTS, 0.0)
    for r in range(3):
        for lay in LAYOUTS:
            model.to(memory_format=memory_format(lay))
            t0 = time.perf_counter()
            predict_logits(model, x[: batch_size if r == 0 else images], pre, batch_size, device)
            if r:  # the first round warms each layout's kernels up
                best[lay] = max(best[lay], len(x) / (time.perf_counter() - t0))
    model.to(memory_format=torch.channels_last)
    return best


def _named(info) -> dict:
    """Which network a run's meta record names (the teacher, an ensemble member)."""
    return dict(path=project_relative(info.path), arch=info.arch, sha256=info.sha256, params=info.params)


def teacher_identity(cfg: SweepConfig, teacher_path: str | None) -> dict | None:
    """The teacher a run distils from, as part of the run's identity: resolved path and sha256 of its bytes."""
    if not uses_teacher(cfg):
        return None
    path = resolve_path(teacher_path or cfg.teacher.checkpoint)
    if path is None:
        raise UserError("a loss in this config needs a teacher: set teacher.checkpoint or pass --teacher PATH")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"teacher checkpoint {path} not found; pass --teacher PATH or set teacher.checkpoint "
            "(the default's is models/teacher/resnet50.pt; `kdsweep teacher train` makes one)" + history.hint(path)
        )
    ident = dict(path=str(p.resolve()), sha256=sha256_file(p))
    if cfg.teacher.ensemble:  # only when set, so the claims of runs without one read as they always did
        ident["ensemble"] = [dict(path=str(m.resolve()), sha256=sha256_file(m)) for m in ensemble_paths(cfg.teacher)]
    return ident
