"""Time to target: for a recipe, the wall time, epochs and TFLOP until validation accuracy first reaches each
target (plain, and with the flip test-time augmentation), median of several seeds, in fp32 and bf16 side by
side; and the train step's achieved GFLOP/s
against the core's measured matrix-multiply ceiling in the same precision.

A recipe is a sweep config's `train` section with one of its `trials` applied (default: configs/sweep.yaml's
KD trial) and `--set key=value` overrides of any train key (student, epochs, batch_size, lr, ...). Runs go two
at a time, one thread each (as the sweep's trials run), each in its own process; a run stops at the first
epoch where every target is reached (the rest of its schedule is not needed to know its time to target).
Data and teacher as the sweep prepares them (`prepare_data`: the split, the config's teacher mode, its
cache built once, outside the timing). No test data.

    bash scripts/loopback.sh .venv/bin/python bench/time_to_target.py [--precision fp32 bf16] [--seeds 3]
        [--targets 0.930 0.9234] [--set epochs=12 batch_size=256] [--avx2] [--out bench/results/x.json]

--avx2 sets ATEN_CPU_CAPABILITY=avx2 and ONEDNN_MAX_CPU_ISA=AVX2 in the runs: an AVX-512 machine then
takes the AVX2 fp32 kernels (checked: each run records ATen's capability). FLOP per training image:
6 x the student's multiply-adds (forward 2, backward 4), torchinfo's count.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class _Reached(Exception):
    pass


def matmul_gflops(precision: str, n: int = 2048, reps: int = 10) -> float:
    """The n x n matrix-multiply rate at torch's thread count in `precision` (mean of `reps`, after a warm-up)."""
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def run_one(job: dict, q) -> None:
    import torch

    torch.set_num_threads(job["threads"])
    import torchinfo

    from orchestrator.config import load_sweep_config, to_dict
    from orchestrator.sweep.prepare import prepare_data
    from students import create_student
    from trainables.config import TrainConfig
    from trainables.train import train_student

    cfg = load_sweep_config(Path(job["config"]))
    data, _ = prepare_data(cfg)  # as a sweep prepares it: split, the teacher's cached logits
    tc = TrainConfig(
        **{**to_dict(cfg.train), **job["trial"], **job["set"], "seed": job["seed"], "precision": job["precision"]}
    )
    student = create_student(tc.student, **tc.student_kwargs)
    macs = torchinfo.summary(student, input_size=(1, student.in_chans, 28, 28), verbose=0).total_mult_adds
    ceiling = matmul_gflops(job["precision"])
    targets, hist, reached = sorted(job["targets"]), [], {"none": {}, "flip": {}}

    def report(m, state):
        hist.append(
            dict(
                epoch=m["epoch"],
                val_acc=m["val_acc_plain"],
                val_acc_flip=m["val_acc_flip"],
                elapsed_s=m["elapsed_s"],
                images_per_s=m["images_per_s"],
            )
        )
        for tta, key in (("none", "val_acc_plain"), ("flip", "val_acc_flip")):
            for t in targets:
                if t not in reached[tta] and m[key] >= t:
                    reached[tta][t] = dict(epoch=m["epoch"], seconds=m["elapsed_s"])
        if all(len(r) == len(targets) for r in reached.values()):
            raise _Reached

    try:
        train_student(tc, data, report=report)
    except _Reached:
        pass
    ips = statistics.median(h["images_per_s"] for h in hist)
    flop_image = 6 * macs
    q.put(
        dict(
            precision=job["precision"],
            seed=job["seed"],
            capability=torch.backends.cpu.get_cpu_capability(),
            student=tc.student,
            macs_per_image=macs,
            epochs_planned=tc.epochs,
            history=hist,
            threads=job["threads"],
            reached={str(t): v for t, v in reached["none"].items()},
            reached_flip={str(t): v for t, v in reached["flip"].items()},
            tflop_per_epoch=flop_image * len(data.train_x) / 1e12,
            train_gflops=ips * flop_image / 1e9,
            matmul_gflops=ceiling,
            fraction_of_ceiling=ips * flop_image / 1e9 / ceiling,
        )
    )


