"""`kdsweep train`: a config's trials as plain PyTorch in this process, no Ray (a GPU machine without Ray).

Each entry of the config's `trials:` list (or the base `train:` settings alone) is trained to its last
epoch on `--device` and writes what a Tune trial of the final stage writes, where `kdsweep results`,
`export` and `report` read it:

    runs/<name>/final/<trial>/params.json                 the trial's variant
    runs/<name>/final/<trial>/result.json                 one line per epoch
    runs/<name>/final/<trial>/checkpoint_best/checkpoint.pt   best validation epoch (selection: validation only)
    runs/<name>/final/<trial>/checkpoint_last/checkpoint.pt   last epoch (what a rerun resumes from)

Checkpoints are written atomically after every epoch; the same command again resumes each unfinished
trial. `trials=[K]` trains only those, so several processes can share one GPU. The run directory is
claimed like a sweep's (same config and teacher bytes, or a clear refusal), and the run is finished
(its meta file written) when every trial has ended, by whichever process ends the last one.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from orchestrator.config import SweepConfig, to_dict
from orchestrator.errors import UserError
from orchestrator.machine import machine
from orchestrator.release.results import table
from orchestrator.run import trial as record
from orchestrator.run.io import atomic_save
from orchestrator.run.layout import CKPT_FILE, FINAL_DIR
from orchestrator.sweep.lifecycle import open_run
from orchestrator.sweep.prepare import prepare_data
from trainables.config import TrainConfig
from trainables.losses import NEEDS_TEACHER
from trainables.train import load_resume, train_student

log = logging.getLogger(__name__)

STARTED_FILE = "local_started.json"


def resolve_device(device: str) -> str:
    """'auto' -> cuda when PyTorch sees a GPU, else cpu; cuda without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: PyTorch sees no GPU here; use --device cpu")
    return device


def local_trials(cfg: SweepConfig) -> list[dict]:
    """The variants a local run trains: the explicit `trials:` list, or the base settings alone."""
    if cfg.search_space:
        raise UserError(
            "kdsweep train runs the config's explicit trials only; a search_space needs "
            "`kdsweep sweep` (Ray Tune with ASHA). List the variants under `trials:` instead"
        )
    if cfg.final.epochs:
        raise UserError(
            "kdsweep train has no search stage to pick a winner from: set train.epochs to the "
            "length you want and leave `final` unset"
        )
    return [dict(t) for t in cfg.trials] or [{}]


class _Stopped(Exception):
    """A candidate the rungs stopped: ends its training loop (not an error)."""


def run_ledger_search(
    cfg: SweepConfig, teacher_path: str | None = None, device: str = "auto", minutes: float = 0
) -> list:
    """A search kept in a ledger (sweep.ledger), without Ray: the candidates the ledger has not ended, one
    after another on `device`, judged at the same rungs as a Tune run (seeded with every ended candidate) and
    recorded in the same files, so a GPU machine without Ray and a CPU cluster share one search. `minutes` > 0:
    start no candidate after that long. A candidate cut off by a kill goes on from the checkpoint the ledger
    keeps of its last epoch.
    Returns the ledger's entries afterwards."""
    from orchestrator.sweep.candidates import ledger_rungs, open_ledger, seeded_rungs

    device = resolve_device(device)
    t0 = time.time()
    ledger, cands = open_ledger(cfg)
    entries = ledger.entries(cands)
    todo = [e for e in entries if e.end is None]
    rungs = seeded_rungs(entries, cfg.train.epochs, *ledger_rungs(cfg, ledger))
    ended = len(entries) - len(todo)
    log.info(f"ledger {cfg.sweep.ledger}: {ended} of {len(entries)} candidates ended, {len(todo)} to train here")
    if todo:
        data, _ = prepare_data(cfg, teacher_path, device=device)
    here = machine()
    for e in todo:
        if minutes and time.time() - t0 > minutes * 60:
            log.info(f"{minutes:g} minutes have passed: no further candidate starts")
            break
        i, tcfg = e.index, cfg.trial_config(e.variant)
        kept = ledger.state(i)
        resume = load_resume(kept) if kept else None  # cut off mid-run: on from its last epoch
        if resume:
            log.info(f"  c{i:03d} goes on after epoch {resume['epoch']} from the checkpoint the ledger kept")

        def report(metrics: dict, state: dict, i=i, tcfg=tcfg):
            epoch = int(metrics["epoch"])
            go_on = rungs.judge(i, epoch, float(metrics["val_acc"]))
            ledger.epoch(i, {**metrics, "machine": here} if epoch == 1 else metrics)
            log.info(f"  c{i:03d} epoch {epoch}/{tcfg.epochs} val_acc {metrics['val_acc']:.4f}")
            if epoch >= tcfg.epochs:
                ledger.ended(i, "finished", metrics.get("val_correct"))
            elif not go_on:
                ledger.ended(i, f"stopped at epoch {epoch}")
                raise _Stopped
            else:
                ledger.keep_state(i, lambda tmp: torch.save(state, tmp))

        try:
            train_student(tcfg, data, report=report, resume=resume, device=device)
        except _Stopped:
            pass
        except FloatingPointError as err:  # a property of the settings: recorded, never selected
            ledger.ended(i, f"diverged: {err}")
    return ledger.entries(cands)


