"""The sweep driver: prepare (data, teacher logits once) -> search (Ray Tune with ASHA) -> select -> final
stage -> finish (results table, meta, export). Ray API calls live here (with the driver's Tune callbacks,
tune_callbacks.py, and its session, ray_session.py), in trainables/tune_trainable.py and in the teacher's
cluster code (orchestrator/teacher/cache_ray.py, train.py). On a cluster head:
`ray submit cluster.yaml orchestrator/submit.py -- --config ...`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config import SweepConfig, TrainConfig, to_dict
from orchestrator.errors import UserError
from orchestrator.release.results import trial_id_of, trials
from orchestrator.run.io import atomic_write_json
from orchestrator.run.layout import FINAL_DIR
from orchestrator.run.rundir import Run
from orchestrator.space import parse_space
from orchestrator.sweep import ray_session
from orchestrator.sweep.candidates import ledger_finalists, ledger_rungs, open_ledger
from orchestrator.sweep.lifecycle import Opened, open_run
from orchestrator.sweep.plan import (
    Plan,
    check_finalists,
    final_cpus,
    final_slots,
    final_speedup,
    final_stage_minutes,
    finalist_epoch_s,
    fit_final_epochs,
    grow_candidates,
    grow_config,
    make_plan,
    pick_layout,
    search_statement,
    search_trials,
    skip_check,
    student_epoch_seconds,
    student_rates,
)
from orchestrator.sweep.prepare import prepare_data
from trainables.config import DETAIL, KWARGS, from_report
from trainables.layout import LAYOUTS
from trainables.losses import NEEDS_TEACHER

log = logging.getLogger(__name__)


def to_tune_space(space: dict, trials: list | tuple = ()) -> dict:
    """The YAML search space (+ explicit trial variants) as Ray Tune's search space."""
    from ray import tune

    make = {"choice": tune.choice, "grid": tune.grid_search}
    ranges = {"uniform": tune.uniform, "loguniform": tune.loguniform}
    out: dict = {}
    for key, d in parse_space(space).items():
        dom = make[d.kind](list(d.values)) if d.kind in make else ranges[d.kind](*d.values)
        head, dot, sub = key.partition(".")
        if dot:  # student_kwargs.<kwarg>: nested, as Tune draws it (trial_config merges it into the base's)
            out.setdefault(head, {})[sub] = dom
        else:
            out[key] = dom
    if trials:
        out["_variant"] = tune.grid_search([dict(t) for t in trials])
    return out


def snapshot_period(n_trials: int) -> float:
    """Seconds between Tune's experiment-state snapshots for a stage of `n_trials`: 0.05 s a trial. The
    state is ~22 KB a trial, so the driver writes (and uploads) ~0.44 MB/s whatever the count: a small
    sweep snapshots about every epoch (a killed driver redoes at most one), 10,000 trials every 500 s.
    TUNE_GLOBAL_CHECKPOINT_S, when set, wins."""
    return float(_USER_PERIOD or max(0.1, 0.05 * n_trials))


_USER_PERIOD = os.environ.get("TUNE_GLOBAL_CHECKPOINT_S")


def _fit(trainable, param_space: dict, name: str, storage: str, tune_config, s, n_trials: int, callbacks=()):
    """One Tune experiment of `n_trials` under storage/name, resumed when an interrupted one is there.

    Each trial's directory gets the records kdsweep reads (result.json, params.json, checkpoints) and the
    TensorBoard events, not Tune's CSV copy of result.json (TUNE_DISABLE_AUTO_CALLBACK_LOGGERS, set by
    run_sweep). Checkpoints: Tune keeps all and snapshots on a period; CheckpointRetention deletes the ones
    no snapshot can still name (orchestrator/sweep/tune_callbacks.py says why not Tune's num_to_keep)."""
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback, TBXLoggerCallback

    from orchestrator.sweep.tune_callbacks import CheckpointRetention

    period = snapshot_period(n_trials)
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = str(period)  # read when Tune's controller starts
    callbacks = [
        JsonLoggerCallback(),
        TBXLoggerCallback(),
        CheckpointRetention(s.keep_checkpoints, safe_s=max(600.0, 3 * period + 60)),
        *callbacks,
    ]
    path = f"{storage}/{name}"
    if tune.Tuner.can_restore(path):
        log.info(f"resuming the interrupted experiment in {path}")
        return tune.Tuner.restore(path, trainable, resume_errored=True, param_space=param_space).fit()
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune_config,
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            verbose=1,
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=s.max_failures),
        ),
    ).fit()


