"""Structured pruning as a student source: a pruned student is smaller by torchinfo's count, rebuilds
exactly from its checkpoint, and fine-tunes like any other."""

import copy

import pytest
import torch

from students import count_params, create_student
from trainables.augment import ViewSpec
from trainables.config import TrainConfig
from trainables.train import TrialData, train_student

SOURCE = dict(student="res3", student_kwargs={"widths": [12, 24, 48]})  # 44k params, trained briefly below


@pytest.fixture(scope="module")
def source_ckpt(small_split, tmp_path_factory):
    data = TrialData(
        small_split.train_x, small_split.train_y, small_split.val_x, small_split.val_y, ViewSpec(1, True), "none"
    )
    states = []
    train_student(
        TrainConfig(loss="ce", epochs=1, batch_size=64, **SOURCE),
        data,
        report=lambda m, s: states.append(copy.deepcopy(s)),
    )
    path = tmp_path_factory.mktemp("src") / "student.pt"
    torch.save(states[-1], path)
    return path, data


@pytest.mark.parametrize("importance", ["magnitude", "taylor"])
def test_prune_to_a_target_and_rebuild(source_ckpt, importance):
    from students.pruned import layer_shapes
    from trainables.layout import hits_onednn_1x1_bug
    from trainables.prune import prune_to_budget

    path, data = source_ckpt
    src = torch.load(path, weights_only=True)
    model = create_student(src["student"], **src["student_kwargs"])
    model.load_state_dict(src["state_dict"])
    x = torch.randn(16, 1, 28, 28)
    batch = (x, torch.randint(10, (16,)))
    info = prune_to_budget(model, 20_000, importance, steps=10, batch=batch)
    assert count_params(model) == info["params_after"] <= 20_000 < info["params_before"]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.out_channels % 8 == 0 for m in convs)  # round_to 8: whole SIMD blocks ...
    assert not any(hits_onednn_1x1_bug(m) for m in convs)  # ... and no oneDNN AVX2 1x1 bug shape
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (16, 10) and torch.isfinite(out).all()
    rebuilt = create_student(
        "pruned", base=src["student"], base_kwargs=src["student_kwargs"], shapes=layer_shapes(model)
    )
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), out)  # rebuilt exactly, from the shapes


def test_prune_then_fine_tune_and_resume(source_ckpt):
    path, data = source_ckpt
    cfg = TrainConfig(loss="ce", epochs=2, batch_size=64, prune_from=str(path), prune_to=25_000, prune_steps=8)
    states = []
    m = train_student(cfg, data, report=lambda met, st: states.append(copy.deepcopy(st)))
    assert states[-1]["student"] == "pruned" and m["params"] <= 25_000
    assert m["pruned"]["params_before"] > 25_000 and m["pruned"]["importance"] == "magnitude"
    resumed = []
    train_student(cfg, data, resume=states[0], report=lambda met, st: resumed.append(copy.deepcopy(st)))
    for k, v in states[-1]["state_dict"].items():  # the resume rebuilt the pruned shapes
        assert torch.allclose(v.float(), resumed[-1]["state_dict"][k].float(), atol=1e-5), k


def test_prune_errors(source_ckpt, tmp_path):
    from trainables.prune import prune_to_budget

    path, data = source_ckpt
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        train_student(TrainConfig(loss="ce", epochs=1, prune_from=str(tmp_path / "nope.pt")), data)
    with pytest.raises(ValueError, match="over the target"):
        prune_to_budget(create_student("res3_w16_d111"), 100, steps=2, max_ratio=0.2)
    with pytest.raises(ValueError, match="no prunable layer"):
        create_student("pruned", base="res3_w16_d111", shapes={"features.99": [1, 2, 1]})
