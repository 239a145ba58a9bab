"""The memory layout a model trains in: channels_last everywhere, except the layers an upstream bug breaks.

channels_last makes oneDNN's convolutions faster on CPU for every registered student (bench/throughput.py). But oneDNN's
AVX2 1x1 convolution backward-weights kernel (`jit_avx2_1x1_convolution_bwd_weights`, oneDNN issue 6035)
writes past its workspace when the input is channels_last, the stride is above 1 and there are fewer than 8
input channels per group: with one thread the process aborts ("double free or corruption", SIGSEGV), with
more the weight gradient is wrong. Only CPUs where oneDNN runs below AVX-512 take that kernel (an AVX2-only
CPU, or ONEDNN_MAX_CPU_ISA=AVX2); the AVX-512 kernels are correct. On such a CPU `prepare_for_training`
runs each affected layer channels-first (its weight and input contiguous, its output back to
channels_last), which takes the reference kernel. The scan of shapes that crashed or went wrong and those
that did not is experiments/onednn_avx2_1x1/. The guard can go when the pinned PyTorch ships a oneDNN with the fix:
tests/test_layout.py then fails on its "the bug is still there" check and says so.
"""

from __future__ import annotations

import os
import platform

import torch
import torch.nn as nn

_AVX512_ISAS = ("AVX512", "AVX10", "AMX", "ALL")


def _isa_limit() -> str:
    return (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()


def onednn_native_bf16() -> bool:
    """Whether oneDNN computes bf16 in hardware here: an avx512_bf16/AMX CPU, not limited by
    ONEDNN_MAX_CPU_ISA to an ISA without bf16 (so ONEDNN_MAX_CPU_ISA=AVX2 makes a Zen 4 train as an AVX2
    CPU does: fp32 under precision auto)."""
    limit = _isa_limit()
    if limit and not any(k in limit for k in ("BF16", "AMX", "FP16", "AVX10", "ALL")):
        return False
    return torch.cpu._is_avx512_bf16_supported()


def onednn_below_avx512() -> bool:
    """Whether oneDNN's convolutions run on kernels below AVX-512 here (where the bug lives): an x86 CPU
    without AVX-512, or oneDNN limited by ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA (read at its first use)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "x86", "i686"):
        return False
    limit = _isa_limit()
    if limit and not limit.startswith(_AVX512_ISAS):
        return True
    return not torch.cpu._is_avx512_supported()


def hits_onednn_1x1_bug(m: nn.Module) -> bool:
    """A convolution of the shape the AVX2 backward-weights bug breaks: 1x1, stride > 1, < 8 input channels
    per group."""
    return (
        isinstance(m, nn.Conv2d)
        and tuple(m.kernel_size) == (1, 1)
        and max(m.stride) > 1
        and m.in_channels // m.groups < 8
    )


def _input_channels_first(module, args):
    return (args[0].contiguous(),) + tuple(args[1:])


def _output_channels_last(module, args, out):
    return out.contiguous(memory_format=torch.channels_last)


def guard_layers(model: nn.Module) -> list[str]:
    """Run every layer that hits the bug channels-first (in place; hooks survive deepcopy, e.g. the EMA);
    returns their names."""
    names = []
    for name, m in model.named_modules():
        if hits_onednn_1x1_bug(m):
            # a 1x1 weight counts as contiguous in either layout: its strides must be the NCHW ones
            m.weight.data = m.weight.data.clone(memory_format=torch.contiguous_format)
            m.register_forward_pre_hook(_input_channels_first)
            m.register_forward_hook(_output_channels_last)
            names.append(name)
    return names


LAYOUTS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def memory_format(layout: str) -> torch.memory_format:
    """A layout's name (train.layout) as torch's memory format. "auto" is resolved by the run's plan, which
    times both here; unresolved (no plan ran: kdsweep train, a bench) it is channels_last."""
    return LAYOUTS["channels_last" if layout == "auto" else layout]


def model_layout(model: nn.Module) -> torch.memory_format:
    """The memory format `model`'s convolutions are in (its first one with a kernel larger than 1x1, where
    the two formats differ): what its inputs should be in."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.weight.shape[-1] > 1:
            last = m.weight.is_contiguous(memory_format=torch.channels_last)
            return torch.channels_last if last else torch.contiguous_format
    return torch.channels_last


def prepare_for_training(
    model: nn.Module, device: str | torch.device = "cpu", layout: str = "channels_last"
) -> list[str]:
    """Move `model` to `device` in `layout` (in place); in channels_last, guard the layers oneDNN's AVX2
    kernel breaks when this CPU takes it. Returns the guarded layers' names."""
    fmt = memory_format(layout)
    model.to(device, memory_format=fmt)
    if fmt is torch.channels_last and torch.device(device).type == "cpu" and onednn_below_avx512():
        return guard_layers(model)
    return []