class Interrupted(RuntimeError):
    """Tune returned with trials neither finished nor failed (Ctrl-C / SIGINT): the run is not complete."""


def _check_complete(results, name: str, run_dir: str, expected: int = 0):
    """Tune returns normally after Ctrl-C: trials neither finished nor failed, or fewer trials than the stage
    makes (a searcher, and Tune's own variant generator, create trials as slots free up, so a stopped stage
    can hold only those it had begun), mean the run is not complete."""
    if results.num_terminated + results.num_errors < len(results) or len(results) < expected:
        raise Interrupted(
            f"sweep {name} was interrupted before all its trials ended; run the same command again "
            f"to resume it from {run_dir}"
        )


def _trial_id(result) -> str:
    """Tune's trial id (its last report's, else the one in its directory's name)."""
    return result.metrics.get("trial_id") or trial_id_of(Path(result.path).name)


def _unpacked(df):
    """A frame of Tune's results with each row's detail string (`to_report`) as columns of its own."""
    import pandas as pd

    if df is None or DETAIL not in df:
        return df
    rows = [from_report({DETAIL: d}) if isinstance(d, str) else {} for d in df[DETAIL]]
    return pd.concat([df.drop(columns=DETAIL).reset_index(drop=True), pd.DataFrame(rows)], axis=1)


def _table(results, cfg: SweepConfig, base: TrainConfig, stage: str):
    """Tune's results as one row per trial: what it ran with (resolved) and its best validation epoch."""
    import pandas as pd

    df = _unpacked(results.get_dataframe(filter_metric="val_acc", filter_mode="max"))
    # a trial that died before its first report has no metric, so Tune leaves it out: it gets a row (its
    # status, from its directory, says why it failed)
    seen = set(df["trial_id"]) if "trial_id" in df else set()
    dead = [
        pd.json_normalize({"trial_id": _trial_id(r), "config": r.config or {}}, sep="/")
        for r in results
        if r.error is not None and _trial_id(r) not in seen
    ]
    df = pd.concat([df, *dead], ignore_index=True) if dead else df
    keep = [c for c in df.columns if c.startswith("config/")]
    cols = [
        "trial_id",
        *keep,
        "val_acc",
        "val_loss",
        "epoch",
        "params",
        "precision",
        "images_per_s",
        "elapsed_s",
        "node",
    ]
    table = df[[c for c in cols if c in df.columns]].rename(
        columns=lambda c: c.removeprefix("config/").removeprefix("_variant/").replace(f"{KWARGS}/", f"{KWARGS}.")
    )
    for col in table.columns:  # a variant that left a key alone ran with the base config's value
        if col in TrainConfig.__dataclass_fields__ and table[col].isna().any():
            table[col] = table[col].astype(object).where(table[col].notna(), getattr(base, col))
    table.insert(0, "stage", stage)
    return table


def best_trial_configs(results, base: dict, top: int = 1, control: bool = True) -> list[TrainConfig]:
    """The resolved settings of the `top` trials with the best validation accuracy at any epoch, best first
    (distinct settings only). `control` False (final.control: reference) leaves out the no-teacher trials
    where any distillation trial reported."""
    from trainables.tune_trainable import trial_config

    ranked = []
    for r in results:
        df = r.metrics_dataframe
        if df is not None and "val_acc" in df and len(df) and r.config is not None:
            ranked.append((float(df["val_acc"].max()), trial_config(r.config, base)))
    ranked.sort(key=lambda x: -x[0])
    if not control and any(c.loss in NEEDS_TEACHER for _, c in ranked):
        ranked = [(v, c) for v, c in ranked if c.loss in NEEDS_TEACHER]
    out = []
    for _, c in ranked:
        if c not in out:
            out.append(c)
    return out[:top]


