"""Which machine a figure was measured on, in one line that every result file carries."""

from __future__ import annotations

import os

import torch


def machine() -> str:
    """The machine a figure was measured on: CPU model, family/model, the flags that decide its speed (AVX2,
    AVX-512, AVX512-BF16, AMX), the kernels ATen and oneDNN were limited to, threads, GPU, torch."""
    cpu, fam, flags = "unknown cpu", {}, set()
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and cpu == "unknown cpu":
                cpu = value.strip()
            elif key in ("cpu family", "model") and key not in fam:
                fam[key] = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags] or ["no avx2"]
    where = f", family {fam['cpu family']} model {fam['model']}" if len(fam) == 2 else ""
    limits = [f"ATen {torch.backends.cpu.get_cpu_capability()}"]
    if isa := os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA"):
        limits.append(f"oneDNN limited to {isa}")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{os.cpu_count()} CPU cores ({cpu}{where}; {' '.join(shown)}; {', '.join(limits)}), "
        f"{torch.get_num_threads()} torch threads, {gpu}, torch {torch.__version__}"
    )
