"""Enumerable views and the teacher-logit cache (issue: consistent teaching)."""

import json

import numpy as np
import pytest
import torch

from orchestrator.config import Preprocess
from orchestrator.teacher import cache
from students.teachers import build_resnet
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
        assert torch.equal(batch[i], apply_views(imgs[i : i + 1], views[i : i + 1], spec)[0])


@pytest.fixture()
def teacher():
    torch.manual_seed(0)
    return build_resnet("resnet10").eval()


def test_cached_logits_equal_teacher_output(small_split, teacher, tmp_path):
    spec = ViewSpec(1, True)
    x, y = small_split.train_x[:6], small_split.train_y[:6]
    logits, forwards, info = cache.teacher_logits(teacher, "sha-a", PRE, x, y, spec, tmp_path, batch_size=7)
    assert logits.shape == (6, spec.n_views, 10) and logits.dtype == np.float16
    assert forwards == 6 * spec.n_views and not info["hit"]
    with torch.no_grad():
        for v in range(spec.n_views):
            xb = apply_views(torch.as_tensor(x), torch.full((6,), v), spec)
            ref = teacher(to_input(xb, PRE.mean, PRE.std, PRE.channels))
            assert torch.allclose(torch.as_tensor(logits[:, v]).float(), ref, atol=2e-3, rtol=2e-3)
    again, forwards2, info2 = cache.teacher_logits(teacher, "sha-a", PRE, x, y, spec, tmp_path)
    assert forwards2 == 0 and info2["hit"] and np.array_equal(again, logits)


def test_key_changes_with_teacher_data_views_preprocessing(small_split):
    x, y = small_split.train_x[:6], small_split.train_y[:6]
    base = cache.fingerprint("a", x, y, ViewSpec(1, True), PRE)
    assert base != cache.fingerprint("b", x, y, ViewSpec(1, True), PRE)
    assert base != cache.fingerprint("a", x[:5], y[:5], ViewSpec(1, True), PRE)
    assert base != cache.fingerprint("a", x, y, ViewSpec(1, False), PRE)
    assert base != cache.fingerprint("a", x, y, ViewSpec(1, True), Preprocess(0.5, 0.5, 3))


def test_corrupt_or_stale_cache_is_rebuilt(said, small_split, teacher, tmp_path):
    spec = ViewSpec(0, True)
    x, y = small_split.train_x[:4], small_split.train_y[:4]
    ref, _, info = cache.teacher_logits(teacher, "s", PRE, x, y, spec, tmp_path)
    npy = tmp_path / f"logits-{info['key']}.npy"
    arr = np.load(npy)
    arr[0, 0, 0] += 1  # silent corruption: same shape, different bytes
    np.save(npy, arr)
    said.clear()
    again, forwards, _ = cache.teacher_logits(teacher, "s", PRE, x, y, spec, tmp_path)
    assert forwards == 4 * spec.n_views and np.array_equal(again, ref)
    assert any("stale or corrupt" in m for m in said)
    npy.write_bytes(npy.read_bytes()[:100])  # truncated
    _, forwards, _ = cache.teacher_logits(teacher, "s", PRE, x, y, spec, tmp_path)
    assert forwards == 4 * spec.n_views
    meta = tmp_path / f"logits-{info['key']}.json"
    m = json.loads(meta.read_text())
    meta.write_text(json.dumps({**m, "key": "something-else"}))  # stale
    _, forwards, _ = cache.teacher_logits(teacher, "s", PRE, x, y, spec, tmp_path)
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
        cache.teacher_logits(teacher, "s", PRE, x, y, spec, tmp_path)
    monkeypatch.setattr(cache, "_views_logits", real)
    logits, forwards, _ = cache.teacher_logits(teacher, "s", PRE, x, y, spec, tmp_path)
    assert forwards == 2 * spec.n_views  # only the unfinished last chunk ran
    full, _, _ = cache.teacher_logits(teacher, "s", PRE, x, y, spec, tmp_path / "fresh")
    assert np.array_equal(logits, full)


