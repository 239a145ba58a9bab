"""Teacher logits for every (training image, view), computed once and cached on disk. A view is a shift/flip
of the image (ViewSpec), or one of its seeded mixes with another training image (MixSpec, teacher.mode
mixed): either way a trial rebuilds the exact image the teacher saw.

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
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from orchestrator.config import Preprocess
from orchestrator.run.io import atomic_write, atomic_write_json
from trainables.augment import MixSpec, ViewSpec, to_input
from trainables.infer import INFER_BATCH
from trainables.layout import model_layout

log = logging.getLogger(__name__)

CACHE_VERSION = 1
CHUNK_IMAGES = 2048  # images per resumable chunk


def _pre_key(pre: Preprocess) -> dict:
    """The preprocessing as part of a cache key; size 28 (the default) left out, so that caches built before
    `size` existed keep their keys."""
    d = asdict(pre)
    if d.get("size") == 28:
        d.pop("size")
    return d


def fingerprint(
    teacher_sha256: str, images: np.ndarray, labels: np.ndarray, spec: ViewSpec | MixSpec, pre: Preprocess
) -> str:
    h = hashlib.sha256()
    h.update(
        json.dumps(
            dict(
                v=CACHE_VERSION, teacher=teacher_sha256, views=asdict(spec), pre=_pre_key(pre), shape=list(images.shape)
            ),
            sort_keys=True,
        ).encode()
    )
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
def _views_logits(
    model, x_all: torch.Tensor, rows: slice, spec, pre: Preprocess, batch_size: int, device
) -> torch.Tensor:
    """(n, V, 10) fp32 logits of every view of every image x_all[rows]: a ViewSpec's shifted/flipped views, or a
    MixSpec's mixed ones (which read their partners from x_all, every training image)."""
    V, n = spec.n_views, rows.stop - rows.start
    views = torch.arange(V).repeat(n)  # (n*V,) image-major
    idx = torch.arange(rows.start, rows.stop).repeat_interleave(V)  # (n*V,)
    out, fmt = [], model_layout(model)  # inputs in the model's own layout (the run's probe chose it)
    for i in range(0, len(idx), batch_size):
        xb = spec.images(x_all, idx[i : i + batch_size], views[i : i + batch_size]).to(device)
        x_in = to_input(xb, pre.mean, pre.std, pre.channels, pre.size).contiguous(memory_format=fmt)
        out.append(model(x_in).float().cpu())
    return torch.cat(out).view(n, V, -1) if out else torch.zeros(0, V, 10)


def chunk_images(c: int, n: int) -> slice:
    """Rows of chunk `c` of an n-image cache: the explicit index that fixes the row order of every build."""
    return slice(c * CHUNK_IMAGES, min((c + 1) * CHUNK_IMAGES, n))


def compute_chunk(
    model,
    images: np.ndarray | torch.Tensor,
    rows: slice,
    spec: ViewSpec | MixSpec,
    pre: Preprocess,
    batch_size: int,
    device="cpu",
) -> np.ndarray:
    """fp16 (rows, V, 10) logits of images[rows] (one chunk): the one computation both builders run."""
    return _views_logits(model, torch.as_tensor(images), rows, spec, pre, batch_size, device).half().numpy()


def _rows(c: int, n: int) -> int:
    r = chunk_images(c, n)
    return r.stop - r.start


def missing_forwards(
    teacher_sha256: str,
    pre: Preprocess,
    images: np.ndarray,
    labels: np.ndarray,
    spec: ViewSpec | MixSpec,
    cache_dir: str | Path,
) -> int:
    """How many teacher forwards `teacher_logits` would run now: 0 when the cache file is there, else every
    (image, view) of the chunks not written yet (for a plan; the build itself checks every file)."""
    cache_dir = Path(cache_dir)
    key = fingerprint(teacher_sha256, images, labels, spec, pre)
    if (cache_dir / f"logits-{key}.npy").is_file():
        return 0
    parts = cache_dir / f"logits-{key}.partial"
    done = sum(_rows(int(p.stem), len(images)) for p in parts.glob("[0-9]*.npy")) if parts.is_dir() else 0
    return (len(images) - done) * spec.n_views


