"""Function matching's cost: the student's train step with its targets cached (teacher.mode mixed) against
the same step with the teacher live on each mixed batch (teacher.mode live), and the teacher's forward alone
(what one cached mixed view costs to build), on this CPU, in its own precision and on the fp32 AVX2 path.

Each path runs in a subprocess (the AVX2 one with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2, checked
to take effect); each figure is the median of --repeats timings of --steps steps after warm-up steps.

    .venv/bin/python bench/function_matching_cost.py --out bench/results/function_matching_cost_<cpu>.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cpu_paths import on_both_paths  # noqa: E402


def measure(student: str, teacher: str, batch: int, steps: int, repeats: int, threads: int) -> dict:
    import torch

    from orchestrator.machine import machine
    from orchestrator.teacher.model import load_teacher
    from students import create_student
    from trainables.augment import mix_images, to_input
    from trainables.engine import autocast, resolve_precision
    from trainables.layout import prepare_for_training
    from trainables.losses import LOSSES

    torch.set_num_threads(threads)
    precision = resolve_precision("auto", "cpu")
    cast = autocast(precision, "cpu")
    model = create_student(student)
    prepare_for_training(model, "cpu", "channels_last")
    tmodel, info = load_teacher(teacher)
    pre = info.preprocess
    tmodel = tmodel.eval().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch * 8, 28, 28), dtype=torch.uint8, generator=g)
    cached = torch.randn(batch, 10)
    kd = LOSSES["kd"]

    def step(live: bool):
        idx = torch.randint(0, len(images), (batch,), generator=g)
        xb = mix_images(images[idx], "mixup", 1.0, generator=g)[0]
        t = cached
        if live:  # the teacher scores this very mix, in the step's precision
            xt = to_input(xb, pre.mean, pre.std, pre.channels, pre.size)
            with torch.no_grad(), cast:
                t = tmodel(xt.contiguous(memory_format=torch.channels_last)).float()
        x = to_input(xb, 0.2860, 0.3530, model.in_chans).contiguous(memory_format=torch.channels_last)
        with cast:
            out = model(x).float()
        loss = kd(out, t, torch.zeros(batch, dtype=torch.long), alpha=1.0, temperature=4.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def forward_only():
        xt = to_input(images[:256], pre.mean, pre.std, pre.channels, pre.size)
        with torch.no_grad(), cast:
            tmodel(xt.contiguous(memory_format=torch.channels_last))

    def rate(fn, n_images):
        for _ in range(3):
            fn()
        out = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            out.append(steps * n_images / (time.perf_counter() - t0))
        return statistics.median(out)

    cached_rate = rate(lambda: step(False), batch)
    live_rate = rate(lambda: step(True), batch)
    teacher_rate = rate(forward_only, 256)
    return dict(
        machine=machine(),
        aten=torch.backends.cpu.get_cpu_capability(),
        precision=precision,
        threads=threads,
        student=student,
        teacher=teacher,
        batch=batch,
        steps=steps,
        repeats=repeats,
        cached_step_images_per_s=round(cached_rate, 1),
        live_step_images_per_s=round(live_rate, 1),
        live_over_cached_time=round(cached_rate / live_rate, 3),
        teacher_forward_images_per_s=round(teacher_rate, 1),
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", default="res3_w16_32_76_s121")
    ap.add_argument("--teacher", default=str(ROOT / "models/teacher/ta_resnet20.pt"))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: one path, JSON out
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.one:
        print(json.dumps(measure(a.student, a.teacher, a.batch, a.steps, a.repeats, a.threads)))
        return
    rows = on_both_paths(__file__, sys.argv[1:])
    for row in rows:
        print(
            f"{row['path']:9s} ({row['aten']}, {row['precision']}): student step cached "
            f"{row['cached_step_images_per_s']:.0f} img/s, live teacher {row['live_step_images_per_s']:.0f} img/s "
            f"({row['live_over_cached_time']:.2f}x the time); teacher forward alone "
            f"{row['teacher_forward_images_per_s']:.0f} img/s"
        )
    if a.out:
        Path(a.out).write_text(json.dumps(dict(date=time.strftime("%Y-%m-%d"), rows=rows), indent=1) + "\n")


if __name__ == "__main__":
    main()