def search_seconds_per_epoch(results, base: dict, finalists: list[TrainConfig]) -> list[float]:
    """Each finalist's wall seconds per epoch (training + validation) in the search, where trials ran side by
    side as the final stage's will: the median over the search trials with its settings."""
    from trainables.tune_trainable import trial_config

    rates: list[tuple[TrainConfig, float]] = []
    for r in results:
        df = _unpacked(r.metrics_dataframe)
        if df is not None and {"elapsed_s", "epoch"} <= set(df) and len(df) and r.config is not None:
            last = df.sort_values("epoch").iloc[-1]
            rates.append((trial_config(r.config, base), float(last["elapsed_s"]) / int(last["epoch"])))
    out = []
    for f in finalists:
        mine = [sec for c, sec in rates if dataclasses.replace(c, epochs=f.epochs) == f]
        if not mine:
            raise RuntimeError(
                f"final.minutes: the search holds no timed epoch of finalist {f.student} {f.loss}, "
                f"so the stage's length cannot be fitted to the budget; unset final.minutes"
            )
        out.append(statistics.median(mine))
    return out


@dataclass(frozen=True)
class Slots:
    """What the cluster holds for the trials: search trials at a time, each final trial's CPUs, final trials
    at a time."""

    search: int
    final_cpus: float
    final: int