def teacher_logits(
    model,
    teacher_sha256: str,
    pre: Preprocess,
    images: np.ndarray,
    labels: np.ndarray,
    spec: ViewSpec | MixSpec,
    cache_dir: str | Path,
    batch_size: int = INFER_BATCH,
    device: str = "cpu",
    runner=None,
) -> tuple[np.ndarray, int, dict]:
    """(logits fp16 (N, V, 10), teacher forward passes run now, info) for every view of every image.

    `spec` with shift 0 and no flip gives the clean-image logits (V = 1). `runner(missing_chunks)` yields
    (chunk, fp16 array) for each missing chunk in any order; the default computes them here, in order, with
    `model` (orchestrator.teacher.cache_ray builds them on every node of a Ray cluster instead).
    """
    cache_dir = Path(cache_dir)
    key = fingerprint(teacher_sha256, images, labels, spec, pre)
    npy, meta = cache_dir / f"logits-{key}.npy", cache_dir / f"logits-{key}.json"
    N, V = len(images), spec.n_views
    info = dict(key=key, path=str(npy), n_images=N, n_views=V, views=asdict(spec))
    cached = _load_valid(npy, meta, key, (N, V, 10))
    if cached is not None:
        log.info(f"teacher logits: cache hit {npy} ({N} images x {V} views)")
        return cached, 0, {**info, "hit": True, "build_s": 0.0}
    if npy.exists() or meta.exists():
        log.info(f"teacher logits: {npy} is stale or corrupt (fingerprint/checksum mismatch); rebuilding")
    parts = cache_dir / f"logits-{key}.partial"
    parts.mkdir(parents=True, exist_ok=True)
    n_chunks = -(-N // CHUNK_IMAGES)
    missing = []
    for c in range(n_chunks):
        chunk = parts / f"{c:05d}.npy"
        rows = chunk_images(c, N)
        try:
            if chunk.is_file() and np.load(chunk, allow_pickle=False).shape == (rows.stop - rows.start, V, 10):
                continue
        except (ValueError, OSError, EOFError):
            pass  # a chunk torn by a crash: compute it again
        missing.append(c)
    if runner is None:

        def runner(cs):
            return ((c, compute_chunk(model, images, chunk_images(c, N), spec, pre, batch_size, device)) for c in cs)

    forwards, t0 = 0, time.time()
    todo = sum(_rows(m, N) for m in missing) * V
    for i, (c, out) in enumerate(runner(missing)):
        rows = chunk_images(c, N)
        if out.shape != (rows.stop - rows.start, V, 10):
            want = (rows.stop - rows.start, V, 10)
            raise RuntimeError(f"chunk {c}: got logits of shape {out.shape}, expected {want}")
        forwards += out.shape[0] * V
        atomic_write(parts / f"{c:05d}.npy", lambda tmp: np.save(tmp, out))  # noqa: B023 (called at once)
        rate = forwards / max(time.time() - t0, 1e-9)
        log.info(
            f"teacher logits: {i + 1}/{len(missing)} missing chunks ({forwards}/{todo} forwards, "
            f"{rate:.0f} img/s, eta {max(todo - forwards, 0) / max(rate, 1e-9) / 60:.1f} min)"
        )
    a = (
        np.concatenate([np.load(parts / f"{c:05d}.npy") for c in range(n_chunks)])
        if n_chunks
        else np.zeros((0, V, 10), np.float16)
    )
    atomic_write(npy, lambda tmp: np.save(tmp, a))
    build_s = time.time() - t0
    atomic_write_json(
        meta,
        dict(
            key=key,
            sha256=_array_sha(a),
            shape=list(a.shape),
            teacher=teacher_sha256,
            views=asdict(spec),
            preprocess=asdict(pre),
            build_s=build_s,
        ),
    )
    shutil.rmtree(parts, ignore_errors=True)
    log.info(f"teacher logits: built {npy} in {build_s:.0f} s ({forwards} teacher forwards)")
    return a, forwards, {**info, "hit": False, "build_s": build_s}