def trial_dir_name(k: int, variant: dict) -> str:
    tag = "_".join(f"{key}={variant[key]}" for key in sorted(variant))[:80].replace("/", "-")
    return f"local_{k:02d}" + (f"_{tag}" if tag else "")


def trial_done(d: Path, epochs: int) -> bool:
    """Whether the trial in `d` has ended: diverged, or its last epoch reported (of `epochs`, or of the length
    a time budget refitted it to)."""
    lines = record.rows(d)
    refitted = [int(r["epochs_total"]) for r in lines if "epochs_total" in r]
    epochs = refitted[-1] if refitted else epochs
    return any(r.get("diverged") for r in lines) or any(r.get("epoch", 0) >= epochs for r in lines)


def run_trial(k: int, variant: dict, cfg: SweepConfig, data, root: Path, device: str) -> dict:
    """Train (or resume) trial k to its last epoch; returns its best epoch's metrics."""
    tcfg = TrainConfig(**{**to_dict(cfg.train), **variant})
    d = root / trial_dir_name(k, variant)
    d.mkdir(parents=True, exist_ok=True)
    record.write_params(d, variant)
    trial_id = f"local_{k:02d}"
    last_path, best_path = d / "checkpoint_last" / CKPT_FILE, d / "checkpoint_best" / CKPT_FILE
    resume = load_resume(last_path) if last_path.is_file() else None
    done = resume["epoch"] if resume else 0
    # the history up to the checkpoint: an epoch reported after it (none in the order below) would run again
    lines = record.keep_rows(d, lambda r: r.get("epoch", 0) <= done and not r.get("diverged"))
    best = max((r["val_acc"] for r in lines), default=-1.0)
    if trial_done(d, tcfg.epochs):
        log.info(f"trial {trial_id}: already finished ({tcfg.epochs} epochs)")
        return max(lines, key=lambda r: r["val_acc"]) if lines else {}
    log.info(
        f"trial {trial_id} {variant or '(base settings)'}: {tcfg.student} {tcfg.loss}, "
        f"{'resuming after epoch ' + str(done) if resume else 'from scratch'}, {tcfg.epochs} epochs on {device}"
    )

    said_machine: list = []

    def report(metrics: dict, state: dict):
        nonlocal best
        atomic_save(state, last_path)  # first the state, then the line that reports it
        if metrics["val_acc"] > best:
            best = metrics["val_acc"]
            atomic_save(state, best_path)
        first = {} if said_machine else {"machine": machine()}  # a run may cross machines: each process says its own
        said_machine.append(True)
        record.append_row(d, {**metrics, "device": device, **first}, trial_id=trial_id)
        log.info(
            f"  {trial_id} epoch {metrics['epoch']}/{tcfg.epochs} val_acc {metrics['val_acc']:.4f} "
            f"(best {best:.4f}) {metrics['images_per_s']:.0f} img/s"
            + (
                f"; its {metrics['branch']}-epoch cool-down branch ended at val_acc {metrics['branch_val_acc']:.4f} "
                f"(train {metrics['branch_train_acc']:.4f})"
                if "branch" in metrics
                else ""
            )
        )

    try:
        train_student(tcfg, data, report=report, resume=resume, device=device)
    except FloatingPointError as e:  # a property of the settings: recorded, never selected, not retried
        record.append_row(d, {"epoch": done + 1, "val_acc": 0.0, "diverged": str(e)}, trial_id=trial_id)
        log.info(f"trial {trial_id}: {e}")
    lines = record.rows(d)
    return max(lines, key=lambda r: r["val_acc"]) if lines else {}


