"""Cached function matching (teacher.mode mixed): every training image's seeded mixed views, each rebuilt
exactly from its recipe, with the teacher's logits of that very image in the cache; a trial trains on them."""

import json

import numpy as np
import pytest
import torch

from orchestrator.config import ConfigError, Preprocess, load_sweep_config
from orchestrator.teacher import cache
from students.teachers import build_resnet
from trainables.augment import MixSpec, ViewSpec, apply_views, to_input

PRE = Preprocess(mean=0.286, std=0.353, channels=3)


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_a_mixed_view_is_its_image_and_a_partner_rebuilt_the_same_everywhere(small_split, kind):
    """View j of image i: the image in one shift/flip view mixed with another image (never itself) in another,
    by the recipe's lambda; the same (i, j) gives the same pixels on every call, and a fresh recipe (as in
    another process) draws the same one."""
    from trainables import augment

    spec = MixSpec(1, True, kind, 1.0, k=4)
    x = torch.as_tensor(small_split.train_x[:32])
    idx, views = torch.arange(32).repeat_interleave(4), torch.arange(4).repeat(32)
    got = spec.images(x, idx, views)
    assert got.shape == (128, 28, 28) and got.dtype == torch.float32
    r = augment._recipe(spec, 32)
    assert (r["partner"] != torch.arange(32)[:, None]).all() and ((r["lam"] >= 0) & (r["lam"] <= 1)).all()
    a = apply_views(x[idx], r["own"][idx, views], spec.views).float()
    b = apply_views(x[r["partner"][idx, views]], r["other"][idx, views], spec.views).float()
    if kind == "mixup":
        lam = r["lam"][idx, views].view(-1, 1, 1)
        assert torch.allclose(got, lam * a + (1 - lam) * b, atol=1e-4)
    else:
        assert ((got == a) | (got == b)).all()  # every pixel is one image's or the other's
    augment._recipe.cache_clear()
    assert torch.equal(spec.images(x, idx, views), got)
    assert not torch.equal(MixSpec(1, True, kind, 1.0, k=4, seed=1).images(x, idx, views), got)


def test_the_cached_target_of_a_mixed_view_is_the_teachers_forward_on_the_rebuilt_image(small_split, tmp_path):
    torch.manual_seed(0)
    teacher = build_resnet("resnet10").eval()
    spec = MixSpec(1, True, "cutmix", 1.0, k=3)
    x, y = small_split.train_x[:40], small_split.train_y[:40]
    logits, forwards, info = cache.teacher_logits(teacher, "sha", PRE, x, y, spec, tmp_path)
    assert logits.shape == (40, 3, 10) and forwards == 120 and info["n_views"] == 3
    idx, views = torch.tensor([0, 7, 39, 12]), torch.tensor([2, 0, 1, 1])
    with torch.no_grad():
        want = teacher(to_input(spec.images(torch.as_tensor(x), idx, views), PRE.mean, PRE.std, 3))
    assert torch.allclose(torch.as_tensor(logits[idx, views]).float(), want, atol=1e-2, rtol=1e-2)
    plain, _, _ = cache.teacher_logits(teacher, "sha", PRE, x, y, ViewSpec(1, True), tmp_path)
    assert plain.shape == (40, 18, 10)  # a views cache beside it: another key
    again, forwards, _ = cache.teacher_logits(teacher, "sha", PRE, x, y, spec, tmp_path)
    assert forwards == 0 and np.array_equal(again, logits)


def _config(tmp_path, tiny_teacher, **train):
    f = tmp_path / "c.yaml"
    f.write_text(
        json.dumps(
            dict(
                name="m",
                data=dict(train_limit=128, val_limit=64),
                teacher=dict(checkpoint=str(tiny_teacher), mode="mixed", mixed_views=2, cache_dir=str(tmp_path / "c")),
                train=dict(student="resdw_w24_d111", loss="kd", alpha=1.0, epochs=1, batch_size=64, **train),
            )
        )
    )
    return f


def test_a_trial_trains_on_the_caches_mixed_views(tmp_path, tiny_teacher):
    """prepare_data builds the mixed cache once; the trial's views are the cache's mixed ones, each step's
    target the teacher's logits of the very image the student sees."""
    from orchestrator.sweep.prepare import prepare_data
    from trainables.config import TrainConfig
    from trainables.train import train_student

    cfg = load_sweep_config(_config(tmp_path, tiny_teacher, mix="mixup"))
    data, facts = prepare_data(cfg)
    assert data.mode == "mixed" and isinstance(data.spec, MixSpec) and data.spec.kind == "mixup"
    assert data.teacher_logits.shape == (128, 2, 10) and facts.teacher_forwards == 256
    reports = []
    train_student(TrainConfig(**{**cfg.train.__dict__}), data, report=lambda m, s: reports.append(m))
    assert len(reports) == 1 and 0 <= reports[0]["val_acc"] <= 1


def test_mixed_mode_needs_one_mix_for_every_trial(tmp_path, tiny_teacher):
    with pytest.raises(ConfigError, match="teacher.mode mixed caches the mixed views of one train.mix"):
        load_sweep_config(_config(tmp_path, tiny_teacher))  # mix none
    f = _config(tmp_path, tiny_teacher, mix="mixup")
    with pytest.raises(ConfigError, match="teacher.mode mixed caches"):
        load_sweep_config(f, {"trials": [{"mix": "mixup"}, {"mix": "cutmix"}]})
    with pytest.raises(ConfigError, match="mixed_views must be >= 1"):
        load_sweep_config(f, {"teacher.mixed_views": 0})
    with pytest.raises(ValueError, match="mix_alpha must be > 0"):
        MixSpec(alpha=0.0)
