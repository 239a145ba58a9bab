"""Teacher-logit cache build on 1 vs 2 Ray worker nodes (simulated on this machine: ray.cluster_utils,
1 CPU per node, a head without CPUs), against the in-process build with 1 thread. Same images, views and
teacher each time; the cache directory is fresh for every build. Median of --runs.

    python bench/cache_nodes.py [--images 8192] [--chunk 512] [--runs 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="models/teacher/resnet50.pt")
    p.add_argument("--images", type=int, default=8192)
    p.add_argument("--chunk", type=int, default=512, help="images per chunk (the unit of work per actor)")
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    import ray
    from ray.cluster_utils import Cluster
    from orchestrator.teacher import cache
    from orchestrator.teacher.cache_ray import ray_runner
    from orchestrator.data import load_split
    from orchestrator.teacher.model import load_teacher
    from orchestrator.machine import machine
    from trainables.augment import ViewSpec
    cache.CHUNK_IMAGES = args.chunk
    s = load_split(train_limit=args.images, val_limit=100)
    model, info = load_teacher(args.teacher)
    spec = ViewSpec(0, False)

    def build(runner=None) -> float:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.time()
            cache.teacher_logits(model, info.sha256, info.preprocess, s.train_x, s.train_y, spec, d,
                                 runner=runner)
            return time.time() - t0

    times = {}
    torch.set_num_threads(1)
    times["in-process, 1 thread"] = [build() for _ in range(args.runs)]
    for nodes in (1, 2):
        c = Cluster(initialize_head=True, head_node_args=dict(num_cpus=0, include_dashboard=False))
        for _ in range(nodes):
            c.add_node(num_cpus=1)
        ray.init(address=c.address, log_to_driver=False)
        c.wait_for_nodes()
        runner = ray_runner(model, info.arch, info.preprocess.channels, s.train_x, spec, info.preprocess, 256)
        times[f"Ray actors, {nodes} worker node(s) x 1 CPU"] = [build(runner) for _ in range(args.runs)]
        ray.shutdown()
        c.shutdown()
    print(f"{machine()}; {args.images} images x 1 view, chunks of {args.chunk}, median of {args.runs}")
    one = statistics.median(times["Ray actors, 1 worker node(s) x 1 CPU"])
    for k, v in times.items():
        med = statistics.median(v)
        print(f"  {k:42s} {med:6.1f} s  {args.images / med:5.0f} img/s  speed-up vs 1 node {one / med:4.2f}x")


if __name__ == "__main__":
    main()
