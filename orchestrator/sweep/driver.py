"""The sweep driver, as one straight line: prepare (the split, the teacher and its speed) -> resolve (the run as
it will go, decided once: grown, its GPU share, its layout, its plan, its search skipped or not) -> the stages
(search, select, final: stages.py, on Ray Tune through tune_run.py) -> finish (the results table, and the meta
record built once from what the steps returned) -> export. On a cluster head:
`ray submit cluster.yaml orchestrator/submit.py -- --config ...`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config import SweepConfig, TrainConfig, to_dict
from orchestrator.release.results import trials
from orchestrator.run.rundir import Run
from orchestrator.sweep import ray_session
from orchestrator.sweep.final_budget import final_speedup
from orchestrator.sweep.lifecycle import Opened, open_run
from orchestrator.sweep.plan import Plan, grow_candidates, grow_config, make_plan, search_statement, skip_check
from orchestrator.sweep.prepare import Measured, Prepared, fill, measure
from orchestrator.sweep.rates import pick_layout, student_epoch_seconds, student_rates
from orchestrator.sweep.resources import Slots, driver_gpu, slots_for, with_gpus
from orchestrator.sweep.stages import Selection, final, search, select
from orchestrator.sweep.tune_run import error_count, results_table
from trainables.config import KWARGS
from trainables.layout import LAYOUTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resolved:
    """The run as it will go, decided once: the config its trials run with (grown, its GPU share, its layout;
    the run's identity keeps what the user wrote), the cluster's slots, the plan (None where trials use GPUs:
    the probe times the CPU), the search's statement, and why the search is skipped ("" where it runs)."""

    cfg: SweepConfig
    slots: Slots
    plan: Plan | None
    stated: dict
    skipped: str


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
    """Run the sweep (resuming an interrupted one of the same name) and export it. Returns the run directory
    (of a run on shared storage: the local copy of its records).

    A finished run is not trained again: it is exported as it is, unless `force` starts it over. `t_start`:
    when the budget's clock started (the command's start; default: now)."""
    # experiment-state snapshots on a period (tune_run.snapshot_period), not Tune's "auto", which can wait longer
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    t_start = time.time() if t_start is None else t_start
    opened = open_run(cfg, teacher_path, force, export_to)
    run = opened.run
    log.info("students: " + ", ".join(f"{k} ({v:,} params)" for k, v in opened.counts.items()))
    if not opened.finished:
        if "runtime_resources/working_dir_files" in run.path:
            log.info(
                f"warning: the run directory {run.path} is inside Ray's temporary copy of the project "
                "(ray job submit --working-dir) and goes when the job's session does; "
                "pass --set sweep.storage=/shared/path/runs"
            )
        with ray_session.connected(run, address, dashboard):
            measured = measure(opened.cfg, teacher_path, "cuda" if _trials_on_gpus(opened.cfg) else "cpu")
            r = resolve(opened.cfg, run, measured, t_start)
            data, facts = fill(measured)  # the cache, built once the plan has been said
            results = None if r.skipped else search(r.cfg, run, data)  # None too: a ledger all ended
            selection, fin = None, None
            if r.cfg.final.epochs:
                selection = select(r.cfg, run, results, r.plan, r.slots, t_start)
                fin = final(r.cfg, run, selection.finalists, data, r.slots)
        finish(r, opened, facts, results, selection, fin, t_start)
    opened.export(export_to, force, tta)
    return run.fetch()


def _trials_on_gpus(cfg: SweepConfig) -> bool:
    """Whether the trials get GPUs and this machine has one (the teacher's cache is then built on it)."""
    return bool(with_gpus(cfg, quiet=True).sweep.gpus_per_trial) and driver_gpu()


def resolve(cfg: SweepConfig, run: Run, measured: Measured, t_start: float) -> Resolved:
    """The run as it will go, from the config, what the run directory already decided (a search once grown
    stays grown; one once begun is finished; one once skipped stays skipped) and the speeds measured here;
    said in the log before the cache and the trials cost anything, and what must outlive a crash (grown,
    skipped) kept in the run."""
    kept_grown = run.search_grown
    if kept_grown:
        cfg = grow_config(cfg, kept_grown["candidates"])
    cfg = with_gpus(cfg)
    slots = slots_for(cfg)
    began, prior = run.search_begun(), run.search_skipped
    fresh = not began and not prior
    plan = None
    if not cfg.sweep.gpus_per_trial:
        plan = _plan(cfg, slots, measured, t_start, may_skip=fresh, may_grow=fresh and not kept_grown)
    if plan and plan.grown:
        cfg = grow_config(cfg, plan.grown)
        run.grow_search(plan.grown, plan.grow_why)
    if plan and plan.grow_why:
        stated = _stated(cfg, plan.grow_why, grown=bool(plan.grown))
    else:
        stated = _stated(cfg, kept_grown.get("reason", ""), grown=bool(kept_grown))
    log.info(stated["statement"])
    if plan and plan.layout:  # what the trials run with; the run's identity keeps "auto"
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, layout=plan.layout))
    skipped = prior or ("" if began or plan is None else plan.search_skipped)
    if prior:
        log.info(f"search: skipped when this run began ({prior})")
    elif skipped:
        run.skip_search(skipped)
    return Resolved(cfg, slots, plan, stated, skipped)


