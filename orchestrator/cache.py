"""Teacher logits for every (training image, view), computed once and cached on disk.

File: `<cache_dir>/logits-<key>.npy` (fp16, (N, n_views, 10)) with `<key>.json`
beside it. The key is a sha256 over the teacher weights' sha256, the training
images and labels, the view spec and the preprocessing, so a changed teacher,
split or augmentation gets a new file. The JSON also holds a sha256 of the
array's bytes: a corrupted or truncated file is detected and rebuilt.
Building is chunked and resumable: finished chunks survive an interruption.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from orchestrator.config import Preprocess
from orchestrator.teacher import INFER_BATCH
from trainables.augment import ViewSpec, apply_views, to_input

CACHE_VERSION = 1
CHUNK_IMAGES = 2048  # images per resumable chunk


def fingerprint(teacher_sha256: str, images: np.ndarray, labels: np.ndarray, spec: ViewSpec, pre: Preprocess) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(dict(v=CACHE_VERSION, teacher=teacher_sha256, views=asdict(spec), pre=asdict(pre),
                             shape=list(images.shape)), sort_keys=True).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()[:24]


def _array_sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _load_valid(npy: Path, meta: Path, key: str, shape: tuple) -> np.ndarray | None:
    """The cached array, or None when missing, stale or corrupt."""
    if not (npy.is_file() and meta.is_file()):
        return None
    try:
        m = json.loads(meta.read_text())
        a = np.load(npy, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return None
    if m.get("key") != key or tuple(a.shape) != shape or a.dtype != np.float16 or m.get("sha256") != _array_sha(a):
        return None
    return a


@torch.no_grad()
def _views_logits(model, x_u8: torch.Tensor, spec: ViewSpec, pre: Preprocess, batch_size: int, device) -> torch.Tensor:
    """(n, V, 10) fp32 logits of every view of every image in x_u8 (n, 28, 28)."""
    V = spec.n_views
    views = torch.arange(V).repeat(len(x_u8))                       # (n*V,) image-major
    imgs = x_u8.repeat_interleave(V, dim=0)                          # (n*V, 28, 28)
    out = []
    for i in range(0, len(imgs), batch_size):
        xb = apply_views(imgs[i:i + batch_size].to(device), views[i:i + batch_size].to(device), spec)
        out.append(model(to_input(xb, pre.mean, pre.std, pre.channels)).float().cpu())
    return torch.cat(out).view(len(x_u8), V, -1)


def teacher_logits(model, teacher_sha256: str, pre: Preprocess, images: np.ndarray, labels: np.ndarray,
                   spec: ViewSpec, cache_dir: str | Path, batch_size: int = INFER_BATCH, device: str = "cpu",
                   log=print) -> tuple[np.ndarray, int, dict]:
    """(logits fp16 (N, V, 10), teacher forward passes run now, info) for every view of every image.

    `spec` with shift 0 and no flip gives the clean-image logits (V = 1).
    """
    cache_dir = Path(cache_dir)
    key = fingerprint(teacher_sha256, images, labels, spec, pre)
    npy, meta = cache_dir / f"logits-{key}.npy", cache_dir / f"logits-{key}.json"
    N, V = len(images), spec.n_views
    info = dict(key=key, path=str(npy), n_images=N, n_views=V, views=asdict(spec))
    cached = _load_valid(npy, meta, key, (N, V, 10))
    if cached is not None:
        log(f"teacher logits: cache hit {npy} ({N} images x {V} views)")
        return cached, 0, {**info, "hit": True, "build_s": 0.0}
    if npy.exists() or meta.exists():
        log(f"teacher logits: {npy} is stale or corrupt (fingerprint/checksum mismatch); rebuilding")
    parts = cache_dir / f"logits-{key}.partial"
    parts.mkdir(parents=True, exist_ok=True)
    x = torch.as_tensor(images)
    forwards, t0 = 0, time.time()
    n_chunks = -(-N // CHUNK_IMAGES)
    for c in range(n_chunks):
        chunk = parts / f"{c:05d}.npy"
        if chunk.is_file():
            try:
                if np.load(chunk, allow_pickle=False).shape == (min(CHUNK_IMAGES, N - c * CHUNK_IMAGES), V, 10):
                    continue
            except (ValueError, OSError, EOFError):
                pass  # a chunk torn by a crash: compute it again
        lo = c * CHUNK_IMAGES
        out = _views_logits(model, x[lo:lo + CHUNK_IMAGES], spec, pre, batch_size, device)
        forwards += out.shape[0] * V
        tmp = chunk.with_suffix(".tmp.npy")
        np.save(tmp, out.half().numpy())
        os.replace(tmp, chunk)
        done, rate = (c + 1) * CHUNK_IMAGES * V, forwards / max(time.time() - t0, 1e-9)
        left = max(N * V - done, 0) / max(rate, 1e-9)
        log(f"teacher logits: chunk {c + 1}/{n_chunks} ({min(done, N * V)}/{N * V} forwards, "
            f"{rate:.0f} img/s, eta {left / 60:.1f} min)")
    a = np.concatenate([np.load(parts / f"{c:05d}.npy") for c in range(n_chunks)]) if n_chunks else \
        np.zeros((0, V, 10), np.float16)
    tmp = npy.with_suffix(".tmp.npy")
    np.save(tmp, a)
    os.replace(tmp, npy)
    build_s = time.time() - t0
    meta.write_text(json.dumps(dict(key=key, sha256=_array_sha(a), shape=list(a.shape), teacher=teacher_sha256,
                                    views=asdict(spec), preprocess=asdict(pre), build_s=build_s), indent=1))
    shutil.rmtree(parts, ignore_errors=True)
    log(f"teacher logits: built {npy} in {build_s:.0f} s ({forwards} teacher forwards)")
    return a, forwards, {**info, "hit": False, "build_s": build_s}
