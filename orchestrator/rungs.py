"""ASHA's rungs: Tune's asynchronous rule (AsyncRungs, what the ledger's scheduler applies and the regret
replay re-enacts) and the recorded rule that places them (`sweep.grace_period: auto` / `reduction_factor:
auto` read it from RULE_FILE, which bench/search_regret.py fits to recorded learning curves: the cheapest cut
whose expected cost to the winner stays within a share of a validation accuracy's standard error). Pure numpy:
no Ray."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from orchestrator.errors import UserError

RULE_FILE = Path(__file__).with_name("rungs.json")


def milestones(max_t: int, grace: int, rf: int) -> list[int]:
    """ASHA's rungs (one bracket): grace * rf^i below max_t."""
    out, t = [], grace
    while t < max_t:
        out.append(t)
        t *= rf
    return out


def grace_epochs(max_t: int, frac: float) -> int:
    """The first rung, in epochs, of a schedule of `max_t` epochs judged at fraction `frac`."""
    return max(1, min(max_t, math.ceil(frac * max_t - 1e-9)))


class AsyncRungs:
    """Asynchronous successive halving, one bracket, as Tune's AsyncHyperBandScheduler judges: a trial
    reaching a rung is stopped when its value is below the (1 - 1/rf) quantile of the values recorded at
    that rung before it; every value reaching a rung is recorded, and a trial is judged once per rung (at
    the highest rung it has reached). `record` seeds the rungs with trials judged elsewhere (an earlier
    chunk of the search), so a search split into chunks cuts as one run would."""

    def __init__(self, max_t: int, grace: int, rf: int):
        self.rf = rf
        self.rungs: dict[int, dict] = {m: {} for m in sorted(milestones(max_t, grace, rf), reverse=True)}

    def record(self, key, curve) -> None:
        """A curve judged elsewhere: its value at every rung it reached."""
        for m, rec in self.rungs.items():
            if len(curve) >= m:
                rec[key] = float(curve[m - 1])

    def judge(self, key, epoch: int, value: float) -> bool:
        """Whether the trial `key` goes on after reporting `value` at `epoch`."""
        for m, rec in self.rungs.items():  # highest rung first
            if epoch < m:
                continue
            if key in rec:
                return True
            go_on = not rec or value >= np.percentile(list(rec.values()), (1 - 1 / self.rf) * 100)
            rec[key] = float(value)
            return bool(go_on)
        return True


def read_rule(path: Path | None = None) -> dict:
    """The recorded rule: {"grace_frac", "reduction_factor", "regret_mean", "bound", "held_out", "n",
    "record", "reversal", ...} (RULE_FILE by default; bench/search_regret.py writes it)."""
    path = path or RULE_FILE
    if not path.is_file():
        raise UserError(
            f"sweep.grace_period auto: {path} holds no rung rule; "
            "run bench/search_regret.py --write-rule, or set sweep.grace_period to a number of epochs"
        )
    return json.loads(path.read_text())


def auto_rungs(max_t: int, rule: dict | None = None) -> tuple[int, int, str]:
    """(grace period, reduction factor, the sentence the plan logs) for a search of `max_t` epochs under the
    recorded regret rule."""
    rule = rule or read_rule()
    g = grace_epochs(max_t, rule["grace_frac"])
    ho = rule.get("held_out") or {}
    why = (
        f"first rung at {rule['grace_frac']:.0%} of the schedule ({g} of {max_t} epochs), keeping 1/"
        f"{rule['reduction_factor']}: on {rule['n']} recorded curves the cheapest cut whose expected cost to the "
        f"winner stays within {rule['regret_frac']:g} standard error of a validation accuracy "
        f"(regret {rule['regret_mean']:.4f} <= {rule['bound']:.4f}, {1 - rule['cost_frac']:.0%} of the "
        f"trial-epochs saved"
        + (f"; on held-out halves regret {ho['regret_mean']:.4f}" if ho else "")
        + f"; {rule['record']})"
    )
    return g, int(rule["reduction_factor"]), why


def reversal_rate(table: list[dict], frac: float, gap: float) -> tuple[float, int] | None:
    """(share of reversals, pairs) for a trial `gap` behind at fraction `frac` of its schedule: the recorded
    row at the latest fraction <= frac (an earlier judgement is the less certain one) and the largest gap
    <= `gap` that some pair stood apart; None where nothing was recorded that early."""
    earlier = [r for r in table if r["frac"] <= frac + 1e-9]
    if not earlier:
        return None
    f = max(r["frac"] for r in earlier)
    rows = [r for r in earlier if r["frac"] == f and r["gap"] <= gap + 1e-12 and r["pairs"]]
    if not rows:
        return None
    r = max(rows, key=lambda r: r["gap"])
    return r["reversed"] / r["pairs"], r["pairs"]
