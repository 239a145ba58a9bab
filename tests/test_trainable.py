"""The trainable called directly: no Ray, no Tune."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from orchestrator.config import TrainConfig
from orchestrator.teacher.cache import teacher_logits
from orchestrator.teacher.model import load_teacher
from students import create_student
from trainables.augment import ViewSpec
from trainables.train import TrialData, train_student


def data_for(split, mode="none", logits=None, teacher=None, spec=None):
    return TrialData(
        split.train_x, split.train_y, split.val_x, split.val_y, spec or ViewSpec(1, True), mode, logits, teacher
    )


def test_one_epoch_reports_and_learns(small_split):
    reports = []
    cfg = TrainConfig(student="starter_model_2", loss="ce", epochs=2, batch_size=32, lr=0.05)
    ro = data_for(small_split)
    ro.train_x, ro.val_x = ro.train_x.copy(), ro.val_x.copy()
    ro.train_x.setflags(write=False)  # like arrays from the object store
    ro.val_x.setflags(write=False)
    m = train_student(cfg, ro, report=lambda met, st: reports.append((met, st)))
    assert [r[0]["epoch"] for r in reports] == [1, 2]
    assert set(m) >= {"val_acc", "val_loss", "train_loss", "epoch", "lr", "params", "images_per_s"}
    assert m["params"] == 95_386 and m["val_acc"] > 0.3  # 10 classes: chance is 0.1
    from trainables.config import unpack_mask

    right = unpack_mask(m["val_correct"])  # which validation images val_acc counted: for paired tests
    assert len(right) == len(small_split.val_y) and right.mean() == pytest.approx(m["val_acc"])
    state = reports[-1][1]
    assert state["student"] == "starter_model_2" and state["config"]["loss"] == "ce" and state["epoch"] == 2


def test_a_contiguous_layout_trains_channels_first_and_unguarded(small_split):
    """train.layout contiguous (what the plan picks where it is the faster here): the model and its inputs
    stay channels-first, so oneDNN's channels_last guard has nothing to do, and the trial learns."""
    from students import create_student
    from trainables.layout import prepare_for_training

    model = create_student("res3", widths=[7, 15, 30])  # the guard's bug shape: a 7 -> 15 1x1 stride-2 conv
    assert prepare_for_training(model, layout="contiguous") == []
    assert all(p.is_contiguous() for p in model.parameters())
    cfg = TrainConfig(student="starter_model_2", loss="ce", epochs=2, batch_size=32, lr=0.05, layout="contiguous")
    m = train_student(cfg, data_for(small_split))
    assert m["val_acc"] > 0.3  # as test_one_epoch_reports_and_learns in channels_last


def test_resume_continues_exactly(small_split):
    torch.set_num_threads(1)  # bitwise-repeatable reductions
    cfg = TrainConfig(student="resdw_w24_d111", loss="ce", epochs=2, batch_size=64)
    d = data_for(small_split)
    states = []
    train_student(cfg, d, report=lambda m, s: states.append(copy.deepcopy(s)))
    resumed = []
    train_student(cfg, d, report=lambda m, s: resumed.append(copy.deepcopy(s)), resume=states[0])
    assert [s["epoch"] for s in resumed] == [2]
    for k, v in states[-1]["state_dict"].items():
        assert torch.allclose(v.float(), resumed[-1]["state_dict"][k].float(), atol=1e-6), k
    torch.set_num_threads(2)


def test_teacher_modes_agree(small_split, tiny_teacher, tmp_path):
    """views (cached fp16 logits of the exact view) and live (teacher on the batch) train the same student."""
    model, info = load_teacher(tiny_teacher)
    spec = ViewSpec(1, True)
    logits, _, _ = teacher_logits(
        model, info.sha256, info.preprocess, small_split.train_x, small_split.train_y, spec, tmp_path
    )
    live = dict(model=model, mean=info.preprocess.mean, std=info.preprocess.std, channels=info.preprocess.channels)
    cfg = TrainConfig(student="resdw_w24_d111", loss="kd", epochs=1, batch_size=64, temperature=2.0)
    a = train_student(cfg, data_for(small_split, "views", logits, spec=spec))
    b = train_student(cfg, data_for(small_split, "live", teacher=live, spec=spec))
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=2e-3)
    clean = np.ascontiguousarray(logits[:, spec.identity : spec.identity + 1])
    c = train_student(cfg, data_for(small_split, "clean", clean, spec=spec))
    assert c["train_loss"] != pytest.approx(a["train_loss"], rel=1e-4)  # clean logits are another target