def _left(cfg: SweepConfig) -> tuple[SweepConfig, bool]:
    """What the plan times, and whether it has a search: a search kept in a ledger trains only the candidates
    it has not ended (a chunk after the first plans the rest, not the whole search again)."""
    if not cfg.sweep.ledger or not cfg.search_space:
        return cfg, True
    from orchestrator.sweep.candidates import open_ledger

    ledger, candidates = open_ledger(cfg)
    left = sum(e.end is None for e in ledger.entries(candidates))
    return dataclasses.replace(cfg, sweep=dataclasses.replace(cfg.sweep, num_samples=max(left, 1))), left > 0


def _plan(cfg: SweepConfig, slots: Slots, m: Measured, t_start: float, may_skip: bool, may_grow: bool) -> Plan:
    """The run's plan from speeds measured here. Where `may_grow` (no search has begun) and the budget affords
    grow.min_candidates beside the final stage at its cap (grow_candidates), the plan is the grown search's,
    and its `grown` says how many candidates. Else, where `may_skip` and the search is a check the budget
    cannot spare (skip_check), the plan is the run without it, and its `search_skipped` says why."""
    n_train, n_val = m.facts.n_train, m.facts.n_val
    timed, searching = _left(cfg)
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
    args = (epoch_s, m.cache_forwards, m.teacher_img_s, slots.search, elapsed, speedup, slots.final, m.members_s)
    p = make_plan(timed, *args, search=searching)
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
    log.info(
        p.line(cfg.minutes)
        + (f"; final trials on {slots.final_cpus:g} CPUs: {speedup:.2f}x an epoch's speed" if speedup != 1.0 else "")
    )
    return p


def _stated(cfg: SweepConfig, grow_why: str, grown: bool) -> dict:
    """search_statement, with what the budget affords a grown search (grow) where the config has one."""
    stated = search_statement(cfg)
    if grow_why:
        stated["grow"] = grow_why
        stated["statement"] = (
            f"search grown: {grow_why}. {stated['statement']}" if grown else f"{stated['statement']} (grow: {grow_why})"
        )
    return stated


def finish(
    r: Resolved, opened: Opened, facts: Prepared, results, selection: Selection | None, fin, t_start: float
) -> dict:
    """The results table (final rows show the winner's settings; each trial's stop reason) and the meta
    record, built here once from what the steps returned and written last: the finished marker."""
    from orchestrator.sweep.tune_callbacks import driver_memory

    cfg, run = r.cfg, opened.run
    tables = [results_table(results, cfg, cfg.train, "search")] if results is not None else []
    winner = selection.finalists[0] if selection else None
    if fin is not None:
        tables.append(results_table(fin, cfg, winner, "final"))
    table = _with_winner(_concat(tables), cfg, winner)
    # why each trial ended: finished, stopped by ASHA, failed, diverged
    status = {t["trial"]: t["status"] for t in trials(run.fetch(), finished=True)}
    table["status"] = table["trial_id"].map(status)
    run.write_results(table)
    meta = facts.record()
    if r.plan:
        meta["plan"] = r.plan.record()
    meta["search"] = {**r.stated, "skipped": r.skipped} if r.skipped else r.stated
    if not r.skipped:
        meta["driver_memory"] = driver_memory(cfg.name)
    if selection:
        meta["final"] = selection.record()
    meta.update(
        errors=sum(error_count(x) for x in (results, fin) if x is not None),
        name=cfg.name,
        config=to_dict(cfg),
        wall_s=time.time() - t_start,
        n_trials=sum(len(t) for t in tables),
    )
    opened.finish(meta)
    log.info("\n" + summary(table, meta))
    return meta


def _concat(tables: list):
    import pandas as pd

    return pd.concat(tables, ignore_index=True).sort_values(["stage", "val_acc"], ascending=[False, False])


def _with_winner(table, cfg: SweepConfig, winner: TrainConfig | None):
    """Final rows ran with the winner's settings: shown, not left blank (a skipped search left no column
    for what the trials vary: one is made)."""
    import pandas as pd

    if winner is None:
        return table
    for key in sorted({k for t in cfg.trials for k in t} | set(cfg.search_space)):
        if key not in table:
            table.insert(2, key, None)
    for col in table.columns:
        head, dot, sub = col.partition(".")
        if col in TrainConfig.__dataclass_fields__ or (dot and head == KWARGS):
            mask = (table["stage"] == "final") & table[col].isna()
            if mask.any():
                table[col] = table[col].astype(object)
                value = winner.student_kwargs.get(sub) if dot else getattr(winner, col)
                table.loc[mask, col] = pd.Series([value] * int(mask.sum()), index=table.index[mask], dtype=object)
    return table


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