def _parse_set(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        k, _, v = item.partition("=")
        out[k] = yaml.safe_load(v)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "sweep.yaml"))
    p.add_argument("--trial", default="kd", help="the config's trial (by loss) the recipe applies; none: the base")
    p.add_argument("--set", nargs="*", default=[], help="train key=value overrides")
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--targets", type=float, nargs="+", default=[0.930, 0.9234])
    p.add_argument("--avx2", action="store_true", help="restrict ATen and oneDNN to AVX2 kernels in the runs")
    p.add_argument("--parallel", type=int, default=2, help="runs at a time")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each run")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    from orchestrator.config import load_sweep_config
    from orchestrator.machine import machine

    cfg = load_sweep_config(Path(args.config))
    trial = next((t for t in cfg.trials if t.get("loss") == args.trial), {}) if args.trial != "none" else {}
    if args.avx2:
        os.environ.update(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2")
    jobs = [
        dict(
            config=args.config,
            trial=trial,
            set=_parse_set(args.set),
            seed=seed,
            precision=prec,
            targets=args.targets,
            threads=args.threads,
        )
        for prec in args.precision
        for seed in range(args.seeds)
    ]
    ctx = mp.get_context("spawn")
    q, results, t0 = ctx.Queue(), [], time.time()
    print(f"{machine()}; {len(jobs)} runs, {args.parallel} at a time", flush=True)
    for i in range(0, len(jobs), args.parallel):
        procs = [ctx.Process(target=run_one, args=(j, q)) for j in jobs[i : i + args.parallel]]
        for pr in procs:
            pr.start()
        for _ in procs:
            r = q.get()
            results.append(r)
            got = "; ".join(
                f"{k} "
                + (", ".join(f"{t}: epoch {v['epoch']} ({v['seconds']:.0f} s)" for t, v in r[key].items()) or "none")
                for k, key in (("plain", "reached"), ("flip TTA", "reached_flip"))
            )
            print(
                f"  {r['precision']} seed {r['seed']}: reached {got}; {r['train_gflops']:.1f} GFLOP/s "
                f"({r['fraction_of_ceiling']:.0%} of the matmul ceiling {r['matmul_gflops']:.0f})",
                flush=True,
            )
        for pr in procs:
            pr.join()
    summary = {}
    for prec in args.precision:
        rs = [r for r in results if r["precision"] == prec]
        row = dict(
            train_gflops=statistics.median(r["train_gflops"] for r in rs),
            fraction_of_ceiling=statistics.median(r["fraction_of_ceiling"] for r in rs),
            capability=rs[0]["capability"],
        )
        for t in args.targets:
            for suffix, key in (("", "reached"), (" flip", "reached_flip")):
                hit = [r[key].get(str(t)) for r in rs]
                if all(hit):
                    ep = statistics.median(h["epoch"] for h in hit)
                    row[str(t) + suffix] = dict(
                        seeds_reached=len(hit),
                        median_epochs=ep,
                        median_seconds=statistics.median(h["seconds"] for h in hit),
                        median_tflop=ep * rs[0]["tflop_per_epoch"],
                    )
                else:
                    row[str(t) + suffix] = dict(seeds_reached=sum(map(bool, hit)), of=len(hit))
        summary[prec] = row
        print(f"{prec}: {json.dumps(row)}", flush=True)
    out = dict(
        machine=machine(),
        date=time.strftime("%Y-%m-%d"),
        recipe=dict(config=os.path.relpath(args.config, ROOT), trial=trial, set=_parse_set(args.set)),
        avx2_forced=args.avx2,
        targets=args.targets,
        wall_s=time.time() - t0,
        summary=summary,
        runs=results,
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
