"""Enumerable views and the teacher-logit cache (issue: consistent teaching)."""
import json

import numpy as np
import pytest
import torch

from orchestrator import cache
from orchestrator.config import Preprocess
from orchestrator.teacher import build_resnet
from trainables.augment import ViewSpec, apply_views, to_input

PRE = Preprocess(mean=0.286, std=0.353, channels=3)


def by_hand(img: np.ndarray, dy: int, dx: int, flip: bool) -> np.ndarray:
    """Flip left-right, then move the content by (dy, dx) with zero fill, one pixel at a time."""
    src = img[:, ::-1] if flip else img
    out = np.zeros_like(src)
    h, w = src.shape
    for r in range(h):
        for c in range(w):
            if 0 <= r - dy < h and 0 <= c - dx < w:
                out[r, c] = src[r - dy, c - dx]
    return out


@pytest.mark.parametrize("shift, flip", [(2, True), (1, False), (0, True)])
def test_every_view_matches_hand_augmentation(small_split, shift, flip):
    spec = ViewSpec(shift, flip)
    imgs = torch.as_tensor(small_split.train_x[:3])
    for v in range(spec.n_views):
        views = torch.full((3,), v)
        got = apply_views(imgs, views, spec).numpy()
        dy, dx, f = (t[0].item() for t in spec.decode(views))
        for i in range(3):
            assert np.array_equal(got[i], by_hand(small_split.train_x[i], dy, dx, bool(f))), (v, dy, dx, f)
    assert spec.n_views == (2 * shift + 1) ** 2 * (2 if flip else 1)
    assert np.array_equal(apply_views(imgs, torch.full((3,), spec.identity), spec).numpy(), small_split.train_x[:3])


def test_mixed_views_in_one_batch(small_split):
    spec = ViewSpec(2, True)
    imgs = torch.as_tensor(small_split.train_x[:50])
    views = torch.randint(spec.n_views, (50,), generator=torch.Generator().manual_seed(1))
    batch = apply_views(imgs, views, spec)
    for i in range(50):
        assert torch.equal(batch[i], apply_views(imgs[i:i + 1], views[i:i + 1], spec)[0])


@pytest.fixture()
def teacher():
    torch.manual_seed(0)
    return build_resnet("resnet10").eval()


def test_cached_logits_equal_teacher_output(small_split, teacher, tmp_path):
    spec = ViewSpec(1, True)
    x, y = small_split.train_x[:6], small_split.train_y[:6]
    logits, forwards, info = cache.teacher_logits(teacher, "sha-a", PRE, x, y, spec, tmp_path, batch_size=7,
                                                  log=lambda m: None)
    assert logits.shape == (6, spec.n_views, 10) and logits.dtype == np.float16
    assert forwards == 6 * spec.n_views and not info["hit"]
    with torch.no_grad():
        for v in range(spec.n_views):
            xb = apply_views(torch.as_tensor(x), torch.full((6,), v), spec)
            ref = teacher(to_input(xb, PRE.mean, PRE.std, PRE.channels))
            assert torch.allclose(torch.as_tensor(logits[:, v]).float(), ref, atol=2e-3, rtol=2e-3)
    again, forwards2, info2 = cache.teacher_logits(teacher, "sha-a", PRE, x, y, spec, tmp_path, log=lambda m: None)
    assert forwards2 == 0 and info2["hit"] and np.array_equal(again, logits)


def test_key_changes_with_teacher_data_views_preprocessing(small_split):
    x, y = small_split.train_x[:6], small_split.train_y[:6]
    base = cache.fingerprint("a", x, y, ViewSpec(1, True), PRE)
    assert base != cache.fingerprint("b", x, y, ViewSpec(1, True), PRE)
    assert base != cache.fingerprint("a", x[:5], y[:5], ViewSpec(1, True), PRE)
    assert base != cache.fingerprint("a", x, y, ViewSpec(1, False), PRE)
    assert base != cache.fingerprint("a", x, y, ViewSpec(1, True), Preprocess(0.5, 0.5, 3))


def test_corrupt_or_stale_cache_is_rebuilt(small_split, teacher, tmp_path):
    spec = ViewSpec(0, True)
    x, y = small_split.train_x[:4], small_split.train_y[:4]
    ref, _, info = cache.teacher_logits(teacher, "s", PRE, x, y, spec, tmp_path, log=lambda m: None)
    npy = tmp_path / f"logits-{info['key']}.npy"
    arr = np.load(npy)
    arr[0, 0, 0] += 1  # silent corruption: same shape, different bytes
    np.save(npy, arr)
    logs = []
    again, forwards, _ = cache.teacher_logits(teacher, "s", PRE, x, y, spec, tmp_path, log=logs.append)
    assert forwards == 4 * spec.n_views and np.array_equal(again, ref)
    assert any("stale or corrupt" in m for m in logs)
    npy.write_bytes(npy.read_bytes()[:100])  # truncated
    _, forwards, _ = cache.teacher_logits(teacher, "s", PRE, x, y, spec, tmp_path, log=lambda m: None)
    assert forwards == 4 * spec.n_views
    meta = tmp_path / f"logits-{info['key']}.json"
    m = json.loads(meta.read_text())
    meta.write_text(json.dumps({**m, "key": "something-else"}))  # stale
    _, forwards, _ = cache.teacher_logits(teacher, "s", PRE, x, y, spec, tmp_path, log=lambda m: None)
    assert forwards == 4 * spec.n_views


def test_interrupted_build_keeps_finished_chunks(small_split, teacher, tmp_path, monkeypatch):
    spec = ViewSpec(1, False)
    x, y = small_split.train_x[:10], small_split.train_y[:10]
    monkeypatch.setattr(cache, "CHUNK_IMAGES", 4)  # chunks of 4, 4, 2 images
    real, calls = cache._views_logits, []

    def crash_on_third(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(cache, "_views_logits", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        cache.teacher_logits(teacher, "s", PRE, x, y, spec, tmp_path, log=lambda m: None)
    monkeypatch.setattr(cache, "_views_logits", real)
    logits, forwards, _ = cache.teacher_logits(teacher, "s", PRE, x, y, spec, tmp_path, log=lambda m: None)
    assert forwards == 2 * spec.n_views  # only the unfinished last chunk ran
    full, _, _ = cache.teacher_logits(teacher, "s", PRE, x, y, spec, tmp_path / "fresh", log=lambda m: None)
    assert np.array_equal(logits, full)
