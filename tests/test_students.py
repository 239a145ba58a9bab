import pytest
import torch

from students import BUDGET, count_params, create_student, deployed, fit_to_budget, list_students, register_student


@pytest.mark.parametrize("name", list_students())
def test_every_student(name):
    torch.manual_seed(0)
    model = create_student(name)
    assert model.in_chans in (1, 3)
    assert count_params(deployed(model)) <= BUDGET  # as it ships (a re-parameterizable student: folded)
    model.train()
    x = torch.randn(4, model.in_chans, 28, 28)
    out = model(x)
    assert out.shape == (4, 10)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"parameters without a gradient: {no_grad}"


def test_seed_counts_are_exact():
    assert count_params(create_student("starter_model_1")) == 95_530
    assert count_params(create_student("starter_model_2")) == 95_386
    assert count_params(create_student("starter_model_3")) == 95_386


def test_unknown_student_lists_names():
    with pytest.raises(KeyError, match="starter_model_1"):
        create_student("resnet_huge")


def test_duplicate_name_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_student("starter_model_1")(lambda: None)


def test_unknown_kwarg_refused():
    with pytest.raises(TypeError):
        create_student("resdw", widht=8)


def test_fit_to_budget():
    w = fit_to_budget("resdw", budget=50_000, depths=(1, 2, 2))
    assert count_params(create_student("resdw", width=w, depths=(1, 2, 2))) <= 50_000
    assert count_params(create_student("resdw", width=w + 1, depths=(1, 2, 2))) > 50_000


def test_students_command_and_speed(capsys):
    """`kdsweep students` lists every registered student with its count; train_speed measures one."""
    from orchestrator.cli import main
    from trainables.speed import train_speed

    assert main(["students", "--no-speed"]) == 0
    out = capsys.readouterr().out
    assert "res3_w16_32_76_d111" in out and "96,906" in out and "OVER" not in out
    # multiply-adds beside the count: same parameters, the stride puts the compute elsewhere
    row = {ln.split()[0]: ln.split() for ln in out.splitlines()[1:]}
    assert float(row["res3_w16_32_76_d111"][3]) < float(row["res3_w16_32_76_s121"][3])
    assert all(name in out for name in list_students())
    assert train_speed("resdw_w24_d111", steps=2, warmup=1) > 0


def test_strides_trade_compute_for_resolution_not_parameters():
    """A stage kept at a higher resolution has the same weights (the budget counts parameters) and
    a larger last feature map; a stride other than 1 or 2 is refused with the rule."""
    base = create_student("res3_w16_32_76_d111")
    for name, side in [("res3_w16_32_76_d111", 7), ("res3_w16_32_76_s121", 14), ("res3_w16_32_76_s112", 14)]:
        model = create_student(name).eval()
        assert count_params(model) == count_params(base) == 96_906
        assert model.features(torch.zeros(2, 1, 28, 28)).shape == (2, 76, side, side)
    full_res = create_student("res3", widths=(8, 8, 8), strides=(1, 1, 1))
    assert full_res.features(torch.zeros(1, 1, 28, 28)).shape[-1] == 28
    dw, dw14 = create_student("resdw_w24_d111"), create_student("resdw", width=24, depths=(1, 1, 1), strides=(1, 2, 1))
    assert count_params(dw14) == count_params(dw) and dw14.features(torch.zeros(1, 1, 28, 28)).shape[-1] == 14
    with pytest.raises(ValueError, match="strides must be three values of 1 or 2"):
        create_student("res3", strides=(1, 3, 2))


def test_the_starter_codes_old_names_still_load_with_a_warning():
    """The starter code's students and losses were named seed_*: configs, runs and checkpoints using those
    names load as today's, with one FutureWarning line; the claim of an old run reads as today's."""
    from trainables.config import TrainConfig

    with pytest.warns(FutureWarning, match="'seed_model_1' is now called 'starter_model_1'"):
        assert count_params(create_student("seed_model_1")) == 95_530
    with pytest.warns(FutureWarning, match="loss 'seed' is now called 'starter'"):
        cfg = TrainConfig(student="seed_model_3", loss="seed")
    assert (cfg.student, cfg.loss) == ("starter_model_3", "starter")
    assert "seed_model_1" not in list_students()


def test_a_reparameterized_student_folds_into_what_it_computed(small_split, tmp_path):
    """rep3 trains with 3x3, 1x1 and identity branches per convolution and ships them folded into one 3x3
    convolution each: on real images the folded model's logits equal the trained one's (eval mode), the
    budget counts the folded form (the trained one may exceed it), and the folded form exports."""
    from orchestrator.release.deploy import Deployable
    from orchestrator.release.export import export_onnx, export_program
    from trainables.augment import ViewSpec
    from trainables.config import TrainConfig
    from trainables.train import TrialData, train_student

    name = "rep3_w16_32_76_s121"
    m = create_student(name)
    assert count_params(m) > BUDGET >= count_params(deployed(m)) == 96_642
    s = small_split
    states = []
    data = TrialData(s.train_x, s.train_y, s.val_x, s.val_y, ViewSpec(1, True), "none")
    cfg = TrainConfig(student=name, loss="ce", epochs=1, batch_size=64, lr=0.05)
    metrics = train_student(cfg, data, report=lambda met, st: states.append(st))
    assert metrics["params"] == 96_642  # what ships
    trained = create_student(name)
    trained.load_state_dict(states[-1]["state_dict"])
    trained.eval()
    folded = deployed(trained)
    x = torch.as_tensor(s.val_x[:64]).float().div(255).sub(0.286).div(0.353).unsqueeze(1)
    with torch.no_grad():
        assert (trained(x) - folded(x)).abs().max().item() < 1e-5
    from students.rep3 import RepConvBN

    assert not any(isinstance(mod, RepConvBN) for mod in folded.modules())  # one plain 3x3 conv each
    ship = Deployable(folded, 0.286, 0.353, "flip").eval()
    export_program(ship, tmp_path / "s.pt2")
    export_onnx(ship, tmp_path / "s.onnx")  # checked against eager inside