def test_teacher_loss_without_teacher_is_an_error(small_split):
    with pytest.raises(ValueError, match="needs a teacher"):
        train_student(TrainConfig(loss="kd", epochs=1), data_for(small_split))


def test_divergence_is_reported(small_split):
    with pytest.raises(FloatingPointError, match="diverged"):
        train_student(
            TrainConfig(student="starter_model_1", loss="mse", optimizer="sgd", lr=1e6, epochs=1, batch_size=64),
            data_for(small_split),
        )


def test_bf16_step_trains_and_keeps_fp32_weights(small_split):
    """precision bf16 autocasts the train step only: it learns, weights and checkpoints stay fp32."""
    states = []
    cfg = TrainConfig(student="starter_model_2", loss="ce", epochs=2, batch_size=32, lr=0.05, precision="bf16")
    m = train_student(cfg, data_for(small_split), report=lambda met, st: states.append(st))
    assert m["val_acc"] > 0.3 and np.isfinite(m["train_loss"])
    assert all(v.dtype == torch.float32 for v in states[-1]["state_dict"].values() if v.is_floating_point())
    fp32 = train_student(dataclasses.replace(cfg, precision="fp32"), data_for(small_split))
    assert m["train_loss"] == pytest.approx(fp32["train_loss"], rel=0.05)  # same run, bf16 rounding only


def test_bf16_without_native_support_warns(small_split, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    with pytest.warns(RuntimeWarning, match="precision: fp32"):
        train_student(
            TrainConfig(student="resdw_w24_d111", loss="ce", epochs=1, batch_size=128, precision="bf16"),
            data_for(small_split),
        )


def test_auto_precision_follows_the_hardware(small_split, monkeypatch):
    from trainables.engine import resolve_precision

    cfg = TrainConfig(student="resdw_w24_d111", loss="ce", epochs=1, batch_size=128, precision="auto")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    for native, expected in [(True, "bf16"), (False, "fp32")]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda native=native: native)
        assert resolve_precision("auto", "cpu") == expected
        assert train_student(cfg, data_for(small_split))["precision"] == expected
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # a bf16 CPU limited to AVX2 trains as an AVX2 one
    assert resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert resolve_precision("auto", "cpu") == "bf16"
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"


