"""The guard against oneDNN's AVX2 1x1 backward-weights bug (trainables/layout.py), on the AVX2 path.

Each run is a subprocess with ONEDNN_MAX_CPU_ISA=AVX2 and ATEN_CPU_CAPABILITY=avx2 set before torch is
imported, so an AVX-512 machine takes the AVX2 kernels too (checked: oneDNN's verbose ISA line and ATen's
capability). The student has the exact shape pruning produced: a 7 -> 15 1x1 stride-2 shortcut.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from tests.conftest import ROOT
from trainables import layout

AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}

# One epoch of train_student (the product's train step: channels_last input, CE, backward, SGD) on 256
# random images; prints the trained weights. MODE guarded: the product, then the reference (every
# convolution channels-first) in the same process; unguarded: channels_last for every layer, the guard off.
CHILD = r"""
import json, sys
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
mode, threads = sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
import trainables.train as tr
from trainables import layout
from trainables.augment import ViewSpec
from trainables.config import TrainConfig
rng = np.random.default_rng(0)
x, y = rng.integers(0, 256, (256, 28, 28), dtype=np.uint8), rng.integers(0, 10, 256)
data = tr.TrialData(x, y, x[:64], y[:64], ViewSpec(0, False), "none")
cfg = TrainConfig(student="res3", student_kwargs={"widths": [7, 15, 30]}, loss="ce", epochs=1, batch_size=64,
                  ema=0.0, precision="fp32")

def weights():
    out = {}
    tr.train_student(cfg, data, report=lambda m, s: out.update(s["state_dict"]))
    return {k: v.double().flatten().tolist() for k, v in out.items() if v.is_floating_point()}

runs = {}
if mode == "unguarded":
    tr.prepare_for_training = lambda m, d="cpu", lay="channels_last": m.to(d, memory_format=torch.channels_last) and []
    runs["unguarded"] = weights()
else:
    runs["guarded"] = weights()
    layout.hits_onednn_1x1_bug = lambda m: isinstance(m, torch.nn.Conv2d)   # every convolution channels-first
    runs["reference"] = weights()
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "runs": runs}))
"""


def _run(mode: str, threads: int, verbose: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, **AVX2, **({"ONEDNN_VERBOSE": "1"} if verbose else {})}
    try:
        return subprocess.run(
            [sys.executable, "-c", CHILD, str(ROOT), mode, str(threads)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired as e:  # with 2 threads the broken kernel may also hang
        return subprocess.CompletedProcess(e.cmd, -9, "", "timed out")


def _weights(p: subprocess.CompletedProcess) -> dict[str, dict[str, torch.Tensor]]:
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.splitlines()[-1])
    assert out["capability"] == "AVX2"  # ATen took the AVX2 path
    return {run: {k: torch.tensor(v) for k, v in w.items()} for run, w in out["runs"].items()}


def _close(a: dict, b: dict) -> bool:
    return all(torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-4) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
def test_guard_trains_the_bug_shape_like_channels_first_on_avx2(threads):
    guarded = _run("guarded", threads, verbose=threads == 1)
    if threads == 1:
        assert "isa:Intel AVX2" in guarded.stdout + guarded.stderr  # oneDNN took the AVX2 kernels
    runs = _weights(guarded)
    assert _close(runs["guarded"], runs["reference"])
    # Without the guard the same run crashes, hangs or trains wrong weights: if it ever stops doing so, the
    # pinned PyTorch has a oneDNN with the fix (issue 6035) and trainables/layout.py can go.
    bare = _run("unguarded", threads)
    broken = bare.returncode != 0 or not _close(_weights(bare)["unguarded"], runs["reference"])
    assert broken, "oneDNN's AVX2 1x1 backward-weights bug is gone in this PyTorch: remove trainables/layout.py"


def test_bug_shapes_and_detection(monkeypatch):
    assert layout.hits_onednn_1x1_bug(nn.Conv2d(7, 15, 1, stride=2))
    assert layout.hits_onednn_1x1_bug(nn.Conv2d(2, 32, 1, stride=2))
    assert not layout.hits_onednn_1x1_bug(nn.Conv2d(8, 15, 1, stride=2))  # 8 input channels: fine
    assert not layout.hits_onednn_1x1_bug(nn.Conv2d(7, 15, 1, stride=1))
    assert not layout.hits_onednn_1x1_bug(nn.Conv2d(7, 15, 3, stride=2))
    monkeypatch.setattr(layout.platform, "machine", lambda: "x86_64")
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_supported", lambda: True)
    assert not layout.onednn_below_avx512()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert layout.onednn_below_avx512()  # limited by the environment
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_amx")
    assert not layout.onednn_below_avx512()
    monkeypatch.setattr(torch.cpu, "_is_avx512_supported", lambda: False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert layout.onednn_below_avx512()  # an AVX2-only CPU
    monkeypatch.setattr(layout.platform, "machine", lambda: "aarch64")
    assert not layout.onednn_below_avx512()


def test_prepare_guards_only_the_bug_layers_and_only_below_avx512(monkeypatch):
    from students import create_student

    monkeypatch.setattr(layout, "onednn_below_avx512", lambda: True)
    model = create_student("res3", widths=[7, 15, 30])
    assert layout.prepare_for_training(model) == ["features.4.shortcut.0"]
    conv = model.features[4].shortcut[0]
    assert conv.weight.stride() == (7, 1, 1, 1)  # NCHW strides, not channels_last's
    out = model.features[:5](torch.randn(2, 1, 28, 28).contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)  # the rest of the net stays channels_last
    assert layout.prepare_for_training(create_student("res3_w16_32_76_d111")) == []
    monkeypatch.setattr(layout, "onednn_below_avx512", lambda: False)
    assert layout.prepare_for_training(create_student("res3", widths=[7, 15, 30])) == []