def test_teacher_ensemble_averages_cached_member_logits(tmp_path, tiny_teacher):
    """teacher.ensemble: the target is the mean of the teacher's and each member's logits on the same view;
    a student checkpoint is a member; each member has its own cache (a rerun hits both) and its bytes are
    part of the run's identity."""
    from orchestrator.config import ConfigError, load_sweep_config
    from orchestrator.sweep.prepare import fill, measure, prepare_data, teacher_identity
    from orchestrator.teacher.model import load_member, load_teacher
    from students import create_student
    from trainables.infer import predict_logits

    torch.manual_seed(0)
    member = tmp_path / "student.pt"

    def save_student():  # fresh random weights each call
        torch.save(
            dict(
                student="resdw_w24_d111",
                student_kwargs={},
                config=dict(mean=0.3, std=0.4),
                state_dict=create_student("resdw_w24_d111").state_dict(),
            ),
            member,
        )

    save_student()
    teacher = dict(
        checkpoint=str(tiny_teacher), mode="clean", cache_dir=str(tmp_path / "cache"), ensemble=[str(member)]
    )
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        json.dumps(
            dict(
                name="c",
                data=dict(train_limit=64, val_limit=32),
                teacher=teacher,
                train=dict(student="resdw_w24_d111", loss="kd", epochs=1),
            )
        )
    )
    cfg = load_sweep_config(cfg_file)
    measured = measure(cfg)  # what the plan reads, before any cache is built: members counted at their speed
    assert measured.facts.n_train == measured.cache_forwards == 64 and measured.members_s > 0
    data, facts = fill(measured)
    assert data.teacher_logits.shape == (64, 1, 10) and facts.teacher_forwards == 2 * 64
    x = data.train_x
    t_model, t_info = load_teacher(tiny_teacher)
    s_model, s_info = load_member(member)
    assert s_info.arch == "resdw_w24_d111" and s_info.preprocess.channels == 1 and s_info.preprocess.mean == 0.3
    with torch.no_grad():
        want = (predict_logits(t_model, x, t_info.preprocess) + predict_logits(s_model, x, s_info.preprocess)) / 2
    assert torch.allclose(torch.as_tensor(data.teacher_logits[:, 0]).float(), want, atol=2e-2, rtol=1e-2)
    (m,) = facts.teacher.ensemble
    assert m["arch"] == "resdw_w24_d111" and 0 <= m["val_acc"] <= 1 and 0 <= facts.teacher.ensemble_val_acc <= 1
    measured = measure(cfg)
    assert (measured.cache_forwards, measured.members_s) == (0, 0.0)  # both caches hit: nothing to plan for
    again, facts2 = fill(measured)
    assert facts2.teacher_forwards == 0 and np.array_equal(again.teacher_logits, data.teacher_logits)
    ident = teacher_identity(cfg, None)
    save_student()  # new weights, same path
    assert teacher_identity(cfg, None)["ensemble"][0]["sha256"] != ident["ensemble"][0]["sha256"]
    assert "ensemble" not in teacher_identity(load_sweep_config(cfg_file, overrides={"teacher.ensemble": []}), None)
    gone = load_sweep_config(cfg_file, overrides={"teacher.ensemble": [str(tmp_path / "gone.pt")]})
    with pytest.raises(FileNotFoundError, match="teacher.ensemble member .*gone.pt not found"):
        teacher_identity(gone, None)
    with pytest.raises(FileNotFoundError, match="teacher.ensemble member .*gone.pt not found"):
        prepare_data(gone)
    cfg_file.write_text(cfg_file.read_text().replace('"clean"', '"live"'))
    with pytest.raises(ConfigError, match="ensemble averages cached logits"):
        load_sweep_config(cfg_file)


def test_report_names_the_teacher_ensemble():
    """The export's report says that the target was an average, of which members, and how it scores."""
    from orchestrator.config import TrainConfig, to_dict
    from orchestrator.release.method import method_text

    teacher = dict(
        arch="resnet50",
        params=23_528_522,
        val_acc=0.9466,
        path="t.pt",
        sha256="ab" * 32,
        mode="views",
        ensemble=[dict(arch="res3_w16_32_76_s121", val_acc=0.946, path="/m/s121.pt")],
        ensemble_val_acc=0.9482,
    )
    metrics = dict(config=to_dict(TrainConfig()), student="res3_w16_32_76_s121", params=96_906, train_precision="fp32")
    text = "\n".join(
        method_text(
            [],
            metrics,
            dict(teacher=teacher, teacher_forwards=0),
            dict(augment=dict(shift=2, flip=True), train=dict(epochs=1), sweep={}),
        )
    )
    assert "**Teacher ensemble.**" in text and "res3_w16_32_76_s121 (94.60%, `s121.pt`)" in text and "94.82%" in text
    plain = "\n".join(
        method_text(
            [],
            metrics,
            dict(teacher={k: v for k, v in teacher.items() if "ensemble" not in k}),
            dict(augment={}, train=dict(epochs=1), sweep={}),
        )
    )
    assert "ensemble" not in plain
