"""The searchable family (students/arch.py): every drawn shape fits the budget by torchinfo's count before it
trains, trains, and exports to .pt2 and ONNX."""

import numpy as np
import pytest
import torch

from orchestrator.config import load_sweep_config
from orchestrator.space import draw_candidates
from students import BUDGET, count_macs, count_params, create_student
from students.arch import Arch, fitted_width, stage_widths
from trainables.config import merge_train

SEARCH = "configs/search.yaml"
# every block and attention, and the extremes of the search's depths, strides and ratios
SHAPES = [
    dict(block="basic", depths=(1, 1, 1), strides=(1, 2, 1), ratios=(1, 2, 4.75)),  # the release's shape
    dict(block="basic", depths=(2, 2, 2), strides=(1, 1, 2), ratios=(1, 2, 6), attn="se"),
    dict(block="basic", depths=(1, 1, 2), strides=(2, 1, 1), ratios=(1, 1.5, 3), attn="eca"),
    dict(block="dw", depths=(1, 2, 2), strides=(1, 2, 2), ratios=(1, 2, 4), attn="se"),
    dict(block="ir", depths=(1, 2, 1), strides=(1, 2, 2), ratios=(1, 2, 4), attn="eca", expand=3),
]


def test_the_release_shape_is_a_point_of_the_family():
    """Fitted to the budget, the family's (1, 2, 4.75) basic shape at strides (1, 2, 1) is the released
    res3_w16_32_76_s121: width 16, the same 96,906 parameters."""
    m = create_student("arch", block="basic", depths=(1, 1, 1), strides=(1, 2, 1), ratios=(1, 2, 4.75))
    assert m.width == 16 and count_params(m) == count_params(create_student("res3_w16_32_76_s121")) == 96_906


@pytest.mark.parametrize("kw", SHAPES, ids=lambda kw: f"{kw['block']}-{kw.get('attn', 'none')}")
def test_every_shape_fits_the_budget_at_its_widest(kw):
    m = create_student("arch", **kw)
    n = count_params(m)
    assert n <= BUDGET and n == sum(p.numel() for p in m.parameters())  # torchinfo's count is the sum
    wider = Arch(
        stage_widths(m.width + 1, kw["ratios"]),
        kw["depths"],
        kw["strides"],
        kw["block"],
        kw.get("attn", "none"),
        kw.get("expand", 4),
    )
    if stage_widths(m.width + 1, kw["ratios"]) != stage_widths(m.width, kw["ratios"]):
        assert count_params(wider) > BUDGET  # the widest that fits: one more and it does not
    x = torch.randn(4, 1, 28, 28)
    out = m(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())  # every parameter learns


def test_every_candidate_of_the_search_fits_the_budget():
    """All 48 candidates configs/search.yaml draws build under the budget, and record MACs beside it."""
    cfg = load_sweep_config(SEARCH)
    cands = draw_candidates(cfg.space(), cfg.sweep.num_samples, cfg.train.seed, cfg.trials)
    assert len(cands) == 48
    macs = []
    for c in cands:
        t = cfg.trial_config(c)
        m = create_student(t.student, **t.student_kwargs)
        assert count_params(m) <= BUDGET
        macs.append(count_macs(m))
    assert min(macs) < 10e6 < 20e6 < max(macs)  # the space spans cheap and dear shapes at one budget


def test_a_shape_that_cannot_fit_is_refused_in_one_line():
    with pytest.raises(ValueError, match="exceeds 1000 parameters even at width 4; draw fewer blocks"):
        fitted_width((3, 3, 3), (1, 2, 2), (1, 2, 4), "basic", "none", 4, budget=1000)
    with pytest.raises(ValueError, match="arch block must be one of"):
        create_student("arch", block="conv5")


@pytest.mark.slow
def test_a_drawn_shape_trains_and_exports(small_split, tmp_path):
    """A trial of a drawn shape: the kwargs merge over the base's, it trains, its checkpoint rebuilds it
    (width refitted from the same kwargs), and the shipped model exports to .pt2 and ONNX."""
    from orchestrator.release.deploy import Deployable
    from orchestrator.release.export import export_onnx, export_program
    from students import rebuild
    from trainables.augment import ViewSpec
    from trainables.config import TrainConfig
    from trainables.train import TrialData, train_student

    base = dict(student="arch", student_kwargs=dict(block="basic"), loss="ce", epochs=1, batch_size=64, lr=0.05)
    drawn = {"student_kwargs": dict(depths=[1, 2, 1], strides=[1, 2, 1], ratios=[1, 2, 4.75], attn="se")}
    cfg = TrainConfig(**merge_train(base, drawn))
    assert cfg.student_kwargs == dict(
        block="basic", depths=[1, 2, 1], strides=[1, 2, 1], ratios=[1, 2, 4.75], attn="se"
    )
    s = small_split
    states = []
    data = TrialData(s.train_x, s.train_y, s.val_x, s.val_y, ViewSpec(1, True), "none")
    metrics = train_student(cfg, data, report=lambda met, st: states.append(st))
    assert metrics["params"] <= BUDGET and metrics["macs"] > 0 and metrics["images_per_s"] > 0
    model = rebuild(states[-1])
    x = torch.as_tensor(s.val_x[:8]).float().div(255).sub(0.286).div(0.353).unsqueeze(1)
    with torch.no_grad():
        assert np.isfinite(model(x).numpy()).all()
    ship = Deployable(model, 0.286, 0.353, "flip").eval()
    export_program(ship, tmp_path / "s.pt2")
    export_onnx(ship, tmp_path / "s.onnx")  # checked against eager inside
