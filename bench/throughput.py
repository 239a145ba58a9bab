"""Training-loop throughput: kdsweep's in-memory batched loop vs a seed-style torchvision loop.

Same student, batch size, augmentation (random shift <= 2 px with zero padding +
horizontal flip), loss (cross-entropy), optimizer and threads; the data path
differs, and kdsweep's loop is timed at fp32 and with `train.precision: bf16`
(autocast; AMX/avx512_bf16 CPUs):
  kdsweep: the uint8 train set as one tensor; shift/flip by one gather per batch
           (trainables.train.train_student).
  seed:    torchvision.datasets.FashionMNIST with per-sample transforms
           (RandomCrop(28, padding=2), RandomHorizontalFlip, ToTensor, Normalize,
           3-channel repeat) through a DataLoader.
Prints images/s of each (median of --runs) and the ratio, measured in one run.

    python bench/throughput.py [--images 8192] [--runs 3] [--student starter_model_2] [--workers 0]
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from orchestrator.config import TrainConfig  # noqa: E402
from orchestrator.data import find_data_dir, load_split  # noqa: E402
from students import create_student  # noqa: E402
from trainables.augment import ViewSpec  # noqa: E402
from trainables.optim import make_optimizer  # noqa: E402
from trainables.train import TrialData, train_student  # noqa: E402

MEAN, STD = 0.2860, 0.3530


def kdsweep_rate(args, precision: str = "fp32") -> float:
    s = load_split(train_limit=args.images, val_limit=100)
    data = TrialData(s.train_x, s.train_y, s.val_x, s.val_y, ViewSpec(2, True), mode="none")
    cfg = TrainConfig(
        student=args.student,
        loss="ce",
        epochs=2,
        batch_size=args.batch_size,
        lr=0.01,
        optimizer="sgd",
        schedule="constant",
        precision=precision,
    )
    return train_student(cfg, data)["images_per_s"]  # epoch 2 (epoch 1 warms up), training time only


def seed_rate(args) -> float:
    import torchvision
    from torchvision import transforms as T

    root = Path(tempfile.mkdtemp()) / "FashionMNIST" / "raw"
    root.mkdir(parents=True)
    for f in find_data_dir().glob("*-ubyte.gz"):  # torchvision reads the uncompressed IDX files
        (root / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
    tf = T.Compose(
        [
            T.RandomCrop(28, padding=2),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize((MEAN,), (STD,)),
            T.Lambda(lambda x: x.repeat(3, 1, 1)),
        ]
    )
    ds = torchvision.datasets.FashionMNIST(str(root.parent.parent), train=True, transform=tf)
    ds = torch.utils.data.Subset(ds, range(args.images))
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers)
    torch.manual_seed(0)
    model = create_student(args.student)
    opt = make_optimizer(model.parameters(), "sgd", 0.01, 5e-4)
    model.train()
    for _epoch in range(2):  # epoch 1 warms up, epoch 2 is timed (as for kdsweep)
        t0, seen = time.time(), 0
        for x, y in loader:
            x = x[:, : model.in_chans]
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(y)
    return seen / (time.time() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=8192)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--student", default="starter_model_2")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers of the seed-style loop")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    variants = {"kdsweep fp32": dict(precision="fp32"), "kdsweep bf16": dict(precision="bf16")}
    rates = {k: [] for k in [*variants, "seed-style fp32"]}
    for r in range(args.runs):  # interleaved, so drift in machine load hits all alike
        for name, kw in variants.items():
            rates[name].append(kdsweep_rate(args, **kw))
        rates["seed-style fp32"].append(seed_rate(args))
        print(f"run {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rates.items()) + " img/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    base = med["seed-style fp32"]
    print(
        f"median of {args.runs} ({args.student}, batch {args.batch_size}, {args.images} images, "
        f"{args.threads} threads, DataLoader workers {args.workers}):"
    )
    for k, v in med.items():
        print(f"  {k:22s} {v:6.0f} img/s  {v / base:.2f}x")


if __name__ == "__main__":
    main()
