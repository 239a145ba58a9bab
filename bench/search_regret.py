"""Where ASHA's rungs go: the regret rule (bench/regret.py) fitted to recorded curves.

    .venv/bin/python bench/search_regret.py --curves experiments/search_fidelity/curves [more folders] \
        --out experiments/search_regret/rule.json [--write-rule]

Every folder's curves recorded to `--length` epochs are pooled; the table gives, per (first rung as a
fraction of the schedule, reduction factor), the winner's mean and 90th-percentile regret and the cost in
trial-epochs (a fraction of training every candidate to its end), over resamples of the candidates; the
rule is the cheapest setting whose mean regret stays within --regret-frac standard errors of a validation
accuracy from its rung on; held-out halves check it. --write-rule records it in orchestrator/
rungs.json (keeping that file's reversal table), which `grace_period: auto` and `reduction_factor: auto`
read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.curves import load_curves  # noqa: E402
from bench.regret import REGRET_FRAC, fit_rule  # noqa: E402
from orchestrator.machine import machine  # noqa: E402
from orchestrator.run.io import atomic_write_text  # noqa: E402
from orchestrator.rungs import RULE_FILE  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--curves", nargs="+", default=["experiments/search_fidelity/curves"])
    ap.add_argument("--length", type=int, default=40, help="only curves recorded to this many epochs")
    ap.add_argument("--metric", default="val_acc")
    ap.add_argument("--n-val", type=int, default=5000, help="validation images the curves were measured on")
    ap.add_argument("--regret-frac", type=float, default=REGRET_FRAC)
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--out", default=None)
    ap.add_argument("--write-rule", action="store_true", help=f"record the rule in {RULE_FILE.name}")
    a = ap.parse_args()
    curves = [c for folder in a.curves for c in load_curves(ROOT / folder, a.length)]
    if len(curves) < 3:
        sys.exit(f"{a.curves}: {len(curves)} curves recorded to {a.length} epochs; the rule needs >= 3")
    acc = np.array([[e[a.metric] for e in c.epochs] for c in curves])  # (n, length)
    t0 = time.time()
    rule = fit_rule(acc, a.n_val, a.regret_frac, a.draws)
    rule.update(
        metric=a.metric,
        curves=a.curves,
        record="experiments/search_regret",
        date=time.strftime("%Y-%m-%d"),
        machine=machine(),
        seconds=round(time.time() - t0, 1),
    )
    text = json.dumps(rule, indent=1)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(a.out), text + "\n")
    if a.write_rule:
        old = json.loads(RULE_FILE.read_text()) if RULE_FILE.is_file() else {}
        kept = {k: old[k] for k in ("reversal",) if k in old}
        atomic_write_text(
            RULE_FILE, json.dumps({**{k: v for k, v in rule.items() if k != "table"}, **kept}, indent=1) + "\n"
        )
    ho = rule["held_out"] or {}
    print(
        f"{rule['n']} curves of {rule['length']} epochs: first rung at {rule['grace_frac']:.0%}, keep 1/"
        f"{rule['reduction_factor']}: regret {rule['regret_mean']:.4f} (p90 {rule['regret_p90']:.4f}) <= bound "
        f"{rule['bound']:.4f}, cost {rule['cost_frac']:.0%} of the trial-epochs; held out: regret "
        f"{ho.get('regret_mean', float('nan')):.4f}, cost {ho.get('cost_frac', float('nan')):.0%}, within the "
        f"bound on {ho.get('within_bound', float('nan')):.0%} of halves"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
