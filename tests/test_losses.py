"""Losses against values computed by hand (math module, not torch.nn.functional)."""
import math

import pytest
import torch

from trainables.losses import LOSSES

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
    expected = alpha * temp ** 2 * sum(kl_rows(S, T, temp)) / 2 + (1 - alpha) * ce_hand(S, Y)
    got = LOSSES["kd"](S, T, Y, alpha=alpha, temperature=temp)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_seed_uses_element_mean():
    alpha, temp = 0.5, 2.0
    kl_elementmean = sum(kl_rows(S, T, temp)) / (2 * 3)  # nn.KLDivLoss() default: mean over N*C elements
    expected = kl_elementmean * temp * temp * 2 * alpha + ce_hand(S, Y)
    assert LOSSES["seed"](S, T, Y, alpha=alpha, temperature=temp).item() == pytest.approx(expected, rel=1e-5)
    combined = ((ce_hand(S, Y) + kl_elementmean * temp * temp * 2 * alpha) + ce_hand(S, Y)) / 2
    assert LOSSES["seed_combined"](S, T, Y, alpha=alpha, temperature=temp).item() == pytest.approx(combined, rel=1e-5)


def test_mse_against_onehot():
    onehot = [[1, 0, 0], [0, 0, 1]]
    expected = sum((a - b) ** 2 for r, o in zip(S.tolist(), onehot) for a, b in zip(r, o)) / 6
    assert LOSSES["mse"](S, None, Y).item() == pytest.approx(expected, rel=1e-6)


def test_ce_and_label_smoothing():
    assert LOSSES["ce"](S, None, Y).item() == pytest.approx(ce_hand(S, Y), rel=1e-6)
    eps = 0.1
    smooth = sum((1 - eps) * -math.log(softmax(s)[y]) + eps * sum(-math.log(p) for p in softmax(s)) / 3
                 for s, y in zip(S.tolist(), Y.tolist())) / 2
    assert LOSSES["ce"](S, None, Y, label_smoothing=eps).item() == pytest.approx(smooth, rel=1e-5)


def test_kd_is_ce_when_teacher_equals_student_and_alpha_one():
    assert LOSSES["kd"](S, S, Y, alpha=1.0, temperature=4.0).item() == pytest.approx(0.0, abs=1e-6)