def gpu_share(have: dict, cpus_per_trial: float) -> float:
    """`sweep.gpus_per_trial: auto` on a cluster holding `have` (Ray's resources): 0 without GPUs, else the
    GPUs split evenly over the trials its CPUs can run at once (a student leaves most of a GPU idle, so
    several share one), at most one GPU a trial; rounded down to Ray's 1e-4 resolution."""
    gpus, slots = have.get("GPU", 0), max(1, int(have.get("CPU", 0) // cpus_per_trial))
    return math.floor(min(1.0, gpus / slots) * 1e4) / 1e4 if gpus else 0.0


def with_gpus(cfg: SweepConfig) -> SweepConfig:
    """`cfg` with its GPU share resolved for the connected cluster, and where the trials and the teacher run
    said in the log's first lines."""
    import ray

    s = cfg.sweep
    if s.gpus_per_trial != "auto":
        return cfg
    have = ray.cluster_resources()
    share = gpu_share(have, s.cpus_per_trial)
    if share:
        log.info(
            f"GPUs: {have['GPU']:g} on the cluster, each trial gets {share:g} of one "
            f"({int(1 / share)} trials to a GPU; sweep.gpus_per_trial: auto)"
            + (", the teacher's cache built on this machine's GPU" if _driver_gpu() else "")
        )
    return dataclasses.replace(cfg, sweep=dataclasses.replace(s, gpus_per_trial=share))


def _driver_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _slots(cfg: SweepConfig) -> Slots:
    import ray

    s, have = cfg.sweep, ray.cluster_resources()
    for res, need in (("CPU", s.cpus_per_trial), ("GPU", s.gpus_per_trial)):
        if need > have.get(res, 0):
            raise UserError(
                f"sweep.{res.lower()}s_per_trial is {need:g} but the Ray cluster has "
                f"{have.get(res, 0):g} {res}s: no trial could ever start; lower it or add nodes"
            )
    search = min(
        [s.max_concurrent_trials, int(have.get("CPU", 1) // s.cpus_per_trial)]
        + ([int(have.get("GPU", 0) // s.gpus_per_trial)] if s.gpus_per_trial else [])
    )
    fcpus = final_cpus(cfg)
    if cfg.final.epochs and fcpus > have.get("CPU", 0):
        raise UserError(
            f"final.cpus_per_trial is {fcpus:g} but the Ray cluster has {have.get('CPU', 0):g} "
            "CPUs: no final trial could ever start; lower it or add nodes"
        )
    return Slots(search, fcpus, final_slots(cfg, have.get("CPU", 1), search))


def _planner(
    cfg: SweepConfig, slots: Slots, t_start: float, planned: list[Plan], may_skip: bool = True, may_grow: bool = True
):
    """prepare_data's hook before the cache: the run's plan from speeds measured here, logged before the
    cache and the trials cost anything, and appended to `planned` for the stages and the meta record. Where
    `may_grow` (no search has begun) and the budget affords grow.min_candidates beside the final stage at its
    cap (grow_candidates), the plan is the grown search's, and its `grown` says how many candidates. Else,
    where `may_skip` and the search is a check the budget cannot spare (skip_check), the plan is the run
    without it, and its `search_skipped` says why."""

    def log_plan(n_train, n_val, teacher_img_s, cache_forwards, members_s):
        if cfg.sweep.gpus_per_trial:  # the probe times the CPU; a GPU plan would need a GPU probe
            return
        threads, layout, rates = int(cfg.sweep.cpus_per_trial), cfg.train.layout, None
        if layout == "auto" and cfg.students():  # the trials' step in the layout faster here, timed in both
            rates = student_rates(cfg, threads, tuple(LAYOUTS))
            layout = pick_layout(rates)
            log.info(
                f"layout: {layout} for the trials' step, the faster here (training images/s, {threads} thread(s): "
                + "; ".join(f"{lay} " + ", ".join(f"{k} {v:.0f}" for k, v in r.items()) for lay, r in rates.items())
                + ")"
            )
        epoch_s = student_epoch_seconds(cfg, n_train, n_val, threads, layout=layout, rates=rates and rates[layout])
        speedup = final_speedup(cfg, n_train, n_val, epoch_s, alone=slots.final == 1, layout=layout)
        elapsed = time.time() - t_start
        args = (epoch_s, cache_forwards, teacher_img_s, slots.search, elapsed, speedup, slots.final, members_s)
        p = make_plan(cfg, *args)
        grown, grow_why = 0, ""
        if may_grow and cfg.grow.search_space:
            fixed = elapsed + p.beside_search_s(cfg, slots.final)
            grown, grow_why = grow_candidates(cfg, epoch_s, slots.search, fixed)
            log.info(f"grow: {grow_why}")
        if grown:
            p = make_plan(grow_config(cfg, grown), *args)
        elif may_skip and (why := skip_check(cfg, p, without := make_plan(cfg, *args, search=False))):
            p = dataclasses.replace(without, search_skipped=why)
            log.info(why)
        if grow_why:
            p = dataclasses.replace(p, grown=grown, grow_why=grow_why)
        if rates is not None:
            p = dataclasses.replace(p, layout=layout, layout_rates=rates)
        planned.append(p)
        log.info(
            p.line(cfg.minutes)
            + (
                f"; final trials on {slots.final_cpus:g} CPUs: {speedup:.2f}x an epoch's speed"
                if speedup != 1.0
                else ""
            )
        )

    return log_plan


def _trainable(cfg: SweepConfig, data, base: TrainConfig, cpus: float):
    """The Tune trainable of one stage: the shared data (object store), `base` settings, `cpus` threads."""
    from ray import tune

    from trainables.tune_trainable import distill_trainable

    s = cfg.sweep
    t = tune.with_parameters(
        distill_trainable, data=data, base=to_dict(base), threads=max(1, int(cpus)), use_gpu=s.gpus_per_trial > 0
    )
    return tune.with_resources(t, {"cpu": cpus, "gpu": s.gpus_per_trial})


def searcher(cfg: SweepConfig):
    """Tune's search algorithm for sweep.searcher: its random/grid variant generator (holding the stage's
    concurrency) or Optuna's TPE, either seeded by train.seed, so that a search started over (a machine that
    lost the run directory) proposes the same candidates in the same order."""
    if cfg.sweep.searcher == "random":
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(max_concurrent=cfg.sweep.max_concurrent_trials, random_state=cfg.train.seed)
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=cfg.train.seed))


def _search(cfg: SweepConfig, run: Run, data):
    """Stage 2: the search space and trials under ASHA."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from orchestrator.sweep.tune_callbacks import DriverMemory

    s = cfg.sweep
    if s.ledger:
        return _ledger_search(cfg, run, data)
    asha = ASHAScheduler(
        time_attr="epoch", max_t=cfg.train.epochs, grace_period=cfg.grace(), reduction_factor=cfg.reduction()
    )
    results = _fit(
        _trainable(cfg, data, cfg.train, s.cpus_per_trial),
        to_tune_space(cfg.search_space, cfg.trials),
        cfg.name,
        run.storage,
        tune.TuneConfig(
            metric="val_acc",
            mode="max",
            num_samples=s.num_samples,
            # Tune applies it to a Searcher (Optuna); the variant generator holds its own
            max_concurrent_trials=s.max_concurrent_trials if s.searcher == "optuna" else None,
            search_alg=searcher(cfg),
            scheduler=asha,
            reuse_actors=True,
        ),
        s,
        search_trials(cfg),
        callbacks=[DriverMemory(cfg.name)],
    )
    _check_complete(results, cfg.name, run.path, search_trials(cfg))
    return results


LEDGER_TODO = "ledger_todo.json"  # in the Tune experiment's folder: the candidates this chunk was started with


def _ledger_search(cfg: SweepConfig, run: Run, data):
    """Stage 2 kept in a ledger (sweep.ledger): the candidates not yet ended, as one Tune experiment whose
    scheduler judges them against every candidate the ledger holds; None where all have ended."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from orchestrator.sweep.tune_callbacks import DriverMemory, LedgerScheduler

    s = cfg.sweep
    ledger, candidates = open_ledger(cfg)
    entries = ledger.entries(candidates)
    path = Path(run.storage) / cfg.name
    todo_file = path / LEDGER_TODO
    if tune.Tuner.can_restore(str(path)) and todo_file.is_file():  # the same chunk, interrupted: as it began
        todo = json.loads(todo_file.read_text())
    else:
        todo = [e.variant for e in entries if e.end is None]
    done = len(entries) - len([e for e in entries if e.end is None])
    log.info(f"ledger {s.ledger}: {done} of {len(entries)} candidates ended, {len(todo)} to train in this chunk")
    if not todo:
        return None
    if not todo_file.is_file():
        atomic_write_json(todo_file, todo)
    results = _fit(
        _trainable(cfg, data, cfg.train, s.cpus_per_trial),
        {"_variant": tune.grid_search(todo)},
        cfg.name,
        run.storage,
        tune.TuneConfig(
            metric="val_acc",
            mode="max",
            num_samples=1,
            search_alg=BasicVariantGenerator(max_concurrent=s.max_concurrent_trials),
            scheduler=LedgerScheduler(ledger, candidates, cfg.train.epochs, *ledger_rungs(cfg, ledger)),
            reuse_actors=True,
        ),
        s,
        len(todo),
        callbacks=[DriverMemory(cfg.name)],
    )
    _check_complete(results, cfg.name, run.path, len(todo))
    return results


@dataclass(frozen=True)
class Selection:
    """The final stage as the selection made it: the finalists (best first, at the stage's length), and where
    a budget fitted that length, the budget and the seconds per epoch it used; `record()` is its meta entry."""

    finalists: list[TrainConfig]
    seeds: int
    top: int
    minutes: float | None = None
    epochs_cap: int | None = None
    seconds_per_epoch: list[float] | None = None  # the search's measurement, or the plan's probe
    chosen: str = ""  # how the winner was chosen where a paired test compared the two best

    def record(self) -> dict:
        out = dict(seeds=self.seeds, top=self.top)
        if self.minutes is not None:
            out.update(
                minutes=self.minutes, epochs_cap=self.epochs_cap, search_seconds_per_epoch=self.seconds_per_epoch
            )
        winner = self.finalists[0]
        if self.chosen:
            out["chosen"] = self.chosen
        return {
            **out,
            "epochs": winner.epochs,
            "winner": to_dict(winner),
            "finalists": [to_dict(c) for c in self.finalists],
        }


def _select(cfg: SweepConfig, run: Run, results, plan: Plan | None, slots: Slots, t_start: float) -> Selection:
    """Stage 3: the finalists (the best search trials' settings) and the final stage's length, fitted to
    what the budget leaves; recorded in the run (for `kdsweep results` while it trains)."""
    chosen = ""
    if cfg.sweep.ledger and not run.search_skipped:  # every chunk's candidates, not this experiment's alone
        found, chosen = ledger_finalists(cfg)
        if chosen:
            log.info(f"the search's winner: {chosen}")
    elif results is None:  # the search was skipped: the finalist is the config's one distillation trial
        found = [cfg.trial_config(t) for t in check_finalists(cfg)]
    else:
        found = best_trial_configs(results, to_dict(cfg.train), cfg.final.top, cfg.final.control == "finalist")
    if not found:
        raise RuntimeError(
            f"no search trial of {cfg.name} reported a validation accuracy, so there is no "
            f"finalist; the trials' errors are in {run.path} (error.txt per trial)"
        )
    epochs, fitted = cfg.final.epochs, {}
    final_minutes = final_stage_minutes(cfg, time.time() - t_start)
    if final_minutes and (results is not None or plan is not None):  # timed by the search, or by the plan
        speedup = plan.final_speedup if plan else 1.0  # the final trials' threads against the search's
        measured = finalist_epoch_s(
            [c.student for c in found],
            None if results is None else search_seconds_per_epoch(results, to_dict(cfg.train), found),
            plan.epoch_s if plan else {},
        )
        sec = [x / speedup for x in measured]
        epochs = fit_final_epochs(
            cfg.final.epochs, final_minutes, sec, cfg.final.seeds, slots.final, cfg.final.min_epochs
        )
        kept = run.final_base.get("epochs")
        if kept:  # a resumed stage keeps the length it began with, whatever the clock says now
            epochs = kept
        log.info(
            f"final stage: {final_minutes:.3g}-minute budget"
            + (f" (what the run's {cfg.minutes:g} minutes leave)" if cfg.minutes else "")
            + f", {max(sec):.1f} s an epoch ({'the plan' if results is None else 'the slower of search and plan'}"
            + (f" / {speedup:.2f} on {slots.final_cpus:g} CPUs" if speedup != 1.0 else "")
            + f"; {slots.final} trial(s) at a time) -> {epochs} epochs (cap {cfg.final.epochs}"
            + (f", floor {cfg.final.min_epochs}" if cfg.final.min_epochs > 1 else "")
            + ")"
            + (", as when the stage began" if kept else "")
        )
        fitted = dict(minutes=final_minutes, epochs_cap=cfg.final.epochs, seconds_per_epoch=sec)
    finalists = [dataclasses.replace(c, epochs=epochs) for c in found]
    run.write_final_base(to_dict(finalists[0]))
    return Selection(finalists, cfg.final.seeds, cfg.final.top, **fitted, chosen=chosen)


def _final(cfg: SweepConfig, run: Run, finalists: list[TrainConfig], data, slots: Slots):
    """Stage 4: each finalist from scratch, longer, once per seed (train.seed .. train.seed + seeds - 1, so
    that `--set train.seed=N` reseeds the whole run); the winner is the stage's base, the others its
    variants."""
    from ray import tune

    winner = finalists[0]
    log.info(
        f"final stage: {', '.join(f'{c.student} {c.loss}' for c in finalists)} for {winner.epochs} epochs "
        f"x {cfg.final.seeds} seed(s)"
    )
    space = {"seed": tune.grid_search([cfg.train.seed + i for i in range(cfg.final.seeds)])}
    if len(finalists) > 1:
        base = to_dict(winner)
        space["_variant"] = tune.grid_search([{k: v for k, v in to_dict(c).items() if base[k] != v} for c in finalists])
    final = _fit(
        _trainable(cfg, data, winner, slots.final_cpus),
        space,
        FINAL_DIR,
        run.path,
        tune.TuneConfig(metric="val_acc", mode="max", max_concurrent_trials=cfg.sweep.max_concurrent_trials),
        cfg.sweep,
        cfg.final.seeds * len(finalists),
    )
    _check_complete(final, cfg.name, run.path, cfg.final.seeds * len(finalists))
    return final


def _finish(
    cfg: SweepConfig, opened: Opened, tables: list, winner: TrainConfig | None, meta: dict, t_start: float
) -> dict:
    """Stage 5: the results table (final rows show the winner's settings; each trial's stop reason) and the
    meta record, written last: the finished marker."""
    import pandas as pd

    run = opened.run
    table = pd.concat(tables, ignore_index=True).sort_values(["stage", "val_acc"], ascending=[False, False])
    if winner is not None:  # final rows ran with the winner's settings: show them, not blanks
        for key in sorted({k for t in cfg.trials for k in t} | set(cfg.search_space)):  # a skipped search
            if key not in table:  # left no column for what the trials vary
                table.insert(2, key, None)
        for col in table.columns:
            head, dot, sub = col.partition(".")
            if col in TrainConfig.__dataclass_fields__ or (dot and head == KWARGS):
                mask = (table["stage"] == "final") & table[col].isna()
                if mask.any():
                    table[col] = table[col].astype(object)
                    value = winner.student_kwargs.get(sub) if dot else getattr(winner, col)
                    table.loc[mask, col] = pd.Series([value] * int(mask.sum()), index=table.index[mask], dtype=object)
    # why each trial ended: finished, stopped by ASHA, failed, diverged
    status = {t["trial"]: t["status"] for t in trials(run.fetch(), finished=True)}
    table["status"] = table["trial_id"].map(status)
    run.write_results(table)
    meta.update(name=cfg.name, config=to_dict(cfg), wall_s=time.time() - t_start, n_trials=sum(len(t) for t in tables))
    opened.finish(meta)
    log.info("\n" + summary(table, meta))
    return meta


def run_sweep(
    cfg: SweepConfig,
    teacher_path: str | None = None,
    address: str | None = None,
    export_to: str | None = None,
    force: bool = False,
    dashboard: bool = False,
    tta: str = "config",
    t_start: float | None = None,
) -> Path:
    """Run the sweep (resuming an interrupted one of the same name) as its stages: prepare (data, the
    teacher's logits once), search, select, final, finish; then export. Returns the run directory (of a run
    on shared storage: the local copy of its records).

    A finished run is not trained again: it is exported as it is, unless `force` starts it over. `t_start`:
    when the budget's clock started (the command's start; default: now)."""
    # experiment-state snapshots on a period (snapshot_period), not Tune's "auto", which can wait far longer
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    t_start = time.time() if t_start is None else t_start
    opened = open_run(cfg, teacher_path, force, export_to)
    cfg, run = opened.cfg, opened.run
    log.info("students: " + ", ".join(f"{k} ({v:,} params)" for k, v in opened.counts.items()))
    grown = run.search_grown  # a search once grown stays grown, with the candidates it grew to
    if grown:
        cfg = grow_config(cfg, grown["candidates"])
    stated = _stated(cfg, grown.get("reason", ""), grown=bool(grown))
    log.info(stated["statement"])
    if not opened.finished:
        if "runtime_resources/working_dir_files" in run.path:
            log.info(
                f"warning: the run directory {run.path} is inside Ray's temporary copy of the project "
                "(ray job submit --working-dir) and goes when the job's session does; "
                "pass --set sweep.storage=/shared/path/runs"
            )
        with ray_session.connected(run, address, dashboard):
            cfg = with_gpus(cfg)
            slots, planned = _slots(cfg), []
            device = "cuda" if cfg.sweep.gpus_per_trial and _driver_gpu() else "cpu"
            # a search once begun is finished; one once skipped stays skipped (the final stage began without it)
            began, prior = run.search_begun(), run.search_skipped
            fresh = not began and not prior
            planner = _planner(cfg, slots, t_start, planned, may_skip=fresh, may_grow=fresh and not grown)
            data, facts = prepare_data(cfg, teacher_path, device, before_cache=planner)
            meta = facts.record()
            plan = planned[0] if planned else None
            if plan and plan.grow_why:  # decided now: what the budget affords, said and (if grown) kept
                if plan.grown:
                    cfg = grow_config(cfg, plan.grown)
                    run.grow_search(plan.grown, plan.grow_why)
                stated = _stated(cfg, plan.grow_why, grown=bool(plan.grown))
                log.info(stated["statement"])
            if plan:
                meta["plan"] = plan.record()
            if plan and plan.layout:  # what the trials run with; the run's identity keeps "auto"
                cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, layout=plan.layout))
            skipped = prior or ("" if began or plan is None else plan.search_skipped)
            meta["search"] = {**stated, "skipped": skipped} if skipped else stated
            tables, errors, winner, results = [], 0, None, None
            if skipped:
                if not prior:
                    run.skip_search(skipped)
                else:  # the plan said so when the run began
                    log.info(f"search: skipped when this run began ({skipped})")
            else:
                results = _search(cfg, run, data)
                from orchestrator.sweep.tune_callbacks import driver_memory

                meta["driver_memory"] = driver_memory(cfg.name)
                if results is not None:  # None: a ledger whose candidates had all ended
                    tables, errors = [_table(results, cfg, cfg.train, "search")], _errors(results)
            if cfg.final.epochs:
                selection = _select(cfg, run, results, plan, slots, t_start)
                meta["final"] = selection.record()
                final = _final(cfg, run, selection.finalists, data, slots)
                winner = selection.finalists[0]
                tables.append(_table(final, cfg, winner, "final"))
                errors += _errors(final)
        meta.update(errors=errors)
        _finish(cfg, opened, tables, winner, meta, t_start)
    opened.export(export_to, force, tta)
    return run.fetch()


def _stated(cfg: SweepConfig, grow_why: str, grown: bool) -> dict:
    """search_statement, with what the budget affords a grown search (grow) where the config has one."""
    stated = search_statement(cfg)
    if grow_why:
        stated["grow"] = grow_why
        stated["statement"] = (
            f"search grown: {grow_why}. {stated['statement']}" if grown else f"{stated['statement']} (grow: {grow_why})"
        )
    return stated


def _errors(results) -> int:
    return sum(r.error is not None for r in results)


def summary(table, meta: dict) -> str:
    """One screen: the best trials and where the teacher's time went."""
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20):
        top = table.head(10).to_string(index=False, float_format=lambda v: f"{v:.4g}")
    t = meta.get("teacher")
    teacher = (
        (
            f"teacher {t['arch']} val_acc {t['val_acc']:.4f}, mode {t['mode']}, "
            f"{meta['teacher_forwards']:,} teacher forwards this run"
        )
        if t
        else "no teacher (CE/MSE only)"
    )
    return (
        f"sweep {meta['name']}: {meta['n_trials']} trials ({meta['errors']} errored) "
        f"in {meta['wall_s'] / 60:.1f} min, "
        f"{meta['n_train']} train / {meta['n_val']} val images\n{teacher}\n{top}"
    )
