"""Chaos while a search runs: killers end trial workers (SIGKILL) and whole nodes (their raylet and every process
on them) at random moments, many times in one run, and the counts say what survived.

A search of `--trials` small trials (resdw_w24_d111 on a few hundred images, no early cuts) runs on a Ray
started by this process: one local node, or with `--nodes N` a simulated cluster (a head without CPUs, N
one-CPU worker nodes, all on this machine: ray.cluster_utils.Cluster). One thread SIGKILLs a trial worker
(Ray's `ImplicitFunc` actors, found among this process's descendants only) every `--interval` seconds on
average, `--kills` times at most; with `--node-kills K` another removes a random worker node without a
graceful stop every `--node-interval` seconds on average, K times (fewer than `--nodes`: a preempted machine
not replaced, the trials go on on the nodes left; Ray's test cluster cannot add a node from a second
thread). At the end: trials finished (all, or listed with why not), epochs redone (a reported epoch reported
again), kills by kind, wall time against the same search without kills.

    bash scripts/loopback.sh .venv/bin/python bench/chaos_soak.py --trials 24 --kills 20 \
        --nodes 2 --node-kills 3 --out bench/results/chaos_soak.json

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


class NodeKiller(threading.Thread):
    """Removes a random worker node of `cluster` (no graceful stop: its raylet and every worker on it die at
    once) every ~`interval` s, at most `limit` times and never the last one."""

    def __init__(self, cluster, nodes: list, interval: float, limit: int, seed: int = 0, started=None):
        super().__init__(daemon=True)
        self.cluster, self.nodes = cluster, nodes
        self.started = started or (lambda: True)  # kill only once trials train (not while the cache builds)
        self.interval, self.limit, self.rng = interval, limit, random.Random(seed + 1)
        self.kills: Counter = Counter()
        self.done = threading.Event()

    def run(self):
        while not self.started():
            if self.done.wait(0.2):
                return
        while not self.done.wait(self.interval * self.rng.uniform(0.5, 1.5)):
            if sum(self.kills.values()) >= self.limit or len(self.nodes) < 2:
                return
            victim = self.rng.choice(self.nodes)
            self.cluster.remove_node(victim, allow_graceful=False)
            self.nodes.remove(victim)
            self.kills["node"] += 1


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


def soak(
    cfg,
    teacher: str,
    interval: float,
    kills: int,
    seed: int = 0,
    cluster=None,
    nodes=(),
    node_interval=0.0,
    node_kills=0,
) -> dict:
    """Run the search `cfg` under the killers (trial workers; with `cluster` and its worker `nodes`, whole
    nodes too); the account, the kills by kind and the wall time."""
    from orchestrator.sweep.driver import run_sweep

    killers = [Killer(interval, kills, seed)]
    if node_kills:
        run_dir = Path(cfg.sweep.storage) / cfg.name
        trains = lambda: any(run_dir.glob("*/result.json"))  # noqa: E731
        killers.append(NodeKiller(cluster, list(nodes), node_interval, node_kills, seed, started=trains))
    t0 = time.time()
    for k in killers:
        k.start()
    try:
        run_dir = run_sweep(cfg, teacher_path=teacher)
    finally:
        for k in killers:
            k.done.set()
            k.join()
    counts = sum((k.kills for k in killers), Counter())
    return dict(account(Path(run_dir), cfg.train.epochs), kills=dict(counts), wall_s=round(time.time() - t0, 1))


def start_ray(nodes: int):
    """A local Ray of 2 CPUs, or a simulated cluster: a CPU-less head and `nodes` one-CPU worker nodes.
    Returns (cluster or None, its worker nodes)."""
    import ray

    if not nodes:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        return None, []
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args=dict(num_cpus=0, include_dashboard=False))
    workers = [c.add_node(num_cpus=1) for _ in range(nodes)]
    ray.init(address=c.address, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    c.wait_for_nodes()
    return c, workers


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--interval", type=float, default=6.0, help="seconds between kills, on average")
    ap.add_argument("--nodes", type=int, default=0, help="worker nodes of a simulated cluster (0: one local node)")
    ap.add_argument("--node-kills", type=int, default=0)
    ap.add_argument("--node-interval", type=float, default=30.0, help="seconds between node kills, on average")
    ap.add_argument("--teacher", default="models/teacher/resnet50.pt")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.node_kills and a.node_kills >= a.nodes:
        ap.error(f"--node-kills {a.node_kills} needs more than that many --nodes (the last node is never killed)")
    import ray

    from orchestrator.config import load_sweep_config
    from orchestrator.machine import machine

    out = {}
    for label, kills, node_kills in (("without kills", 0, 0), ("with kills", a.kills, a.node_kills)):
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
                "sweep.max_failures": a.kills + a.node_kills + 1,
                **({"sweep.max_concurrent_trials": a.nodes} if a.nodes else {}),
            },
        )
        cluster, nodes = start_ray(a.nodes)
        try:
            out[label] = soak(
                cfg, str(ROOT / a.teacher), a.interval, kills, 0, cluster, nodes, a.node_interval, node_kills
            )
        finally:
            ray.shutdown()
            if cluster is not None:
                cluster.shutdown()
        print(label, out[label], flush=True)
    out.update(machine=machine(), date=time.strftime("%Y-%m-%d"), args=vars(a))
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
