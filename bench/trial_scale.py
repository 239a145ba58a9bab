"""What a trial costs the driver as the trial count grows: sweeps of N short trials (the real trainable, a
tiny student, a data subset, 2 epochs, ASHA cutting at epoch 1) on a local Ray, each N in a fresh process.
Per N: the driver's peak RSS, the GCS server's, the object store's peak use, the wall time per trial beyond
its own training, and the run directory's size and file count.

    bash scripts/loopback.sh .venv/bin/python bench/trial_scale.py [--trials 10 100 1000] [--out FILE]
        [--keep DIR]   # runs kept in DIR: a killed count resumes when rerun, an ended one is not rerun

The driver's growth is also read from the run's meta (`driver_memory`: the slope of its RSS, sampled as
each trial ends, over the sweep's second half), which the peak's noise (+-35 MiB run to run) hides.

Overhead per trial = (slots x the sweep's wall - the trials' own time) / N, a trial's own time being its
first report's start to its last report (data in, epochs, checkpoints); the sweep's wall includes Ray's and
the data's fixed start-up, so the slope between two counts is the marginal figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _mib(n: float) -> float:
    return round(n / 2**20, 1)


def _plasma_bytes() -> int:
    import ray
    from ray._private.internal_api import memory_summary

    # this process's Ray by its address: another Ray on the machine would make the call ambiguous
    summary = memory_summary(address=ray.get_runtime_context().gcs_address, stats_only=True)
    m = re.search(r"Plasma memory usage (\d+) MiB", summary)
    return int(m.group(1)) * 2**20 if m else 0


class Peaks(threading.Thread):
    """Samples this process's RSS, the GCS server's and the object store's use until stopped."""

    def __init__(self, every: float = 0.5):
        super().__init__(daemon=True)
        import psutil

        self.me, self.every, self.stop = psutil.Process(), every, threading.Event()
        self.driver = self.gcs = self.plasma = 0
        self.start_rss = self.me.memory_info().rss

    def run(self):
        n = 0
        while not self.stop.is_set():
            self.driver = max(self.driver, self.me.memory_info().rss)
            for c in self.me.children(recursive=True):
                try:
                    if c.name().startswith("gcs_server"):
                        self.gcs = max(self.gcs, c.memory_info().rss)
                except Exception:  # a child that ended between the listing and the read
                    pass
            if n % 10 == 0 and self.plasma >= 0:
                try:
                    self.plasma = max(self.plasma, _plasma_bytes())
                except Exception:  # Ray's memory summary unavailable: the other figures go on (-1: not read)
                    self.plasma = -1
            n += 1
            self.stop.wait(self.every)


def scale_config(name: str, tmp: str, teacher: str, n: int, slots: int = 2):
    """The sweep these benches measure: n trials of the real trainable on a tiny student and 256 images,
    2 epochs, ASHA cutting at epoch 1, `slots` at a time; its runs and cache under `tmp`."""
    from orchestrator.config import load_sweep_config

    return load_sweep_config(
        ROOT / "configs" / "smoke.yaml",
        {
            "name": name,
            "sweep.storage": f"{tmp}/runs",
            "teacher.cache_dir": f"{tmp}/cache",
            "teacher.checkpoint": teacher,
            "teacher.mode": "clean",
            "data.train_limit": 256,
            "data.val_limit": 256,
            "train.epochs": 2,
            "train.batch_size": 64,
            "train.student": "resdw_w24_d111",
            "search_space": {"lr": {"loguniform": [1e-3, 0.1]}},
            "sweep.num_samples": n,
            "sweep.max_concurrent_trials": slots,
            "sweep.cpus_per_trial": 1,
            "sweep.grace_period": 1,
            "sweep.reduction_factor": 2,
        },
    )


