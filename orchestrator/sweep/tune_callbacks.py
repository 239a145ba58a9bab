"""The sweep's Tune callbacks, run in the driver: checkpoint retention without Tune's forced snapshots, what
the driver's memory does as trials come and go, and the scheduler of a search kept in a ledger
(`LedgerScheduler`, below).

Why retention is here and not Tune's `num_to_keep`: with `num_to_keep=k`, Tune writes the whole experiment
state (every trial's record, ~20 KB a trial) each time any trial has made k checkpoints since the last
write, so that no snapshot names a deleted checkpoint; a sweep of N trials then writes O(N) bytes per epoch
of any trial, O(N^2) in all (bench/trial_scale.py: the driver became the bottleneck near 1,000 trials). Tune
here keeps every checkpoint and snapshots on a period; `CheckpointRetention` deletes what no snapshot can
still name: a trial's checkpoints that are neither among its best `keep` by val_acc nor its latest, once
superseded for longer than `safe_s` (the driver passes 10 minutes or 3 snapshot periods and a minute,
whichever is longer: a snapshot on an object store is uploaded after it is written, and an upload still
running delays the next); every one but its best when the trial ends (it is never resumed). A restored
sweep's callback comes back from Tune's pickled run config having seen nothing, so the first time it meets a
trial it reads the trial's checkpoints already on disk (or in the bucket) and their val_acc from the trial's
result.json, and counts them as superseded then: the same rule prunes them."""

from __future__ import annotations

import json
import shutil
import statistics
import time
import tracemalloc
from pathlib import Path

import pyarrow.fs
from ray.tune import Callback
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.machine import machine
from orchestrator.run.ledger import Ledger, index_of
from orchestrator.rungs import AsyncRungs
from orchestrator.sweep.candidates import seeded_rungs
from trainables.config import CKPT_FILE, from_report

# isort: split
import psutil  # Ray's own copy (ray/thirdparty_files), on the path once ray is imported

SAMPLES: dict[str, list[tuple[int, int, int]]] = {}  # name -> (trials ended, driver RSS, Python heap bytes)


class CheckpointRetention(Callback):
    def __init__(self, keep: int, safe_s: float):
        self.keep, self.safe_s = keep, safe_s
        self.seen: dict[str, list] = {}  # trial id -> [checkpoint, val_acc, superseded at (None: latest)]

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        rows = self._rows(trial)
        # a restored trial may write again a checkpoint_N it wrote before the crash: one entry per directory
        rows[:] = [r for r in rows if r[0].path != checkpoint.path]
        if rows:
            rows[-1][2] = time.monotonic()
        rows.append([checkpoint, float((trial.last_result or {}).get("val_acc", 0.0)), None])
        self._prune(rows, time.monotonic() - self.safe_s)

    def on_trial_complete(self, iteration, trials, trial, **info):
        # ended for good (finished, or stopped by ASHA): never resumed, only its best are read again
        self._rows(trial)
        self._prune(self.seen.pop(trial.trial_id, []), float("inf"), latest=False)

    def _rows(self, trial) -> list:
        """This trial's checkpoints as seen by this driver; the first time, those already written (before a
        restore), superseded now, in the order they were written."""
        if trial.trial_id not in self.seen:
            self.seen[trial.trial_id] = [[c, v, time.monotonic()] for c, v in on_disk(trial)]
        return self.seen[trial.trial_id]

    def _prune(self, rows: list, before: float, latest: bool = True):
        best = {id(r) for r in sorted(rows, key=lambda r: -r[1])[: self.keep]}
        for r in list(rows):
            old = r[2] is not None and r[2] <= before
            if id(r) not in best and (old or not latest):
                try:
                    r[0].filesystem.delete_dir(r[0].path)
                except FileNotFoundError:
                    pass
                rows.remove(r)


def on_disk(trial) -> list[tuple]:
    """(checkpoint, val_acc) for each checkpoint directory in the trial's storage, oldest first; the
    val_acc the trial reported with it (result.json's checkpoint_dir_name), 0 where none is recorded. Empty
    where the trial has no storage yet."""
    from ray.tune import Checkpoint

    try:
        fs, root = trial.storage.storage_filesystem, trial.storage.trial_fs_path
        infos = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
    except (AttributeError, RuntimeError):  # not started: no trial directory yet
        return []
    names = sorted(
        i.base_name for i in infos if i.type == pyarrow.fs.FileType.Directory and i.base_name.startswith("checkpoint_")
    )
    if not names:
        return []
    val: dict[str, float] = {}
    try:
        with fs.open_input_stream(f"{root}/result.json") as f:
            for line in f.read().decode().splitlines():
                r = json.loads(line) if line.strip() else {}
                if r.get("checkpoint_dir_name") and "val_acc" in r:
                    val[r["checkpoint_dir_name"]] = float(r["val_acc"])
    except (FileNotFoundError, OSError, ValueError):  # no record (or a torn last line): the checkpoint counts as 0
        pass
    return [(Checkpoint(path=f"{root}/{n}", filesystem=fs), val.get(n, 0.0)) for n in names]


