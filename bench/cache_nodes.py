"""Teacher-logit cache build across Ray worker nodes (simulated on this machine: ray.cluster_utils, a head
without CPUs, worker nodes of --cpus-per-node CPUs each), on a job large enough that fixed costs are small:
by default the 18-view cache (shift 1 + flip) of a 20,000-image subset with the released teacher. Same
images, views and teacher each time; a fresh cache directory for every build; median of --runs.

    bash scripts/loopback.sh .venv/bin/python bench/cache_nodes.py [--nodes 1 2 4] [--out FILE]

Efficiency = rate on k nodes / (k x rate on 1 node). On a machine with fewer cores than nodes x CPUs the
nodes share cores, and the figure measures oversubscription, not scale-out: each row records the cores.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


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
            t0 = time.time()
            cache.teacher_logits(model, info.sha256, info.preprocess, s.train_x, s.train_y, spec, d,
                                 runner=runner)
            return time.time() - t0

    rows = []
    for nodes in args.nodes:
        c = Cluster(initialize_head=True, head_node_args=dict(num_cpus=0, include_dashboard=False))
        for _ in range(nodes):
            c.add_node(num_cpus=args.cpus_per_node)
        ray.init(address=c.address, log_to_driver=False)
        c.wait_for_nodes()
        runner = ray_runner(model, info.arch, info.preprocess.channels, s.train_x, spec, info.preprocess, 256,
                            cpus_per_actor=args.cpus_per_node, precision=args.precision)
        times = [build(runner) for _ in range(args.runs)]
        ray.shutdown()
        c.shutdown()
        med = statistics.median(times)
        rows.append(dict(nodes=nodes, cpus=nodes * args.cpus_per_node, times_s=[round(t, 1) for t in times],
                         median_s=round(med, 1), forwards_per_s=round(forwards / med)))
        base = rows[0]["forwards_per_s"] / rows[0]["nodes"]
        for r in rows:
            r["efficiency"] = round(r["forwards_per_s"] / (r["nodes"] * base), 3)
        print(json.dumps(rows[-1]), flush=True)
    out = dict(question="teacher cache build across simulated Ray nodes", teacher=Path(args.teacher).name,
               images=args.images, views=spec.n_views, forwards=forwards, chunk=args.chunk,
               precision=args.precision, cores=os.cpu_count(), runs=args.runs, rows=rows, machine=machine(),
               date=time.strftime("%Y-%m-%d"))
    print(f"{out['machine']}; {args.images} images x {spec.n_views} views, chunks of {args.chunk}, median of {args.runs}")
    for r in rows:
        print(f"  {r['nodes']} node(s) x {args.cpus_per_node} CPU  {r['median_s']:7.1f} s  "
              f"{r['forwards_per_s']:6d} forwards/s  efficiency {r['efficiency']:.2f}")
    if args.out:
        atomic_write_json(args.out, out)


if __name__ == "__main__":
    main()