def run_local(
    cfg: SweepConfig,
    teacher_path: str | None = None,
    only: list[int] | None = None,
    device: str = "auto",
    export_to: str | None = None,
    force: bool = False,
) -> Path:
    """Train the config's trials (all, or `only`) here; finish the run when every trial has ended."""
    device = resolve_device(device)
    if force and only is not None:
        raise UserError(
            "--force starts the whole run over, which would delete the trials other processes train; "
            "pass it without --trial"
        )
    variants = local_trials(cfg)
    todo = list(range(len(variants))) if only is None else list(only)
    bad = [k for k in todo if not 0 <= k < len(variants)]
    if bad:
        raise UserError(
            f"trial {bad[0]} does not exist: the config lists {len(variants)} trial(s), 0..{len(variants) - 1}"
        )

    def refuse(run):
        if not run.is_local:
            raise UserError(
                f"kdsweep train writes its trials on this machine's disk; sweep.storage {cfg.sweep.storage} "
                "is shared storage: use `kdsweep sweep` there, or a local sweep.storage"
            )

    opened = open_run(cfg, teacher_path, force, export_to, refuse=refuse)
    cfg, run = opened.cfg, opened.run
    run_dir = run.dir
    root = run_dir / FINAL_DIR
    run.write_final_base(to_dict(cfg.train))
    started = f"{FINAL_DIR}/{STARTED_FILE}"
    if not run.exists(started):
        run.write_json(started, {"t": time.time()})
    if not opened.finished:
        epochs = [int(v.get("epochs", cfg.train.epochs)) for v in variants]
        pending = [k for k in todo if not trial_done(root / trial_dir_name(k, variants[k]), epochs[k])]
        facts = None
        if pending:
            data, facts = prepare_data(cfg, teacher_path, device=device)
            for k in pending:
                run_trial(k, variants[k], cfg, data, root, device)
        ended = [trial_done(root / trial_dir_name(k, v), epochs[k]) for k, v in enumerate(variants)]
        if not all(ended):
            log.info(
                f"{sum(ended)}/{len(variants)} trials of {cfg.name} have ended; the run finishes with the last one"
            )
            return run_dir
        if facts is None:  # the others ended them: the teacher's facts for the meta file
            _, facts = prepare_data(cfg, teacher_path, device=device)
        if facts.teacher and facts.teacher.mode == "live":  # one teacher forward per image per epoch per KD trial
            facts.teacher_forwards = (
                sum(
                    max(
                        (r.get("epoch", 0) for r in record.rows(root / trial_dir_name(k, v))),
                        default=0,
                    )
                    for k, v in enumerate(variants)
                    if v.get("loss", cfg.train.loss) in NEEDS_TEACHER
                )
                * facts.n_train
            )
        df = table(run_dir)
        run.write_results(df)
        t0 = run.read_json(started)["t"]
        meta = dict(
            **facts.record(),
            name=cfg.name,
            config=to_dict(cfg),
            wall_s=time.time() - t0,
            n_trials=len(variants),
            errors=0,
            trained_with=f"kdsweep train (no Ray) on {device}",
            machine=machine(),
        )
        opened.finish(meta)
        log.info(df.to_string(index=False))
    opened.export(export_to, force)
    return run_dir