class DriverMemory(Callback):
    """Samples the driver's RSS each time a trial ends, and its Python heap where tracemalloc traces (the
    test does: the heap is what Tune's per-trial records take, without the allocator's and other threads'
    noise). Kept by reference in Tune's pickled run config, so a restored sweep samples into the same
    record."""

    def __init__(self, name: str):
        self.name = name

    def _sample(self):
        rows = SAMPLES.setdefault(self.name, [])
        heap = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else -1
        rows.append((len(rows) + 1, psutil.Process().memory_info().rss, heap))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._sample()

    def on_trial_error(self, iteration, trials, trial, **info):
        self._sample()


def _per_trial(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of (trials ended, bytes)."""
    mx, my = statistics.fmean(n for n, _ in points), statistics.fmean(b for _, b in points)
    return sum((n - mx) * (b - my) for n, b in points) / sum((n - mx) ** 2 for n, _ in points)


def slope(samples: list[tuple[int, int, int]]) -> dict:
    """First and last RSS (MiB) and MiB per 100 more trials (RSS, and the Python heap where traced): the
    least-squares slope over the second half of the samples (the first half holds the warm-up: imports,
    pools, the first trials' buffers)."""
    if len(samples) < 4:
        return {}
    tail = samples[len(samples) // 2 :]
    out = dict(
        trials=len(samples),
        rss_first_mib=round(samples[0][1] / 2**20, 1),
        rss_last_mib=round(samples[-1][1] / 2**20, 1),
        mib_per_100_trials=round(_per_trial([(n, r) for n, r, _ in tail]) * 100 / 2**20, 3),
    )
    if all(h >= 0 for _, _, h in tail):
        out["heap_mib_per_100_trials"] = round(_per_trial([(n, h) for n, _, h in tail]) * 100 / 2**20, 3)
    return out


def driver_memory(name: str) -> dict:
    return slope(SAMPLES.get(name, []))


# A search kept in a ledger (orchestrator/run/ledger.py): ASHA's asynchronous rule (regret.AsyncRungs, the rule
# bench/search_regret.py replays) over the candidates' ledger records rather than this Tune experiment's trials
# alone, so a search run in chunks (one Tune experiment each, on machines that share no run directory) cuts as
# one run would. It writes the ledger itself, in the order it decides: an epoch's line, then the end line of a
# candidate it stops or that finished.


class LedgerScheduler(FIFOScheduler):
    _supports_buffered_results = False  # one decision per epoch

    def __init__(self, ledger: Ledger, candidates: list[dict], max_t: int, grace: int, rf: int):
        super().__init__()
        self.ledger, self.candidates = ledger, candidates
        self.max_t, self.grace, self.rf = max_t, grace, rf
        self._rungs: AsyncRungs | None = None  # built from the ledger at the first result (also after a restore)
        self.machine = machine()  # a candidate's first line names the machine its speed was measured on: the
        # driver's, which is the trials' on one machine (on a cluster, the row's speed is its node's)

    def __getstate__(self):  # Tune pickles the scheduler: the rungs are rebuilt from the ledger, not pickled
        return {**self.__dict__, "_rungs": None}

    def rungs(self) -> AsyncRungs:
        if self._rungs is None:
            self._rungs = seeded_rungs(self.ledger.entries(self.candidates), self.max_t, self.grace, self.rf)
        return self._rungs

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        i = index_of(self.candidates, (trial.config or {}).get("_variant", {}))
        if i is None or "epoch" not in result or "val_acc" not in result:
            return TrialScheduler.CONTINUE
        metrics, epoch = from_report(result), int(result["epoch"])
        if metrics.get("diverged"):
            self.ledger.ended(i, f"diverged: {metrics['diverged']}")
            return TrialScheduler.STOP
        go_on = self.rungs().judge(i, epoch, float(result["val_acc"]))
        self.ledger.epoch(i, {**metrics, "machine": self.machine} if epoch == 1 else metrics)
        if epoch >= self.max_t:
            self.ledger.ended(i, "finished", metrics.get("val_correct"))
        elif not go_on:
            self.ledger.ended(i, f"stopped at epoch {epoch}")
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        return f"Ledger ASHA: rungs {sorted(self.rungs().rungs)}, keep 1/{self.rf}"


class LedgerCheckpoints(Callback):
    """A search's candidates' latest checkpoints kept in its ledger while they train (Ledger.keep_state), so
    that a chunk cut off goes on from them on any machine; the ledger removes one when its candidate ends."""

    def __init__(self, ledger: Ledger, candidates: list[dict]):
        self.ledger, self.candidates = ledger, candidates

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        i = index_of(self.candidates, (trial.config or {}).get("_variant", {}))
        if i is None:
            return
        with checkpoint.as_directory() as d:
            src = Path(d) / CKPT_FILE
            self.ledger.keep_state(i, lambda tmp: shutil.copyfile(src, tmp))


class FinalCheckpoints(Callback):
    """A ledger search's final-stage trials' latest checkpoints kept in the ledger under `name(config)`, so
    that a final stage cut off goes on from them on any machine; each removed when its trial finishes."""

    def __init__(self, ledger: Ledger, name):
        self.ledger, self.name = ledger, name

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        with checkpoint.as_directory() as d:
            src = Path(d) / CKPT_FILE
            self.ledger.keep(self.name(trial.config or {}), lambda tmp: shutil.copyfile(src, tmp))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ledger.drop(self.name(trial.config or {}))