def test_random_erase_is_batched_and_bounded():
    from trainables.augment import random_erase

    x = torch.full((64, 28, 28), 200, dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    out = random_erase(x, 1.0, generator=g)
    frac = (out == 0).float().mean((1, 2))  # (64,) erased fraction per image
    assert (frac > 0).all() and (frac <= 0.25 + 2 * 28 / 784).all()
    assert torch.equal(random_erase(x, 0.0), x)
    some = (random_erase(x, 0.5, generator=g) == 0).flatten(1).any(1).float().mean().item()
    assert 0.2 < some < 0.8  # about half the images cut
    assert x.eq(200).all()  # the input is not modified


def test_erase_ema_and_kd_warmup_train_and_resume(small_split):
    """ema: checkpoints ship the averaged weights and carry the raw ones, so a resume continues exactly."""
    from trainables.train import evaluate

    cfg = TrainConfig(student="res3_w16_d111", loss="ce", epochs=2, batch_size=64, lr=0.05, erase=0.5, ema=0.9)
    states = []  # deep copies: a state holds the live tensors, as a checkpoint written at once would
    m = train_student(cfg, data_for(small_split), report=lambda met, st: states.append(copy.deepcopy(st)))
    assert np.isfinite(m["train_loss"]) and "train_state_dict" in states[-1] and 0 <= m["val_acc_raw"] <= 1
    assert not all(
        torch.equal(states[-1]["state_dict"][k], states[-1]["train_state_dict"][k]) for k in states[-1]["state_dict"]
    )
    ema_model = create_student("res3_w16_d111")
    ema_model.load_state_dict(states[-1]["state_dict"])
    vx, vy = torch.as_tensor(small_split.val_x), torch.as_tensor(small_split.val_y)
    assert evaluate(ema_model, vx, vy, cfg.mean, cfg.std)[0] == pytest.approx(m["val_acc"])
    resumed = []
    train_student(cfg, data_for(small_split), report=lambda met, st: resumed.append(st), resume=states[0])
    for k, v in states[-1]["state_dict"].items():
        assert torch.allclose(v.float(), resumed[-1]["state_dict"][k].float(), atol=1e-5), k


def test_kd_warmup_changes_the_first_epochs(small_split, tiny_teacher, tmp_path):
    model, info = load_teacher(tiny_teacher)
    spec = ViewSpec(1, True)
    logits, _, _ = teacher_logits(
        model, info.sha256, info.preprocess, small_split.train_x, small_split.train_y, spec, tmp_path
    )
    cfg = TrainConfig(student="resdw_w24_d111", loss="dkd", alpha=1.0, beta=2.0, epochs=2, batch_size=64)
    plain = train_student(cfg, data_for(small_split, "views", logits, spec=spec))
    warmed = train_student(dataclasses.replace(cfg, kd_warmup=2), data_for(small_split, "views", logits, spec=spec))
    assert warmed["train_loss"] < plain["train_loss"]  # the teacher term is scaled down while it warms up


def test_ema_warms_up_then_holds_its_decay():
    """d_t = min(decay, (1 + t) / (10 + t)): the first updates mostly take the live weights, so a short run's
    average is not dominated by the random initial weights; late updates use the configured decay."""
    from trainables.ema import EMA

    model = torch.nn.Linear(3, 2)
    ema = EMA(model, 0.999)
    init = [p.detach().clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model, 1)
    for p0, pe in zip(init, ema.model.parameters()):  # moved 1 - 2/11 of the way to the live weights
        assert torch.allclose(pe, p0 + 9 / 11)
    assert ema.decay_at(1) == pytest.approx(2 / 11) and ema.decay_at(10**6) == 0.999
    steps = np.arange(1, 1417)  # a 12-epoch run of the recipe table
    init_share = np.prod([ema.decay_at(int(t)) for t in steps])
    assert init_share < 1e-3  # was 0.999 ** 1416 = 0.24 without the warm-up


def test_ema_bn_statistics_are_copied_or_averaged():
    """ema_bn copy: the average's BN statistics are the live model's; average: they move like the weights
    (statistics consistent with the averaged weights); the batch count is copied either way."""
    from trainables.ema import EMA

    for bn, expect in (("copy", 3.0), ("average", 9 / 11 * 3.0)):
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
        ema = EMA(model, 0.999, bn)
        with torch.no_grad():
            model[1].running_mean.fill_(3.0)
            model[1].num_batches_tracked.fill_(7)
        ema.update(model, 1)  # decay 2/11 at the first update
        assert torch.allclose(ema.model[1].running_mean, torch.full((2,), expect)), bn
        assert int(ema.model[1].num_batches_tracked) == 7


def test_flip_tta_is_the_mirror_averaged_accuracy_and_selects_when_asked(small_split):
    """Every epoch reports the plain and the flip-averaged validation accuracy; train.tta flip makes val_acc
    (what selection and ASHA see) the flip-averaged one."""
    from trainables.augment import to_input
    from trainables.train import evaluate, evaluate_tta

    cfg = TrainConfig(student="resdw_w24_d111", loss="ce", epochs=1, batch_size=64, tta="flip")
    states = []
    m = train_student(cfg, data_for(small_split), report=lambda met, st: states.append(st))
    assert m["tta"] == "flip" and m["val_acc"] == m["val_acc_flip"] and 0 < m["val_acc_plain"] <= 1
    model = create_student(states[0]["student"]).eval()
    model.load_state_dict(states[0]["state_dict"])
    vx, vy = torch.as_tensor(small_split.val_x), torch.as_tensor(small_split.val_y)
    both = evaluate_tta(model, vx, vy, cfg.mean, cfg.std, batch_size=50)
    assert both["none"][0] == pytest.approx(evaluate(model, vx, vy, cfg.mean, cfg.std)[0])
    with torch.no_grad():
        x = to_input(vx, cfg.mean, cfg.std, model.in_chans)
        by_hand = ((model(x) + model(torch.flip(x, dims=[3]))).argmax(1) == vy).float().mean().item()
    assert both["flip"][0] == pytest.approx(by_hand) == pytest.approx(m["val_acc_flip"])
    plain = train_student(dataclasses.replace(cfg, tta="none"), data_for(small_split))
    assert plain["val_acc"] == plain["val_acc_plain"] and plain["val_acc_flip"] == m["val_acc_flip"]
    with pytest.raises(ValueError, match="tta must be none or flip"):
        TrainConfig(tta="shift")


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixed_images_are_two_images_in_the_stated_shares(kind):
    """mix_images: each output is its image and its partner's in the returned shares: a blend for mixup,
    a box of the partner's pixels covering 1 - lambda for cutmix; the same generator draws the same mix."""
    from trainables.augment import mix_images

    x = torch.randint(0, 256, (16, 28, 28), dtype=torch.uint8)
    mixed, partner, lam = mix_images(x, kind, 1.0, generator=torch.Generator().manual_seed(0))
    again = mix_images(x, kind, 1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mixed, again[0]) and mixed.dtype == torch.float32 and ((lam >= 0) & (lam <= 1)).all()
    a, b = x.float(), x[partner].float()
    if kind == "mixup":
        assert torch.allclose(mixed, lam.view(-1, 1, 1) * a + (1 - lam.view(-1, 1, 1)) * b, atol=1e-4)
    else:
        from_partner = (mixed == b) & (mixed != a)
        assert torch.allclose(1 - from_partner.flatten(1).float().mean(1), lam, atol=0.1)  # ties with a aside
        assert ((mixed == a) | (mixed == b)).all()  # every pixel is one image's or the other's
    with pytest.raises(ValueError, match="mix must be mixup or cutmix"):
        mix_images(x, "blend", 1.0)


def test_function_matching_shows_the_teacher_the_students_mixed_image(small_split):
    """mix with the teacher live: in every step the teacher scores exactly the (mixed) pixels the student
    trains on, and they are mixtures, not training images; cached logits and alpha < 1 are refused."""
    seen = {"student": [], "teacher": []}

    class Recorder(torch.nn.Module):  # a teacher that records what it was shown (pixels back on the 0-255 scale)
        def forward(self, x):
            seen["teacher"].append((x[:, 0] * 0.5 + 0.5) * 255)
            return torch.zeros(len(x), 10)

    live = dict(model=Recorder(), mean=0.5, std=0.5, channels=1)
    cfg = TrainConfig(student="resdw_w24_d111", loss="kd", alpha=1.0, epochs=1, batch_size=64, mix="mixup")
    real = create_student("resdw_w24_d111")
    original = type(real).forward

    def student_forward(self, x):
        if self.training:
            seen["student"].append((x[:, 0] * cfg.std + cfg.mean) * 255)
        return original(self, x)

    mp = pytest.MonkeyPatch()
    mp.setattr(type(real), "forward", student_forward)
    try:
        train_student(cfg, data_for(small_split, "live", teacher=live))
    finally:
        mp.undo()
    assert len(seen["teacher"]) == len(seen["student"]) == -(-len(small_split.train_x) // 64)
    for t, s in zip(seen["teacher"], seen["student"]):
        assert torch.allclose(t, s.float(), atol=1e-2)  # the same image, to rounding
    fractional = torch.cat(seen["student"]).sub(torch.cat(seen["student"]).round()).abs().gt(1e-2).float().mean()
    assert fractional > 0.3  # blends of two images: most pixels between the integers of either
    with pytest.raises(ValueError, match="cached teacher logits .* are of unmixed views"):
        train_student(cfg, data_for(small_split, "clean", np.zeros((len(small_split.train_x), 1, 10), np.float16)))
    with pytest.raises(ValueError, match="set alpha 1 and a distillation loss"):
        dataclasses.replace(cfg, alpha=0.9)


def test_precise_bn_sets_the_statistics_of_what_the_weights_compute(small_split):
    """recompute_bn: each BN's running mean and variance become the exact statistics of its input over the
    images given; ema_bn recompute evaluates (and ships) the averaged weights with such statistics, not
    the live model's."""
    from trainables.ema import recompute_bn

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    x = torch.randn(512, 1, 8, 8) * 3 + 1
    recompute_bn(net, x, batch_size=128)
    with torch.no_grad():
        h = net[0](x)
    bn = net[1]
    assert torch.allclose(bn.running_mean, h.mean((0, 2, 3)), atol=1e-5)  # equal batches: the exact mean
    assert torch.allclose(bn.running_var, h.var((0, 2, 3)), rtol=0.02)  # the batches' average variance
    assert not net.training and bn.momentum == 0.1  # back in eval mode, its momentum as it was

    states = []
    cfg = TrainConfig(student="res3_w16_d111", loss="ce", epochs=2, batch_size=64, lr=0.1, ema=0.99, ema_bn="recompute")
    m = train_student(cfg, data_for(small_split), report=lambda met, st: states.append(copy.deepcopy(st)))
    ema_sd, live_sd = states[-1]["state_dict"], states[-1]["train_state_dict"]
    stats = [k for k in ema_sd if k.endswith("running_mean")]
    assert any(not torch.allclose(ema_sd[k], live_sd[k]) for k in stats)  # its own statistics, not copied
    assert m["val_acc"] > 0.3


def test_wsd_warms_up_holds_the_peak_and_cools_down_to_zero():
    from trainables.optim import lr_factor

    f = [lr_factor(s, 100, "wsd", warmup_frac=0.1, decay_frac=0.2) for s in range(100)]
    assert f[0] == pytest.approx(0.04) and f[5] < f[9] < 1
    assert f[10:80] == [1.0] * 70  # the steady peak a branch forks from
    assert all(a > b for a, b in zip(f[80:], f[81:])) and f[99] < 0.12  # 1 - sqrt down to ~0


def test_wsd_branches_read_shorter_runs_off_one_and_resume_mid_branch(small_split):
    """A 10-epoch wsd run with branches 5 and 8: each branch's result lands on its own epoch's row (with its
    fit gap), the run itself trains as it would without them, and a run resumed mid-branch ends the branch
    exactly as the straight run did."""
    from trainables.config import unpack_mask

    torch.set_num_threads(1)  # bitwise-repeatable reductions
    base = dict(student="res3_w16_d111", loss="ce", epochs=10, batch_size=128, lr=0.05, ema=0.9)
    base |= dict(ema_bn="recompute", schedule="wsd", warmup_frac=0.1, decay_frac=0.2, tta="flip")
    d = data_for(small_split)
    rows, states = [], []
    train_student(
        TrainConfig(**base, branches=[5, 8]),
        d,
        report=lambda m, s: (rows.append(copy.deepcopy(m)), states.append(copy.deepcopy(s))),
    )
    ended = {r["epoch"]: r for r in rows if "branch" in r}
    assert sorted(ended) == [5, 8] and [ended[e]["branch"] for e in (5, 8)] == [5, 8]
    for r in ended.values():
        assert 0 <= r["branch_val_acc"] <= 1 and 0 <= r["branch_train_acc"] <= 1
        assert unpack_mask(r["branch_val_correct"]).mean() == pytest.approx(r["branch_val_acc"])
    assert "train_acc" in rows[-1] and "train_acc" not in rows[0]  # the run's own fit gap, at its end
    assert [len(s.get("branches", [])) for s in states] == [0, 0, 0, 1, 0, 1, 1, 0, 0, 0]  # forks after 4, 6
    plain = []
    train_student(TrainConfig(**base), d, report=lambda m, s: plain.append(copy.deepcopy(s)))
    for k, v in plain[-1]["state_dict"].items():  # the branches took nothing from the run
        assert torch.equal(v, states[-1]["state_dict"][k]), k
    resumed = []
    train_student(TrainConfig(**base, branches=[5, 8]), d, report=lambda m, s: resumed.append(m), resume=states[6])
    assert [r["epoch"] for r in resumed] == [8, 9, 10]
    assert resumed[0]["branch_val_correct"] == ended[8]["branch_val_correct"]
    assert resumed[0]["branch_val_acc"] == ended[8]["branch_val_acc"]
    torch.set_num_threads(2)


@pytest.mark.parametrize(
    "bad, why",
    [
        (dict(schedule="onecycle", branches=[5]), "branches need schedule wsd"),
        (dict(schedule="wsd", branches=[10]), "from 2 to train.epochs - 1"),
        (dict(schedule="wsd", branches=[3]), "outside the run's steady peak"),  # forks at 2, in the warm-up
        (dict(schedule="wsd", warmup_frac=0.5, decay_frac=0.6), "cannot overlap"),
    ],
)
def test_branches_that_cannot_fork_from_the_peak_are_refused_in_one_line(bad, why):
    with pytest.raises(ValueError, match=why):
        TrainConfig(epochs=10, **bad)


def test_the_method_text_says_how_a_wsd_run_warmed_held_and_cooled():
    from orchestrator.release.method import _schedule

    said = _schedule(dict(schedule="wsd", warmup_frac=0.02, decay_frac=0.2, branches=[90, 180]))
    assert "first 2% of the steps" in said and "last 20%" in said and "90, 180 epochs" in said
    assert _schedule(dict(schedule="onecycle")) == "onecycle schedule"


def test_the_method_text_says_whether_the_mixed_images_teacher_was_live_or_cached():
    from orchestrator.release.method import method_text

    win = dataclasses.asdict(TrainConfig(loss="kd", alpha=1.0, mix="mixup", epochs=300))
    teacher = dict(arch="cifar_resnet20", params=272_474, val_acc=0.95, sha256="ab")
    cfg = {"teacher": {"mixed_views": 64}, "augment": {"shift": 2, "flip": True}, "train": win}
    said = {}
    for mode in ("live", "mixed"):
        m = dict(config=win, params=96_906, student="res3")
        paras = method_text([], m, {"teacher": dict(teacher, mode=mode)}, cfg)
        [said[mode]] = [p for p in paras if p.startswith("**Function matching.**")]
    assert "scored exactly that mixed image, live," in said["live"] and "cached" not in said["live"]
    assert "one of 64 seeded mixes per training image cached once" in said["mixed"] and "300 epochs" in said["mixed"]


def test_a_time_budget_refits_the_length_and_its_schedule_and_a_resume_keeps_it(small_split):
    """time_budget_s: after each epoch the trial refits its length to what fits at its measured
    epochs (here nothing fits: the floor, min_epochs), ends there with its learning rate cooled down as a run
    of that length would, says the length on every row and in its checkpoint, and a resume keeps it; a
    budget that holds every epoch changes nothing."""
    torch.set_num_threads(1)
    base = dict(student="res3_w16_d111", loss="ce", epochs=6, batch_size=128, lr=0.05)
    d = data_for(small_split)
    rows, states = [], []
    train_student(
        TrainConfig(**base, time_budget_s=1e-3, min_epochs=3),
        d,
        report=lambda m, s: (rows.append(m), states.append(copy.deepcopy(s))),
    )
    assert [r["epoch"] for r in rows] == [1, 2, 3] and {r["epochs_total"] for r in rows} == {3}
    assert states[-1]["config"]["epochs"] == 3 and rows[-1]["lr"] < 0.05 * 0.01  # cooled down at its end
    full = []
    train_student(TrainConfig(**base), d, report=lambda m, s: full.append(m))
    assert full[2]["lr"] > 0.05 * 0.3  # the 6-epoch schedule at epoch 3: still near its peak
    again = []
    train_student(TrainConfig(**base, time_budget_s=1e9), d, report=lambda m, s: again.append(m))
    assert [r["epoch"] for r in again] == list(range(1, 7)) and again[-1]["epochs_total"] == 6
    resumed = []
    budget = TrainConfig(**base, time_budget_s=1e-3, min_epochs=3)
    train_student(budget, d, report=lambda m, s: resumed.append(copy.deepcopy(s)), resume=states[1])
    assert [s["epoch"] for s in resumed] == [3]
    for k, v in states[-1]["state_dict"].items():
        assert torch.allclose(v.float(), resumed[-1]["state_dict"][k].float(), atol=1e-6), k
    torch.set_num_threads(2)
    with pytest.raises(ValueError, match="min_epochs must be in 1..epochs"):
        TrainConfig(epochs=4, min_epochs=5)
