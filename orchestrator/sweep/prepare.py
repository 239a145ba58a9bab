"""What a sweep needs before any trial runs: the budget checked, the data split, the teacher's logits (once,
cached; on a cluster built on every node), an ensemble's averaged logits, and the teacher's identity."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from orchestrator.config import SweepConfig, resolve_path
from orchestrator.data import load_split
from orchestrator.errors import UserError
from orchestrator.loader import is_uri
from orchestrator.run.io import sha256_file
from orchestrator.teacher import history
from orchestrator.teacher.cache import missing_forwards, teacher_logits
from orchestrator.teacher.ensemble import Member, ensemble_logits, ensemble_paths, network
from orchestrator.teacher.model import identity, load_teacher
from students import count_params, create_student, deployed
from trainables.augment import MixSpec, ViewSpec
from trainables.engine import resolve_precision
from trainables.infer import accuracy, in_precision, predict_logits
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


@dataclass
class Measured:
    """What a sweep learns before it spends anything: the split, the teacher loaded, its layout and speed (timed
    on the validation forwards) and what its cache will cost. `fill` then builds what the trials need."""

    cfg: SweepConfig
    data: TrialData  # without the teacher's part until `fill`
    facts: Prepared
    device: str
    teacher: _Teacher | None = None
    cache_forwards: int = 0  # forwards the cache still misses (0 live)
    members_s: float = 0.0  # seconds the ensemble members' caches will take, each at its measured speed

    @property
    def teacher_img_s(self) -> float:
        return self.facts.teacher.infer_img_s if self.facts.teacher else 0.0


@dataclass
class _Teacher:
    model: torch.nn.Module  # in its precision
    plain: torch.nn.Module
    info: object  # TeacherInfo
    key: str
    precision: str
    layout: str
    val_logits: torch.Tensor
    cache_spec: ViewSpec
    cache_dir: str
    members: list


def measure(cfg: SweepConfig, teacher_path: str | None = None, device: str = "cpu") -> Measured:
    """The split, and where a loss needs a teacher: the teacher loaded in its precision and layout (`auto`: the
    faster here), its validation logits (for the report) and speed, and the cache forwards still missing.
    `device`: where the teacher runs, live or building the cache (`kdsweep train/cache --device cuda`)."""
    d = cfg.data
    split = load_split(d.data_dir, d.val_size, d.split_seed, d.train_limit, d.val_limit)
    spec = ViewSpec(cfg.augment.shift, cfg.augment.flip)
    facts = Prepared(n_train=len(split.train_x), n_val=len(split.val_x), views=asdict(spec))
    data = TrialData(split.train_x, split.train_y, split.val_x, split.val_y, spec, mode="none")
    if not uses_teacher(cfg):
        return Measured(cfg, data, facts, device)
    path = resolve_path(teacher_path or cfg.teacher.checkpoint)
    if path is None:
        raise UserError("a loss in this config needs a teacher: set teacher.checkpoint or pass --teacher PATH")
    t = cfg.teacher
    model, info = load_teacher(path, t.mean, t.std)
    precision = resolve_precision(t.precision, device)
    tf = TeacherFacts(**network(info), preprocess=asdict(info.preprocess), mode=t.mode, precision=precision)
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
    cache_spec, cache_dir = _cache_spec(cfg, spec), resolve_path(t.cache_dir)
    members = [Member.load(p, t, split, cache_spec, cache_dir, device, precision) for p in ensemble_paths(t)]
    x, y = split.train_x, split.train_y
    forwards = 0 if t.mode == "live" else missing_forwards(key, info.preprocess, x, y, cache_spec, cache_dir)
    teacher = _Teacher(model, plain, info, key, precision, layout, val_logits, cache_spec, cache_dir, members)
    return Measured(cfg, data, facts, device, teacher, forwards, sum(m.missing / m.img_s for m in members))


def fill(m: Measured) -> tuple[TrialData, Prepared]:
    """The teacher's part of what trials need, computed in the driver: the live teacher, or its logits (the
    only teacher run: cached, on a cluster built on every node; an ensemble's averaged with its members'), and
    the facts the run's meta record keeps (`Prepared`)."""
    data, facts, tch = m.data, m.facts, m.teacher
    if tch is None:
        return data, facts
    t, info, device = m.cfg.teacher, tch.info, m.device
    if t.mode == "live":
        data.teacher = dict(
            model=tch.model,
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
                tch.plain,
                info.arch,
                info.preprocess.channels,
                data.train_x,
                tch.cache_spec,
                info.preprocess,
                t.batch_size,
                t.cpus_per_actor,
                t.gpus_per_actor,
                precision=tch.precision,
                layout=tch.layout,
            )
        logits, forwards, cinfo = teacher_logits(
            tch.model,
            tch.key,
            info.preprocess,
            data.train_x,
            data.train_y,
            tch.cache_spec,
            tch.cache_dir,
            t.batch_size,
            device,
            runner=runner,
        )
        facts.teacher_forwards, facts.cache = forwards, cinfo
        if tch.members:
            logits, members, paid, val_acc = ensemble_logits(  # the data's arrays are the split's
                logits, tch.val_logits, tch.members, data, tch.cache_spec, tch.cache_dir, device
            )
            facts.teacher_forwards += paid
            facts.teacher.ensemble, facts.teacher.ensemble_val_acc = members, val_acc
        data.teacher_logits = logits
    data.mode = t.mode
    if t.mode == "mixed":  # the trial's views are the cache's mixed ones
        data.spec = tch.cache_spec
    return data, facts


def _cache_spec(cfg: SweepConfig, spec: ViewSpec) -> ViewSpec | MixSpec:
    """What the cache holds a teacher forward of, per training image: every shift/flip view (views), the clean
    image (clean), or teacher.mixed_views seeded mixes of train.mix (mixed; one mix for all trials)."""
    t = cfg.teacher
    if t.mode == "mixed":
        kind, alpha = cfg.train.mix, cfg.train.mix_alpha
        if cfg.trials:  # the one value every trial shares (the config's checks)
            kind = cfg.trials[0].get("mix", kind)
            alpha = cfg.trials[0].get("mix_alpha", alpha)
        if "mix" in cfg.search_space:
            kind = cfg.space()["mix"].values[0]
        return MixSpec(spec.shift, spec.flip, kind, float(alpha), t.mixed_views)
    return spec if t.mode == "views" else ViewSpec(0, False)


def prepare_data(cfg: SweepConfig, teacher_path: str | None = None, device: str = "cpu") -> tuple[TrialData, Prepared]:
    """Everything trials need, computed in the driver: `measure`, then `fill`."""
    return fill(measure(cfg, teacher_path, device))


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
