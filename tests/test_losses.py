"""Losses against values computed by hand (math module, not torch.nn.functional)."""

import math

import pytest
import torch

from trainables.losses import LOSSES, NEEDS_TEACHER

S = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
T = torch.tensor([[1.0, 0.5, 0.0], [0.0, 2.0, 1.0]])
Y = torch.tensor([0, 2])


def softmax(v, temp=1.0):
    e = [math.exp(x / temp) for x in v]
    return [x / sum(e) for x in e]


def ce_hand(s, y):
    return sum(-math.log(softmax(si)[yi]) for si, yi in zip(s.tolist(), y.tolist())) / len(y)


def kl_rows(s, t, temp):
    """per row: sum_c p_t log(p_t / p_s)"""
    out = []
    for si, ti in zip(s.tolist(), t.tolist()):
        ps, pt = softmax(si, temp), softmax(ti, temp)
        out.append(sum(a * math.log(a / b) for a, b in zip(pt, ps)))
    return out


def test_kd_hinton_batchmean():
    alpha, temp = 0.7, 3.0
    expected = alpha * temp**2 * sum(kl_rows(S, T, temp)) / 2 + (1 - alpha) * ce_hand(S, Y)
    got = LOSSES["kd"](S, T, Y, alpha=alpha, temperature=temp)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_seed_uses_element_mean():
    alpha, temp = 0.5, 2.0
    kl_elementmean = sum(kl_rows(S, T, temp)) / (2 * 3)  # nn.KLDivLoss() default: mean over N*C elements
    expected = kl_elementmean * temp * temp * 2 * alpha + ce_hand(S, Y)
    assert LOSSES["starter"](S, T, Y, alpha=alpha, temperature=temp).item() == pytest.approx(expected, rel=1e-5)
    combined = ((ce_hand(S, Y) + kl_elementmean * temp * temp * 2 * alpha) + ce_hand(S, Y)) / 2
    assert LOSSES["starter_combined"](S, T, Y, alpha=alpha, temperature=temp).item() == pytest.approx(
        combined, rel=1e-5
    )


def test_mse_against_onehot():
    onehot = [[1, 0, 0], [0, 0, 1]]
    expected = sum((a - b) ** 2 for r, o in zip(S.tolist(), onehot) for a, b in zip(r, o)) / 6
    assert LOSSES["mse"](S, None, Y).item() == pytest.approx(expected, rel=1e-6)


def test_ce_and_label_smoothing():
    assert LOSSES["ce"](S, None, Y).item() == pytest.approx(ce_hand(S, Y), rel=1e-6)
    eps = 0.1
    smooth = (
        sum(
            (1 - eps) * -math.log(softmax(s)[y]) + eps * sum(-math.log(p) for p in softmax(s)) / 3
            for s, y in zip(S.tolist(), Y.tolist())
        )
        / 2
    )
    assert LOSSES["ce"](S, None, Y, label_smoothing=eps).item() == pytest.approx(smooth, rel=1e-5)


def test_kd_is_ce_when_teacher_equals_student_and_alpha_one():
    assert LOSSES["kd"](S, S, Y, alpha=1.0, temperature=4.0).item() == pytest.approx(0.0, abs=1e-6)


def zscore(v):
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))  # Bessel, as the paper's code
    return [(x - m) / sd for x in v]


def test_lskd_standardizes_then_kd():
    alpha, temp = 0.9, 2.0
    zs, zt = torch.tensor([zscore(r) for r in S.tolist()]), torch.tensor([zscore(r) for r in T.tolist()])
    expected = alpha * temp**2 * sum(kl_rows(zs, zt, temp)) / 2 + (1 - alpha) * ce_hand(S, Y)
    assert LOSSES["lskd"](S, T, Y, alpha=alpha, temperature=temp).item() == pytest.approx(expected, rel=1e-5)
    # invariant to each side's logit scale and shift: only the shape of the logits is taught
    shifted = LOSSES["lskd"](S, 3 * T + 5, Y, alpha=1.0, temperature=temp)
    assert shifted.item() == pytest.approx(LOSSES["lskd"](S, T, Y, alpha=1.0, temperature=temp).item(), rel=1e-5)


def test_dkd_against_hand_values():
    alpha, beta, temp = 1.0, 8.0, 4.0
    expected = ce_hand(S, Y)
    tckd = nckd = 0.0
    for s, t, y in zip(S.tolist(), T.tolist(), Y.tolist()):
        ps, pt = softmax(s, temp), softmax(t, temp)
        bs, bt = [ps[y], 1 - ps[y]], [pt[y], 1 - pt[y]]
        tckd += sum(a * math.log(a / b) for a, b in zip(bt, bs)) / 2
        rest = [c for c in range(3) if c != y]
        qs, qt = softmax([s[c] for c in rest], temp), softmax([t[c] for c in rest], temp)
        nckd += sum(a * math.log(a / b) for a, b in zip(qt, qs)) / 2
    expected += temp**2 * (alpha * tckd + beta * nckd)
    got = LOSSES["dkd"](S, T, Y, alpha=alpha, temperature=temp, beta=beta)
    assert got.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", sorted(NEEDS_TEACHER))
def test_warm_scales_only_the_teacher_term(name):
    """warm = 0 (the start of train.kd_warmup) leaves the hard-label term alone."""
    cold = LOSSES[name](S, T, Y, alpha=0.5, temperature=2.0, warm=0.0).item()
    hard = {"kd": 0.5, "lskd": 0.5, "dkd": 1.0, "starter": 1.0, "starter_combined": 1.0}[name] * ce_hand(S, Y)
    assert cold == pytest.approx(hard, rel=1e-5)
    half = LOSSES[name](S, T, Y, alpha=0.5, temperature=2.0, warm=0.5).item()
    full = LOSSES[name](S, T, Y, alpha=0.5, temperature=2.0, warm=1.0).item()
    assert half == pytest.approx((cold + full) / 2, rel=1e-5)


def test_kd_at_temperature_one():
    expected = 0.5 * sum(kl_rows(S, T, 1.0)) / 2 + 0.5 * ce_hand(S, Y)
    assert LOSSES["kd"](S, T, Y, alpha=0.5, temperature=1.0).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", list(LOSSES))
def test_the_registry_says_which_losses_read_the_teacher(name):
    """A loss marked `teacher` changes with the teacher's logits; one that is not runs without them."""
    loss = LOSSES[name]
    if loss.teacher:
        assert loss(S, T, Y, alpha=0.5, temperature=2.0).item() != pytest.approx(
            loss(S, -T, Y, alpha=0.5, temperature=2.0).item()
        )
    else:
        assert math.isfinite(loss(S, None, Y).item())
    assert loss.formula.startswith("L = ") and loss.paper  # what the report writes for it