def one(n: int, slots: int, teacher: str, keep: str | None = None) -> dict:
    """A sweep of `n` trials in this process; its figures. `keep`: the run lives there, not in a temporary
    directory, so that the same command after a kill resumes it (its driver then restores the trials
    already ended at once: the slope is read over the trials that end after)."""
    import ray

    from orchestrator.machine import machine
    from orchestrator.release.results import result_lines
    from orchestrator.sweep.driver import run_sweep

    with tempfile.TemporaryDirectory() if keep is None else contextlib.nullcontext(keep) as tmp:
        cfg = scale_config(f"scale{n}", tmp, teacher, n, slots)
        done = Path(tmp) / f"row_{n}.json"  # a count that ended under --keep is not measured again
        if done.is_file():
            return json.loads(done.read_text())
        ray.init(num_cpus=slots, include_dashboard=False, log_to_driver=False)
        peaks = Peaks()
        peaks.start()
        t0, cpu0 = time.time(), sum(peaks.me.cpu_times()[:2])
        run_dir = run_sweep(cfg)
        wall, driver_cpu = time.time() - t0, sum(peaks.me.cpu_times()[:2]) - cpu0
        peaks.stop.set()
        peaks.join()
        own, epochs, before = [], 0, 0
        for res in run_dir.glob("*/result.json"):
            rows = result_lines(res)
            if rows and rows[0]["wall_start"] < t0:  # begun before this process (a resume): not in its wall
                before += 1
            elif rows:
                own.append(rows[-1]["wall"] - rows[0]["wall_start"])
                epochs += len(rows)
        files = [p for p in run_dir.rglob("*") if p.is_file()]
        driver = json.loads((run_dir / "kdsweep_meta.json").read_text()).get("driver_memory", {})
        ray.shutdown()
        row = {
            "trials": n,
            "finished_trials": len(own) + before,
            "resumed_with_trials": before,  # > 0: wall, CPU and peaks cover the trials after the resume only
            "trial_epochs": epochs,
            "slots": slots,
            "wall_s": round(wall, 1),
            "driver_cpu_s": round(driver_cpu, 1),
            "own_s_median": round(sorted(own)[len(own) // 2], 3) if own else None,
            "overhead_per_trial_s": round((slots * wall - sum(own)) / max(len(own), 1), 3),
            "driver_rss_start_mib": _mib(peaks.start_rss),
            "driver_rss_peak_mib": _mib(peaks.driver),
            "driver_mib_per_100_trials": driver.get("mib_per_100_trials"),
            "driver_rss_last_mib": driver.get("rss_last_mib"),
            "gcs_rss_peak_mib": _mib(peaks.gcs),
            "object_store_peak_mib": _mib(peaks.plasma),
            "run_dir_mib": _mib(sum(p.stat().st_size for p in files)),
            "run_dir_files": len(files),
            "checkpoints_mib": _mib(sum(p.stat().st_size for p in files if p.name == "checkpoint.pt")),
            "experiment_state_mib": _mib(sum(p.stat().st_size for p in files if p.name.startswith("experiment_state"))),
            "machine": machine(),
        }
        if keep is not None:
            done.write_text(json.dumps(row) + "\n")
        return row


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--slots", type=int, default=2, help="trials at a time (1 CPU each)")
    p.add_argument("--teacher", default=str(ROOT / "models/teacher/ta_resnet20.pt"))
    p.add_argument("--out", help="JSON file for the rows (written after each count)")
    p.add_argument("--keep", help="a directory for the runs, so that a killed count resumes when rerun")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child: one count, a JSON line out
    args = p.parse_args()
    if args.one:
        import logging

        logging.basicConfig(level=logging.WARNING)
        print("ROW " + json.dumps(one(args.one, args.slots, args.teacher, args.keep)), flush=True)
        return
    rows = []
    for n in args.trials:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(n), "--slots", str(args.slots), "--teacher", args.teacher]
            + (["--keep", args.keep] if args.keep else []),
            capture_output=True,
            text=True,
        )
        row = next((json.loads(line[4:]) for line in out.stdout.splitlines() if line.startswith("ROW ")), None)
        if row is None:
            sys.exit(f"the {n}-trial sweep failed:\n{out.stderr[-3000:]}")
        rows.append(row)
        print(json.dumps(row), flush=True)
        if len(rows) > 1:
            a, b = rows[-2], rows[-1]
            print(
                f"  from {a['trials']} to {b['trials']} trials: driver "
                f"{(b['driver_rss_peak_mib'] - a['driver_rss_peak_mib']) / (b['trials'] - a['trials']) * 100:+.2f} "
                f"MiB per 100 trials, {(b['wall_s'] - a['wall_s']) / (b['trials'] - a['trials']):.2f} s a trial"
            )
        if args.out:
            tmp = Path(args.out).with_suffix(".tmp")
            tmp.write_text(json.dumps(rows, indent=1) + "\n")
            tmp.replace(args.out)


if __name__ == "__main__":
    main()
