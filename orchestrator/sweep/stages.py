"""The sweep's stages after the plan: search (Ray Tune under ASHA, or a chunk of a ledger's candidates), select
(the finalists and the final stage's length, fitted to what the budget leaves) and final (each finalist from
scratch, longer, once per seed)."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config import SweepConfig, TrainConfig, resolve_path, to_dict
from orchestrator.run.io import atomic_write_json
from orchestrator.run.layout import FINAL_DIR
from orchestrator.run.rundir import Run
from orchestrator.sweep.candidates import ledger_finalists, ledger_rungs, open_ledger
from orchestrator.sweep.final_budget import final_stage_minutes, finalist_epoch_s, fit_final_epochs
from orchestrator.sweep.plan import Plan, check_finalists, search_trials
from orchestrator.sweep.resources import Slots
from orchestrator.sweep.tune_run import check_complete, fit, searcher, to_tune_space, trainable, unpacked
from trainables.config import resume_key
from trainables.losses import NEEDS_TEACHER

log = logging.getLogger(__name__)


def search(cfg: SweepConfig, run: Run, data):
    """Stage 2: the search space and trials under ASHA."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from orchestrator.sweep.tune_callbacks import DriverMemory

    s = cfg.sweep
    if s.ledger:
        return ledger_search(cfg, run, data)
    asha = ASHAScheduler(
        time_attr="epoch", max_t=cfg.train.epochs, grace_period=cfg.grace(), reduction_factor=cfg.reduction()
    )
    results = fit(
        trainable(cfg, data, cfg.train, s.cpus_per_trial),
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
    check_complete(results, cfg.name, run.path, search_trials(cfg))
    return results


LEDGER_TODO = "ledger_todo.json"  # in the Tune experiment's folder: the candidates this chunk was started with


def ledger_search(cfg: SweepConfig, run: Run, data):
    """Stage 2 kept in a ledger (sweep.ledger): the candidates not yet ended, as one Tune experiment whose
    scheduler judges them against every candidate the ledger holds; None where all have ended."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from orchestrator.sweep.tune_callbacks import DriverMemory, LedgerCheckpoints, LedgerScheduler

    s = cfg.sweep
    ledger, candidates = open_ledger(cfg)
    entries = ledger.entries(candidates)
    path = Path(run.storage) / cfg.name
    todo_file = path / LEDGER_TODO
    if tune.Tuner.can_restore(str(path)) and todo_file.is_file():  # the same chunk, interrupted: as it began
        todo = json.loads(todo_file.read_text())
    else:
        todo = [e.variant for e in entries if e.end is None]
    left = sum(e.end is None for e in entries)
    log.info(f"ledger {s.ledger}: {len(entries) - left} of {len(entries)} candidates ended, {left} left to train")
    if not todo:
        return None
    if not todo_file.is_file():
        atomic_write_json(todo_file, todo)
    resumes = _kept_resumes(  # the candidates cut off mid-run; keyed by the trial's config as the grid gives it
        ledger,
        {
            resume_key({"_variant": e.variant}): (p.name, f"c{e.index:03d}")
            for e in entries
            if e.end is None and (p := ledger.state(e.index)) is not None
        },
        "search",
    )
    results = fit(
        trainable(cfg, data, cfg.train, s.cpus_per_trial, resumes),
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
        callbacks=[DriverMemory(cfg.name), LedgerCheckpoints(ledger, candidates)],
    )
    check_complete(results, cfg.name, run.path, len(todo))
    return results


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
        df = unpacked(r.metrics_dataframe)
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


def select(cfg: SweepConfig, run: Run, results, plan: Plan | None, slots: Slots, t_start: float) -> Selection:
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
    if fitted and not kept and cfg.final.top * cfg.final.seeds <= slots.final:  # all at once: each trial
        # refits its own length to the budget at its measured epochs (the fit above is an estimate)
        budget = dict(time_budget_s=final_minutes * 60, min_epochs=min(cfg.final.min_epochs, epochs))
        finalists = [dataclasses.replace(c, **budget) for c in finalists]
        log.info(
            f"final stage: each trial refits its length to the {final_minutes:.3g} minutes after every epoch, at "
            f"the pace of its last ones (never under {budget['min_epochs']} epochs)"
        )
    run.write_final_base(to_dict(finalists[0]))
    return Selection(finalists, cfg.final.seeds, cfg.final.top, **fitted, chosen=chosen)


def final(cfg: SweepConfig, run: Run, finalists: list[TrainConfig], data, slots: Slots):
    """Stage 4: each finalist from scratch, longer, once per seed (train.seed .. train.seed + seeds - 1, so
    that `--set train.seed=N` reseeds the whole run); the winner is the stage's base, the others its
    variants."""
    from ray import tune

    winner = finalists[0]
    log.info(
        f"final stage: {', '.join(f'{c.student} {c.loss}' for c in finalists)} for {winner.epochs} epochs "
        f"x {cfg.final.seeds} seed(s)"
    )
    seeds = [cfg.train.seed + i for i in range(cfg.final.seeds)]
    space = {"seed": tune.grid_search(seeds)}
    base = to_dict(winner)
    variants = [{k: v for k, v in to_dict(c).items() if base[k] != v} for c in finalists]
    if len(finalists) > 1:
        space["_variant"] = tune.grid_search(variants)
    resumes, callbacks = {}, []
    if cfg.sweep.ledger:  # a search in chunks: the final stage's trials keep their checkpoints in the ledger too
        from orchestrator.run.ledger import Ledger
        from orchestrator.sweep.tune_callbacks import FinalCheckpoints

        ledger = Ledger(resolve_path(cfg.sweep.ledger))
        configs = [{"seed": s} | ({"_variant": v} if len(finalists) > 1 else {}) for s in seeds for v in variants]
        names = {resume_key(c): (final_name(base, c), f"seed {c['seed']}") for c in configs}
        resumes = _kept_resumes(ledger, names, "final stage")
        callbacks = [FinalCheckpoints(ledger, lambda c: final_name(base, c))]
    final = fit(
        trainable(cfg, data, winner, slots.final_cpus, resumes),
        space,
        FINAL_DIR,
        run.path,
        tune.TuneConfig(
            metric="val_acc", mode="max", max_concurrent_trials=cfg.sweep.max_concurrent_trials, reuse_actors=True
        ),
        cfg.sweep,
        cfg.final.seeds * len(finalists),
        callbacks=callbacks,
    )
    check_complete(final, cfg.name, run.path, cfg.final.seeds * len(finalists))
    return final


def final_name(base: dict, config: dict) -> str:
    """The file a ledger keeps a final-stage trial's checkpoint in: named by the stage's settings (less what
    each machine resolves for itself) and the trial's config (its seed, its variant), so that a final stage of
    other settings never goes on from it."""
    import hashlib

    from orchestrator.run.ledger import MACHINE_KEYS

    key = json.dumps(
        {"base": {k: v for k, v in base.items() if k not in MACHINE_KEYS}, "trial": config}, sort_keys=True
    )
    return f"final-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


def _kept_resumes(ledger, names: dict[str, tuple[str, str]], stage: str) -> dict[str, bytes]:
    """{resume key: checkpoint bytes} of the trials whose checkpoint the ledger kept (`names`: key -> (file,
    what to call the trial)) and that can be read whole; the others start from their first epoch."""
    from trainables.train import load_resume

    out, said = {}, []
    for key, (name, label) in names.items():
        if (p := ledger.kept(name)) is not None:
            blob = p.read_bytes()
            state = load_resume(io.BytesIO(blob))  # None where torn: that trial starts over
            if state is not None:
                out[key] = blob
                said.append(f"{label} after epoch {state['epoch']}")
    if said:
        log.info(f"{stage}: from the checkpoints the ledger kept, these go on: {', '.join(said)}")
    return out
