"""Teacher (ResNet-50) inference: what memory format, grad mode, precision and batch size buy, as the
logit cache runs it. 28x28 input is 79.2 M multiply-adds per image (torchinfo), so img/s x 0.158 GFLOP
is the achieved GFLOP/s, printed beside each variant. Interleaved runs, median of --runs.

    python bench/teacher_variants.py [--images 2048] [--runs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from orchestrator.data import load_split  # noqa: E402
from orchestrator.machine import machine  # noqa: E402
from orchestrator.teacher.model import load_teacher  # noqa: E402
from trainables.augment import to_input  # noqa: E402
from trainables.engine import resolve_precision  # noqa: E402

GFLOP_PER_IMAGE = 2 * 79.2e-3


def rate(model, x, bs, grad_mode, bf16) -> float:
    ctx = torch.inference_mode() if grad_mode == "inference_mode" else torch.no_grad()
    with ctx, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model(x[:bs])
        t0 = time.perf_counter()
        for i in range(0, len(x), bs):
            model(x[i : i + bs])
        return len(x) / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="models/teacher/resnet50.pt")
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, info = load_teacher(args.teacher)
    pre = info.preprocess
    x = to_input(
        torch.as_tensor(load_split(train_limit=args.images, val_limit=100).train_x), pre.mean, pre.std, pre.channels
    ).contiguous()
    cl_model = load_teacher(args.teacher)[0].to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    bf16 = resolve_precision("auto", "cpu") == "bf16"
    variants = {  # name -> (model, input, batch, grad mode, bf16)
        "baseline: contiguous, no_grad, fp32, batch 256": (model, x, 256, "no_grad", False),
        "inference_mode": (model, x, 256, "inference_mode", False),
        "channels_last": (cl_model, x_cl, 256, "no_grad", False),
        "channels_last + inference_mode": (cl_model, x_cl, 256, "inference_mode", False),
        "batch 128": (model, x, 128, "no_grad", False),
        "batch 512": (model, x, 512, "no_grad", False),
    }
    if bf16:
        variants["bf16 autocast (native here)"] = (model, x, 256, "no_grad", True)
        variants["channels_last + bf16"] = (cl_model, x_cl, 256, "no_grad", True)
    print(
        f"{machine()}; {args.images} images, median of {args.runs} interleaved runs"
        + ("" if bf16 else "; bf16 not measured: this CPU has no native bf16"),
        flush=True,
    )
    rates = {k: [] for k in variants}
    for _ in range(args.runs):
        for k, (m, xx, bs, gm, b) in variants.items():
            rates[k].append(rate(m, xx, bs, gm, b))
    base = statistics.median(rates[next(iter(variants))])
    for k, r in rates.items():
        med = statistics.median(r)
        print(f"  {k:48s} {med:6.0f} img/s  {med * GFLOP_PER_IMAGE:5.1f} GFLOP/s  {med / base:4.2f}x", flush=True)


if __name__ == "__main__":
    main()
