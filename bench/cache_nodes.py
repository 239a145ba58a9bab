"""Teacher-logit cache build across Ray worker nodes (simulated on this machine: ray.cluster_utils, a head
without CPUs, worker nodes of --cpus-per-node CPUs each), on a job large enough that fixed costs are small:
by default the 18-view cache (shift 1 + flip) of a 20,000-image subset with the released teacher. Same
images, views and teacher each time; a fresh cache directory for every build; median of --runs.

    bash scripts/loopback.sh .venv/bin/python bench/cache_nodes.py [--nodes 1 2 4] [--out FILE]

Efficiency = rate on k nodes / (k x rate on 1 node). On a machine with fewer cores than nodes x CPUs the
nodes share cores, and the figure measures oversubscription, not scale-out: each row records the cores.
--plain also times k plain processes (no Ray, one thread each) on the same job: what the cores themselves
give (shared caches, memory bandwidth, the host's placement of vCPUs), against which Ray's rate is read.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class CpuShare(threading.Thread):
    """Where the machine's cores went during a build: CPU seconds of the teacher actors and of every other
    process (the driver, raylets, GCS, agents), in cores (CPU seconds / wall)."""

    def __init__(self):
        super().__init__(daemon=True)
        import psutil

        self.psutil, self.stop, self.seen = psutil, threading.Event(), {}
        self.base = {p.pid: sum(p.cpu_times()[:2]) for p in psutil.process_iter() if self._ok(p)}

    @staticmethod
    def _ok(p) -> bool:
        try:
            p.cpu_times()
            return True
        except Exception:
            return False

    def run(self):
        while not self.stop.is_set():
            for p in self.psutil.process_iter(["name"]):
                try:
                    self.seen[p.pid] = ("TeacherActor" in (p.info["name"] or ""), sum(p.cpu_times()[:2]))
                except Exception:
                    pass
            self.stop.wait(0.5)

    def shares(self, wall: float) -> dict:
        actor = sum(t - self.base.get(pid, 0) for pid, (a, t) in self.seen.items() if a)
        other = sum(t - self.base.get(pid, 0) for pid, (a, t) in self.seen.items() if not a)
        return dict(actors=actor / wall, others=other / wall)


def _plain(args):
    """The hardware's own scaling, without Ray: process `i` of `k` computes chunks i, i+k, ... with one
    thread, all k starting together; returns its compute seconds."""
    teacher, images, shift, chunk, i, k, barrier = args  # images: the first `images` of the split
    import torch

    from orchestrator.data import load_split
    from orchestrator.teacher import cache
    from orchestrator.teacher.model import load_teacher
    from trainables.augment import ViewSpec

    torch.set_num_threads(1)
    cache.CHUNK_IMAGES = chunk
    s = load_split(train_limit=images, val_limit=100)
    model, info = load_teacher(teacher)
    spec = ViewSpec(shift, True)
    barrier.wait()
    t0 = time.time()
    for c in range(i, -(-images // chunk), k):
        cache.compute_chunk(model, s.train_x, cache.chunk_images(c, images), spec, info.preprocess, 256)
    return time.time() - t0


def plain_rate(args, k: int) -> float:
    """Forwards a second of k plain processes (1 thread each, no Ray) on the same job."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Manager() as m:
        barrier = m.Barrier(k)
        with ctx.Pool(k) as pool:
            secs = pool.map(
                _plain, [(args.teacher, args.plain_images, args.shift, args.chunk, i, k, barrier) for i in range(k)]
            )
    from trainables.augment import ViewSpec

    return args.plain_images * ViewSpec(args.shift, True).n_views / max(secs)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default=str(ROOT / "models/teacher/ta_resnet20.pt"))
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--shift", type=int, default=1, help="views: shifts up to this many px (x flip)")
    p.add_argument("--chunk", type=int, default=512, help="images per chunk (the unit of work per actor)")
    p.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--cpus-per-node", type=int, default=1)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument(
        "--plain",
        action="store_true",
        help="also time plain processes without Ray (1 thread each): what the cores themselves scale to",
    )
    p.add_argument(
        "--plain-images",
        type=int,
        default=4096,
        help="the plain processes' job (their compute loop alone is timed, so a smaller job will do)",
    )
    p.add_argument("--plain-only", action="store_true", help="only the plain processes (--nodes names the counts)")
    p.add_argument("--out", help="JSON file for the figures")
    args = p.parse_args()
    import ray
    from ray.cluster_utils import Cluster

    from orchestrator.data import load_split
    from orchestrator.machine import machine
    from orchestrator.run.io import atomic_write_json
    from orchestrator.teacher import cache
    from orchestrator.teacher.cache_ray import ray_runner
    from orchestrator.teacher.model import load_teacher
    from trainables.augment import ViewSpec

    cache.CHUNK_IMAGES = args.chunk
    s = load_split(train_limit=args.images, val_limit=100)
    model, info = load_teacher(args.teacher)
    spec = ViewSpec(args.shift, True)
    forwards = args.images * spec.n_views

    def build(runner) -> float:
        with tempfile.TemporaryDirectory() as d:
            t0, cpu = time.time(), CpuShare()
            cpu.start()
            cache.teacher_logits(model, info.sha256, info.preprocess, s.train_x, s.train_y, spec, d, runner=runner)
            wall = time.time() - t0
            cpu.stop.set()
            cpu.join()
            shares.append(cpu.shares(wall))
            return wall

    rows, shares = [], []
    for nodes in [] if args.plain_only else args.nodes:
        c = Cluster(initialize_head=True, head_node_args=dict(num_cpus=0, include_dashboard=False))
        for _ in range(nodes):
            c.add_node(num_cpus=args.cpus_per_node)
        ray.init(address=c.address, log_to_driver=False)
        c.wait_for_nodes()
        runner = ray_runner(
            model,
            info.arch,
            info.preprocess.channels,
            s.train_x,
            spec,
            info.preprocess,
            256,
            cpus_per_actor=args.cpus_per_node,
            precision=args.precision,
        )
        times = [build(runner) for _ in range(args.runs)]
        ray.shutdown()
        c.shutdown()
        med = statistics.median(times)
        share = {k: round(statistics.median(x[k] for x in shares), 3) for k in shares[0]}
        shares.clear()
        rows.append(
            dict(
                nodes=nodes,
                cpus=nodes * args.cpus_per_node,
                times_s=[round(t, 1) for t in times],
                median_s=round(med, 1),
                forwards_per_s=round(forwards / med),
                cores_used=share,
            )
        )
        base = rows[0]["forwards_per_s"] / rows[0]["nodes"]
        for r in rows:
            r["efficiency"] = round(r["forwards_per_s"] / (r["nodes"] * base), 3)
        print(json.dumps(rows[-1]), flush=True)
    plain = {}
    if args.plain or args.plain_only:
        for k in sorted({min(n * args.cpus_per_node, os.cpu_count()) for n in args.nodes}):
            plain[k] = round(statistics.median(plain_rate(args, k) for _ in range(args.runs)))
            print(json.dumps({"plain_processes": k, "forwards_per_s": plain[k]}), flush=True)
        for r in rows:  # Ray's rate against plain processes on as many cores (at most the machine's)
            k = min(r["cpus"], os.cpu_count())
            r["of_plain_processes"] = round(r["forwards_per_s"] / plain[k], 3)
    out = dict(
        question="teacher cache build across simulated Ray nodes",
        teacher=Path(args.teacher).name,
        images=args.images,
        views=spec.n_views,
        forwards=forwards,
        chunk=args.chunk,
        precision=args.precision,
        cores=os.cpu_count(),
        runs=args.runs,
        rows=rows,
        plain_processes_forwards_per_s=plain,
        plain_images=args.plain_images,
        machine=machine(),
        date=time.strftime("%Y-%m-%d"),
    )
    print(
        f"{out['machine']}; {args.images} images x {spec.n_views} views, chunks of {args.chunk}, median of {args.runs}"
    )
    for r in rows:
        print(
            f"  {r['nodes']} node(s) x {args.cpus_per_node} CPU  {r['median_s']:7.1f} s  "
            f"{r['forwards_per_s']:6d} forwards/s  efficiency {r['efficiency']:.2f}"
        )
    if args.out:
        atomic_write_json(args.out, out)


if __name__ == "__main__":
    main()
