"""Paired comparison on the same images (orchestrator/paired.py), against values computed by hand."""

import numpy as np
import pytest

from orchestrator.paired import mcnemar_p, paired


def test_mcnemars_exact_p_by_hand():
    assert mcnemar_p(0, 0) == 1.0  # no image differs: nothing to tell
    assert mcnemar_p(0, 5) == pytest.approx(2 / 32)  # 2 * P(X <= 0), X ~ Bin(5, 1/2)
    assert mcnemar_p(9, 1) == pytest.approx(2 * 11 / 1024)  # 2 * (C(10,0) + C(10,1)) / 2^10 = 0.0215
    assert mcnemar_p(5, 5) == 1.0 and mcnemar_p(300, 340) == mcnemar_p(340, 300)
    assert 0 < mcnemar_p(400, 560) < 1e-6  # exact even at hundreds of discordant images


def test_a_difference_inside_the_noise_is_a_tie():
    a = np.ones(5000, bool)
    a[:300] = False  # 0.9400
    b = a.copy()
    b[300:304] = False  # 4 fewer right: 0.9392
    p = paired(a, b)
    assert (p.only_a, p.only_b, p.n) == (4, 0, 5000) and p.tie and not p.a_better
    assert "they disagree on 4 (4 only a gets right, 0 only b); McNemar's exact test: a tie (p 0.12 >= 0.05)" in (
        p.sentence()
    )
    b[304:320] = False  # 20 fewer: real
    p = paired(a, b)
    assert p.a_better and "a better (p 1.9e-06 < 0.05)" in p.sentence()
    assert not paired(b, a).a_better and paired(b, a).record()["only_b"] == 20
    with pytest.raises(ValueError, match="on the same images"):
        paired(a, b[:10])
