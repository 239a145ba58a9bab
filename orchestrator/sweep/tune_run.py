"""The sweep's Tune adapter: the YAML space as Tune's, one Tune experiment of a stage (resumed where one was
interrupted), its trainable and searcher, and its results as kdsweep's table. Ray API calls live here, in the
driver's stages and resources, its Tune callbacks (tune_callbacks.py) and session (ray_session.py), in
trainables/tune_trainable.py and in the teacher's cluster code (orchestrator/teacher/cache_ray.py, train.py)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from orchestrator.config import SweepConfig, TrainConfig, to_dict
from orchestrator.loader import is_uri
from orchestrator.release.results import trial_id_of
from orchestrator.run.io import DiskFullError, TornFileError, disk_is_full, free_bytes, parse_json
from orchestrator.space import parse_space
from trainables.config import DETAIL, KWARGS, from_report

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


def fit(trainable, param_space: dict, name: str, storage: str, tune_config, s, n_trials: int, callbacks=()):
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
    if not is_uri(path):
        set_aside_torn_state(Path(path))
    try:
        if tune.Tuner.can_restore(path):
            log.info(f"resuming the interrupted experiment in {path}")
            tuner = tune.Tuner.restore(path, trainable, resume_errored=True, param_space=param_space)
        else:
            run_config = tune.RunConfig(
                name=name,
                storage_path=storage,
                verbose=1,
                callbacks=callbacks,
                failure_config=tune.FailureConfig(max_failures=s.max_failures),
            )
            tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)
        return tuner.fit()
    except Exception:
        # a disk that filled under Tune's own writes (checkpoints, its state, a trial's error record) ends in
        # whichever of them broke first: say what the user can fix instead
        if not is_uri(path) and disk_is_full(path):
            raise DiskFullError(
                f"{path}: the disk filled under the Tune experiment ({free_bytes(path):,} bytes free); free some "
                "space and run the same command again (it resumes)"
            ) from None
        raise


STATE_GLOB = "experiment_state-*.json"  # one per driver session, rewritten on Tune's snapshot period


def set_aside_torn_state(experiment: Path) -> list[Path]:
    """Tune restores an experiment from its newest state file; one cut short by a crash would stop every
    rerun with a traceback. Each torn newest one is renamed `<name>.torn`, with its session's searcher state
    (the same timestamp), so Tune restores from the session before (trials from the checkpoints that state
    names: epochs since are redone, nothing finished is lost). With no whole state left, TornFileError names
    the file and what to do. Returns the files set aside."""
    moved, states = [], sorted(experiment.glob(STATE_GLOB), reverse=True)
    for i, state in enumerate(states):
        try:
            parse_json(state.read_text(), state)
            return moved
        except TornFileError as e:
            if i == len(states) - 1:  # no whole state to resume from
                raise TornFileError(f"{e}; or, to start this run over, the same command with --force") from None
        stamp = state.name.removeprefix("experiment_state-")
        for f in [state, *experiment.glob(f"*-state-{stamp}")]:
            f.rename(f.with_name(f.name + ".torn"))
            moved.append(f)
        log.info(f"warning: {state} is torn (a write cut short): set aside; resuming from the state before it")
    return moved


class Interrupted(RuntimeError):
    """Tune returned with trials neither finished nor failed (Ctrl-C / SIGINT): the run is not complete."""


def check_complete(results, name: str, run_dir: str, expected: int = 0):
    """Tune returns normally after Ctrl-C: trials neither finished nor failed, or fewer trials than the stage
    makes (a searcher, and Tune's own variant generator, create trials as slots free up, so a stopped stage
    can hold only those it had begun), mean the run is not complete."""
    if results.num_terminated + results.num_errors < len(results) or len(results) < expected:
        raise Interrupted(
            f"sweep {name} was interrupted before all its trials ended; run the same command again "
            f"to resume it from {run_dir}"
        )


def trial_id(result) -> str:
    """Tune's trial id (its last report's, else the one in its directory's name)."""
    return result.metrics.get("trial_id") or trial_id_of(Path(result.path).name)


def unpacked(df):
    """A frame of Tune's results with each row's detail string (`to_report`) as columns of its own."""
    import pandas as pd

    if df is None or DETAIL not in df:
        return df
    rows = [from_report({DETAIL: d}) if isinstance(d, str) else {} for d in df[DETAIL]]
    return pd.concat([df.drop(columns=DETAIL).reset_index(drop=True), pd.DataFrame(rows)], axis=1)


def results_table(results, cfg: SweepConfig, base: TrainConfig, stage: str):
    """Tune's results as one row per trial: what it ran with (resolved) and its best validation epoch."""
    import pandas as pd

    df = unpacked(results.get_dataframe(filter_metric="val_acc", filter_mode="max"))
    # a trial that died before its first report has no metric, so Tune leaves it out: it gets a row (its
    # status, from its directory, says why it failed)
    seen = set(df["trial_id"]) if "trial_id" in df else set()
    dead = [
        pd.json_normalize({"trial_id": trial_id(r), "config": r.config or {}}, sep="/")
        for r in results
        if r.error is not None and trial_id(r) not in seen
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
    if "val_acc" not in table:  # no trial reported (every one died before its first epoch): still a table
        table["val_acc"] = float("nan")
    table.insert(0, "stage", stage)
    return table


def trainable(cfg: SweepConfig, data, base: TrainConfig, cpus: float, resumes: dict[str, bytes] | None = None):
    """The Tune trainable of one stage: the shared data (object store), `base` settings, `cpus` threads, and
    checkpoints its trials go on from where they have none of their own (`resumes`, by variant)."""
    from ray import tune

    from trainables.tune_trainable import distill_trainable

    s = cfg.sweep
    t = tune.with_parameters(
        distill_trainable,
        data=data,
        base=to_dict(base),
        threads=max(1, int(cpus)),
        use_gpu=s.gpus_per_trial > 0,
        resumes=resumes or {},
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


def error_count(results) -> int:
    return sum(r.error is not None for r in results)
