"""Where the driver's Python heap grows per trial: a sweep of N short trials (trial_scale's scale_config)
under tracemalloc, snapshots when half and all of them have ended, the difference grouped by source file and
line, per trial.

    bash scripts/loopback.sh .venv/bin/python bench/driver_heap.py [--trials 60] [--out FILE]

Tracing slows the driver; the figures are bytes, not time. A resize of an interpreter-wide table (the
interned strings') lands whole on the line that triggered it: a large block that does not recur per trial,
told apart by its object count.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from trial_scale import scale_config  # noqa: E402  (the same sweep trial_scale measures)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=60)
    p.add_argument("--teacher", default=str(ROOT / "models/teacher/ta_resnet20.pt"))
    p.add_argument("--out", help="JSON file for the top sites")
    args = p.parse_args()
    import ray
    from ray.tune import Callback

    import orchestrator.sweep.tune_callbacks as callbacks
    from orchestrator.machine import machine
    from orchestrator.sweep.driver import run_sweep

    n, snaps = args.trials, {}

    class Snap(Callback):
        ended = 0

        def on_trial_complete(self, iteration, trials, trial, **info):
            Snap.ended += 1
            if Snap.ended in (n // 2, n):
                snaps[Snap.ended] = tracemalloc.take_snapshot()

    callbacks.DriverMemory = lambda name: Snap()  # the driver's own sampler, replaced by the snapshots
    with tempfile.TemporaryDirectory() as tmp:
        cfg = scale_config("heap", tmp, args.teacher, n)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        tracemalloc.start(1)
        run_sweep(cfg)
        tracemalloc.stop()
        ray.shutdown()
    per = n - n // 2
    diff = snaps[n].compare_to(snaps[n // 2], "lineno")
    rows = [
        dict(
            site=f"{s.traceback[0].filename.split('site-packages/')[-1]}:{s.traceback[0].lineno}",
            kb_per_trial=round(s.size_diff / per / 1024, 2),
            objects_per_trial=round(s.count_diff / per, 1),
        )
        for s in diff[:15]
    ]
    total = round(sum(s.size_diff for s in diff) / per / 1024, 1)
    for r in rows:
        print(f"{r['kb_per_trial']:8.2f} KB {r['objects_per_trial']:7.1f} objects a trial  {r['site']}")
    print(f"all sites: {total} KB a trial")
    if args.out:
        out = dict(trials=n, kb_per_trial=total, sites=rows, machine=machine())
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
