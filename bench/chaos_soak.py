"""Chaos while a search runs: a killer ends trial workers (SIGKILL) at random moments, many times in one run,
and the counts say what survived.

A search of `--trials` small trials (resdw_w24_d111 on a few hundred images, no early cuts) runs on a local
Ray started by this process; a thread SIGKILLs one of its trial workers (Ray's `ImplicitFunc` actors, found
among this process's descendants only) every `--interval` seconds on average, `--kills` times at most. At
the end: trials finished (all, or listed with why not), epochs redone (a reported epoch reported again),
kills by kind, wall time against the same search without kills.

    bash scripts/loopback.sh .venv/bin/python bench/chaos_soak.py --trials 24 --kills 20 \
        --out bench/results/chaos_soak.json

`tests/test_chaos.py` runs a short one in the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORKER = "ImplicitFunc"  # the name Ray gives a Tune function trainable's actor process ("ray::ImplicitFunc.train")


class Killer(threading.Thread):
    """SIGKILLs one trial worker among this process's descendants every ~`interval` s (uniform 0.5x-1.5x),
    at most `limit` times, until stopped; `kills` counts them by kind."""

    def __init__(self, interval: float, limit: int, seed: int = 0):
        super().__init__(daemon=True)
        self.interval, self.limit, self.rng = interval, limit, random.Random(seed)
        self.kills: Counter = Counter()
        self.done = threading.Event()

    def workers(self) -> list:
        import psutil

        out = []
        for p in psutil.Process(os.getpid()).children(recursive=True):
            try:
                if WORKER in " ".join(p.cmdline()) and p.is_running():
                    out.append(p)
            except psutil.Error:
                continue
        return out

    def run(self):
        while not self.done.wait(self.interval * self.rng.uniform(0.5, 1.5)):
            if sum(self.kills.values()) >= self.limit:
                return
            ws = self.workers()
            if ws:
                try:
                    os.kill(self.rng.choice(ws).pid, signal.SIGKILL)
                    self.kills["trial worker"] += 1
                except ProcessLookupError:
                    pass


def account(run_dir: Path, epochs: int) -> dict:
    """What survived: per trial, its reported epochs (repeats are epochs redone after a kill)."""
    from orchestrator.release.results import trials
    from orchestrator.run import trial as record

    ts = [t for t in trials(run_dir, finished=True) if t["stage"] == "search"]
    redone, lost = 0, []
    for t in ts:
        seen = [r["epoch"] for r in record.rows(Path(t["dir"])) if "epoch" in r]
        redone += len(seen) - len(set(seen))
        if sorted(set(seen)) != list(range(1, epochs + 1)):
            lost.append((t["trial"], t["status"]))
    return dict(
        trials=len(ts),
        finished=sum(t["status"] == "finished" for t in ts),
        not_finished=[f"{k}: {why}" for k, why in lost],
        epochs_redone=redone,
    )


def soak(cfg, teacher: str, interval: float, kills: int, seed: int = 0) -> dict:
    """Run the search `cfg` under the killer; the account, the kills and the wall time."""
    from orchestrator.sweep.driver import run_sweep

    killer = Killer(interval, kills, seed)
    t0 = time.time()
    killer.start()
    try:
        run_dir = run_sweep(cfg, teacher_path=teacher)
    finally:
        killer.done.set()
        killer.join()
    return dict(account(Path(run_dir), cfg.train.epochs), kills=dict(killer.kills), wall_s=round(time.time() - t0, 1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--interval", type=float, default=6.0, help="seconds between kills, on average")
    ap.add_argument("--teacher", default="models/teacher/resnet50.pt")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    import ray

    from orchestrator.config import load_sweep_config
    from orchestrator.machine import machine

    out = {}
    for label, kills in (("without kills", 0), ("with kills", a.kills)):
        tmp = Path(f"/tmp/chaos_soak_{os.getpid()}_{kills}")
        cfg = load_sweep_config(
            ROOT / "configs" / "smoke.yaml",
            {
                "name": f"chaos_{kills}",
                "sweep.storage": str(tmp / "runs"),
                "teacher.cache_dir": str(tmp / "cache"),
                "teacher.mode": "clean",
                "data.train_limit": 512,
                "data.val_limit": 128,
                "train.epochs": a.epochs,
                "train.student": "resdw_w24_d111",
                "search_space": {"lr": {"loguniform": [0.01, 0.2]}},
                "sweep.num_samples": a.trials,
                "sweep.grace_period": a.epochs,
                "sweep.max_failures": a.kills + 1,
            },
        )
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            out[label] = soak(cfg, str(ROOT / a.teacher), a.interval, kills)
        finally:
            ray.shutdown()
        print(label, out[label], flush=True)
    out.update(machine=machine(), date=time.strftime("%Y-%m-%d"), args=vars(a))
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
