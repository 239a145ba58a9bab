"""kdsweep's config schema: a sweep's (configs/*.yaml) and a teacher's training (configs/teacher.yaml), as
frozen dataclasses with their checks. Read strictly by orchestrator/loader.py; a trial's own settings
(`train:`) are the trainable's TrainConfig."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.loader import ConfigError as ConfigError
from orchestrator.loader import apply_overrides as apply_overrides
from orchestrator.loader import from_dict as from_dict
from orchestrator.loader import load_yaml as load_yaml
from orchestrator.loader import resolve_path as resolve_path
from orchestrator.loader import to_dict as to_dict
from orchestrator.space import Domain, parse_space
from trainables.config import KWARGS, LOSS_NAMES, OptimSettings, TrainConfig, merge_train  # noqa: F401  (a trial's settings live with the trainable)


def _check(cond: bool, msg: str):
    if not cond:
        raise ValueError(msg)


@dataclass(frozen=True)
class DataConfig:
    data_dir: str | None = None  # None: $KDSWEEP_DATA, ./data, /usr/share/datasets/fashion-mnist
    val_size: int = 5000  # images carved out of the 60,000 training images
    split_seed: int = 0  # seeds the stratified train/validation split
    train_limit: int | None = None  # keep only the first N training images (smoke runs)
    val_limit: int | None = None  # keep only the first N validation images (smoke runs)

    def __post_init__(self):
        _check(0 < self.val_size < 60_000, "val_size must be in 1..59999")
        _check(self.train_limit is None or self.train_limit > 0, "train_limit must be positive")
        _check(self.val_limit is None or self.val_limit > 0, "val_limit must be positive")


@dataclass(frozen=True)
class Views:
    shift: int = 2  # pixels
    flip: bool = True  # the mirror image is a view too

    def __post_init__(self):
        _check(0 <= self.shift <= 8, "shift must be in 0..8 pixels")


@dataclass(frozen=True)
class Preprocess:
    """What a model expects: pixels/255, then (x - mean) / std, resized to `size` x `size` (bilinear),
    repeated to `channels`."""

    mean: float = 0.2860  # of pixels / 255 over the training images
    std: float = 0.3530
    channels: int = 3  # the grayscale image repeated (a torchvision ResNet takes 3)
    size: int = 28  # input side: 28 = the images as they are; 56 = upsampled 2x (a torchvision
    # ResNet's stem divides by 4, so 28 px leave 7x7 after it, 56 px 14x14)

    def __post_init__(self):
        _check(self.std > 0, "std must be > 0")
        _check(self.channels in (1, 3), "channels must be 1 or 3")
        _check(isinstance(self.size, int) and 28 <= self.size <= 224, "size must be an integer in 28..224 (pixels)")


@dataclass(frozen=True)
class TeacherConfig:
    checkpoint: str | None = "models/teacher/resnet50.pt"  # a torchvision resnet50(num_classes=10) state_dict
    mean: float | None = None  # None: read from the checkpoint's JSON sidecar
    std: float | None = None  # None: read from the checkpoint's JSON sidecar
    mode: Literal["views", "clean", "live", "mixed"] = "views"  # views: logits cached per (image, shifted/flipped
    # view), replayed exactly; clean: cached per image, reused for every view; live: the teacher runs on every
    # batch (the slow reference; function matching, train.mix, on fresh mixes); mixed: function matching cached,
    # logits per (image, one of mixed_views seeded mixes of train.mix with another image), rebuilt exactly
    batch_size: int = 256  # teacher inference batch (images); = teacher.INFER_BATCH, which says why
    cache_dir: str = "cache"  # teacher-logit cache, reused across sweeps
    build: Literal["driver", "cluster"] = "driver"  # where the cache is computed: in the driver process, or by
    # Ray actors on every node of the cluster (cache_ray.py)
    cpus_per_actor: float = 1.0  # build: cluster -- resources of each teacher actor
    gpus_per_actor: float = 0.0  # build: cluster -- a share of a GPU per actor
    layout: Literal["auto", "channels_last", "contiguous"] = "auto"  # its forwards' memory layout; auto: the
    # faster of the two here, timed on a few validation batches before the cache
    precision: Literal["fp32", "bf16", "auto"] = "fp32"  # the teacher's forwards (cache, validation): bf16 autocast
    # halves a ResNet-50's time where the CPU computes bf16 natively; auto: there.
    # Its own cache key (the logits differ by more than fp16 rounding)
    mixed_views: int = 16  # mode mixed: mixed views cached per training image (each a teacher forward)
    ensemble: tuple[str, ...] = ()  # more models whose logits on the same views are averaged with the
    # teacher's into one target: teacher checkpoints, or student checkpoints
    # (a trial's checkpoint.pt, an export's student.pt); each has its own
    # cache, built in the driver (students are 8-25x cheaper than a ResNet-50)

    def __post_init__(self):
        _check(self.batch_size >= 1, "batch_size must be >= 1")
        _check(self.mixed_views >= 1, "mixed_views must be >= 1 (mixed views cached per training image)")
        _check(
            not self.ensemble or self.mode != "live",
            "ensemble averages cached logits: use mode views or clean with it, not live",
        )
        _check(self.cpus_per_actor > 0, "cpus_per_actor must be > 0")
        _check(self.gpus_per_actor >= 0, "gpus_per_actor must be >= 0")


@dataclass(frozen=True)
class SweepSettings:
    num_samples: int = 1  # samples of the search space (each grid point num_samples times)
    max_concurrent_trials: int = 2  # search trials at a time
    cpus_per_trial: float = 1.0  # each trial's CPUs (its torch threads)
    gpus_per_trial: float | Literal["auto"] = "auto"  # a share of one GPU; auto: 0 on a cluster without GPUs,
    # else every CPU slot an equal share (several trials to a GPU)
    grace_period: int | Literal["auto"] = 1  # ASHA: epochs before a trial can be stopped; auto: the
    # recorded regret rule's fraction of the schedule (orchestrator/rungs.py, rungs.json)
    searcher: Literal["random", "optuna"] = "random"  # what proposes the search's trials: random draws from
    # search_space (and every `trials:` entry), or Optuna's TPE (search_space only)
    reduction_factor: int | Literal["auto"] = 2  # ASHA: keep the top 1/rf at each rung; auto: the regret rule's
    keep_checkpoints: int = 1  # per trial, by best val_acc
    max_failures: int = 1  # retries of a crashed trial (from its last checkpoint)
    storage: str = "runs"  # local dir (made absolute) or a URI (s3://, gs://) on a cluster
    ledger: str = ""  # a folder (relative to the project) holding the search's candidates, drawn up front, and
    # each one's curve (orchestrator/run/ledger.py): the search goes on from it after its run directory is
    # gone (a search run in chunks on machines that come and go); "" : none, the run directory alone

    def __post_init__(self):
        _check(self.num_samples >= 1, "num_samples must be >= 1")
        _check(self.max_concurrent_trials >= 1, "max_concurrent_trials must be >= 1")
        _check(self.cpus_per_trial > 0, "cpus_per_trial must be > 0")
        _check(self.gpus_per_trial == "auto" or self.gpus_per_trial >= 0, "gpus_per_trial must be >= 0 or auto")
        _check(self.grace_period == "auto" or self.grace_period >= 1, "grace_period must be >= 1 or auto")
        _check(self.reduction_factor == "auto" or self.reduction_factor >= 2, "reduction_factor must be >= 2 or auto")
        _check(self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1")


@dataclass(frozen=True)
class FinalSettings:
    """Search, then train: the `top` best search trials (by validation accuracy) are retrained from scratch
    with `epochs` epochs, once per seed, as Tune trials (checkpointed, resumable); export takes this stage's
    best by validation accuracy."""

    epochs: int = 0  # 0: no final stage; export the search's best trial
    seeds: int = 1  # retrainings of each finalist, seeds train.seed .. train.seed + seeds - 1
    top: int = 1  # finalists: a short search ranks close settings by noise, so several
    # of its best can go on to the long run, where they separate
    minutes: float = 0.0  # > 0: a wall-clock budget for the stage; `epochs` becomes a cap, lowered
    # to what fits at the seconds per epoch the search measured (fit_final_epochs)
    min_epochs: int = 1  # what no budget cuts below (what the result needs, measured): where the
    # budget cannot hold them on this CPU, the plan says so at the start
    control: Literal["finalist", "reference"] = "finalist"  # the no-teacher trials: finalists like any other, or
    # the search's reference row only (the final stage takes the best
    # distillation trials), where a short search cannot rank them
    cpus_per_trial: float = 0.0  # > 0: each final trial's CPUs (its torch threads), e.g. one finalist on
    # both cores; 0: sweep.cpus_per_trial, as the search's trials

    def __post_init__(self):
        _check(self.epochs >= 0, "epochs must be >= 0 (0 turns the final stage off)")
        _check(self.minutes >= 0, "minutes must be >= 0 (0: no time budget, train final.epochs)")
        _check(not self.minutes or self.epochs, "minutes needs final.epochs > 0 (the cap the budget may lower)")
        _check(self.seeds >= 1, "seeds must be >= 1")
        _check(self.top >= 1, "top must be >= 1")
        _check(1 <= self.min_epochs <= max(1, self.epochs), "min_epochs must be in 1..final.epochs")
        _check(self.cpus_per_trial >= 0, "cpus_per_trial must be >= 0 (0: sweep.cpus_per_trial)")


@dataclass(frozen=True)
class GrowSettings:
    """A search the budget can afford: where a run's `minutes` leave room, beside the final stage at its cap,
    for `min_candidates` or more trials of `epochs` epochs (at the speeds the plan measures, on the CPUs the
    run has), the search stage is random draws from `search_space` instead of the config's trials, each
    trained to its end (experiments/search_fidelity: no earlier epoch ranked candidates), at most
    `max_candidates`; the plan says how many it affords and why. An empty search_space never grows."""

    search_space: dict[str, dict[str, Any]] = field(default_factory=dict)  # what a grown search draws
    epochs: int = 40  # each candidate's length, judged at its end
    min_candidates: int = 4  # fewer is no search: the config's own search stage runs instead
    max_candidates: int = 32  # however much the budget affords

    def __post_init__(self):
        _check(self.epochs >= 1, "epochs must be >= 1")
        _check(2 <= self.min_candidates <= self.max_candidates, "need 2 <= min_candidates <= max_candidates")
        drawn = sorted({"student", "prune_from"} & set(self.search_space)) + sorted(
            k for k in self.search_space if k.startswith(f"{KWARGS}.")
        )
        _check(
            not drawn,
            f"search_space.{drawn[0] if drawn else ''}: the grown search draws the recipe of train.student, "
            "whose speed the plan measures; search students with search_space (configs/search.yaml)",
        )


def _check_space(space: dict, train: TrainConfig, where: str):
    """Every key of a search space a train key (or `student_kwargs.<kwarg>`: one kwarg of the student, e.g.
    its shape), and every value (a range's ends) a valid TrainConfig; a drawn kwarg must build the student."""
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, raw in space.items():
        head, dot, sub = key.partition(".")
        if key not in train_keys and not (dot and head == KWARGS and sub):
            raise ValueError(
                f"{where}.{key}: not a train key; allowed: {sorted(train_keys)}, or {KWARGS}.<kwarg> of the student"
            )
        for v in Domain.parse(key, raw).values:
            try:
                t = from_dict(TrainConfig, merge_train(to_dict(train), {key: v}))
            except ConfigError as e:
                raise ValueError(f"{where}.{key}: value {v!r} is invalid: {e}") from None
            if dot:
                from students import create_student

                try:
                    create_student(t.student, **t.student_kwargs)
                except (TypeError, ValueError) as e:
                    raise ValueError(f"{where}.{key}: value {v!r} does not build {t.student}: {e}") from None


@dataclass(frozen=True)
class SweepConfig:
    name: str  # the run's folder under sweep.storage and the export's under artifacts/
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    augment: Views = field(default_factory=Views)  # student augmentation = the teacher's enumerable views
    train: TrainConfig = field(default_factory=TrainConfig)
    search_space: dict[str, dict[str, Any]] = field(default_factory=dict)  # train keys (or
    # student_kwargs.<kwarg>) -> {choice|grid|uniform|loguniform: ...}, drawn by sweep.searcher
    trials: list[dict[str, Any]] = field(default_factory=list)  # explicit variants, crossed with search_space
    sweep: SweepSettings = field(default_factory=SweepSettings)
    final: FinalSettings = field(default_factory=FinalSettings)
    grow: GrowSettings = field(default_factory=GrowSettings)
    budget: int = 100_000  # max student parameters (torchinfo count)
    minutes: float = 0.0  # > 0: a wall-clock budget for the whole run (cache, search, final, export):
    # the plan logged at the start says whether this CPU can hold it, and the
    # final stage gets what the earlier stages left (within final.minutes)

    def __post_init__(self):
        _check(bool(self.name) and "/" not in self.name, "name must be a non-empty string without '/'")
        _check(self.minutes >= 0, "minutes must be >= 0 (0: no budget for the whole run)")
        _check_space(self.search_space, self.train, "search_space")
        if self.grow.search_space:
            _check_space(self.grow.search_space, self.train, "grow.search_space")
            _check(
                self.minutes > 0 and self.final.epochs > 0,
                "grow needs minutes > 0 and final.epochs > 0: it grows the search into what the run's budget "
                "leaves beside the final stage",
            )
            grids = [k for k, dom in parse_space(self.grow.search_space).items() if not dom.sampled]
            _check(
                self.sweep.searcher != "optuna" or not grids,
                f"grow.search_space.{grids[0] if grids else ''}: grid cannot be sampled by sweep.searcher "
                "optuna; write it as choice",
            )

        if self.sweep.grace_period != "auto" and self.sweep.grace_period > self.train.epochs:
            raise ValueError(
                f"sweep.grace_period ({self.sweep.grace_period}) exceeds train.epochs "
                f"({self.train.epochs}): ASHA could never stop a trial; "
                f"set sweep.grace_period <= {self.train.epochs}"
            )
        if "auto" in (self.sweep.grace_period, self.sweep.reduction_factor):
            self.grace()  # the recorded rule must be there: a missing one is said now, not after the cache
        if self.sweep.ledger and self.sweep.searcher != "random":
            raise ValueError(
                "sweep.ledger draws the candidates up front, which Optuna's TPE cannot (it proposes from the "
                "results so far): use searcher: random with a ledger, or drop sweep.ledger"
            )
        if self.sweep.searcher == "optuna":
            if self.trials:
                raise ValueError(
                    "sweep.searcher optuna samples search_space; `trials:` is a fixed list that Optuna "
                    "cannot take: move its settings into search_space or use searcher: random"
                )
            if not self.search_space:
                raise ValueError(
                    "sweep.searcher optuna needs a search_space to sample; add one or use searcher: random"
                )
            grids = [k for k, dom in self.space().items() if not dom.sampled]
            if grids:
                raise ValueError(
                    f"search_space.{grids[0]}: grid cannot be sampled by sweep.searcher optuna; write "
                    "it as choice, or use searcher: random"
                )
        for i, t in enumerate(self.trials):
            if not isinstance(t, dict):
                raise ValueError(f"trials[{i}]: expected a mapping of train keys, e.g. {{student: starter_model_1}}")
            clash = set(t) & set(self.search_space)
            if clash:
                raise ValueError(f"trials[{i}]: {sorted(clash)} also in search_space; set each key in one place")
            try:
                from_dict(TrainConfig, {**to_dict(self.train), **t})
            except ConfigError as e:
                raise ValueError(f"trials[{i}]: {e}") from None

        mixed = sorted(m for m in self._values("mix") if m != "none")
        if mixed and self.teacher.mode not in ("live", "mixed"):
            raise ValueError(
                f"train.mix {mixed[0]}: the teacher must score the mixed image the student sees; cached logits "
                f"(teacher.mode {self.teacher.mode}) are of unmixed views: set teacher.mode: live or mixed"
            )
        if self.teacher.mode == "mixed":
            alphas = self._values("mix_alpha")
            if len(self._values("mix")) != 1 or not mixed or len(alphas) != 1 or "mix_alpha" in self.search_space:
                raise ValueError(
                    "teacher.mode mixed caches the mixed views of one train.mix at one train.mix_alpha for every "
                    f"trial (here mix {sorted(self._values('mix'))}, mix_alpha {sorted(alphas)}): set train.mix "
                    "mixup or cutmix, the same in every trial, or use teacher.mode live"
                )

        from students import is_student, list_students

        unknown = [n for n in self.students() if not is_student(n)]
        if unknown:
            raise ValueError(
                f"unknown student {unknown[0]!r}; registered students: {', '.join(list_students())} "
                "(`kdsweep students` lists them with their sizes)"
            )

    def grace(self) -> int:
        """ASHA's grace period in epochs: sweep.grace_period, or where it is auto the recorded regret rule
        applied to train.epochs (orchestrator/rungs.py's auto_rungs)."""
        if self.sweep.grace_period != "auto":
            return int(self.sweep.grace_period)
        from orchestrator.rungs import auto_rungs

        return auto_rungs(self.train.epochs)[0]

    def reduction(self) -> int:
        """ASHA's reduction factor: sweep.reduction_factor, or where it is auto the recorded regret rule's."""
        if self.sweep.reduction_factor != "auto":
            return int(self.sweep.reduction_factor)
        from orchestrator.rungs import auto_rungs

        return auto_rungs(self.train.epochs)[1]

    def space(self) -> dict[str, Domain]:
        """search_space as domains (orchestrator/space.py); the YAML form stays the run's identity."""
        return parse_space(self.search_space)

    def _values(self, key: str, trials=None) -> set:
        dom = self.space().get(key)
        vals = set(dom.values) if dom else {getattr(self.train, key)}
        trials = self.trials if trials is None else trials
        if trials:
            vals = {t.get(key, v) for t in trials for v in vals}
        return vals

    def students(self) -> list[str]:
        """Every student name this config trains from scratch (a pruning trial's student is its pruned source)."""
        if "prune_from" in self.search_space:
            return []
        if not self.trials:
            return [] if self.train.prune_from else sorted(self._values("student"))
        scratch = [t for t in self.trials if not t.get("prune_from", self.train.prune_from)]
        return sorted(self._values("student", scratch)) if scratch else []

    def losses(self) -> list[str]:
        return sorted(self._values("loss"))

    def trial_config(self, overrides: dict) -> TrainConfig:
        return from_dict(TrainConfig, merge_train(to_dict(self.train), overrides))


def load_sweep_config(path, overrides: dict | None = None) -> SweepConfig:
    return from_dict(SweepConfig, apply_overrides(load_yaml(path), overrides))
