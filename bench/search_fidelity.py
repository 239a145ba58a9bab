"""How early can a trial be judged? Rank correlation of early against final validation accuracy over the
recorded curves of experiments/search_fidelity (every configuration trained to its end), the seed spread
beside it, which lever is decided when, and the rule ASHA's first rung follows.

    .venv/bin/python bench/search_fidelity.py --out experiments/search_fidelity/fidelity.json [--write-rule]

Three early signals are compared against one end (`val_acc` at the last epoch: the EMA weights with the
flip, what selection and export use): the same signal early; the EMA weights without the flip
(`val_acc_plain`); the live weights without the flip (`val_acc_raw`: what a trial without an EMA reports).
--write-rule records the earliest fraction of the schedule at which the chosen signal's Spearman rho stays
>= --min-rho into orchestrator/rungs.json, which `sweep.grace_period: auto` reads.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.curves import (  # noqa: E402
    DEFAULT_MIN_RHO,
    decided_at,
    fidelity_table,
    judge_fraction,
    lever_pairs,
    load_curves,
    reversal_table,
)
from orchestrator.machine import machine  # noqa: E402
from orchestrator.rungs import RULE_FILE  # noqa: E402

SIGNALS = {
    "val_acc": "EMA weights, flip (what selection uses)",
    "val_acc_plain": "EMA weights, no flip",
    "val_acc_raw": "live weights, no flip (a trial without EMA)",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--curves", default="experiments/search_fidelity/curves")
    ap.add_argument("--length", type=int, default=40, help="only curves recorded to this many epochs")
    ap.add_argument("--min-rho", type=float, default=DEFAULT_MIN_RHO)
    ap.add_argument("--out", default=None)
    ap.add_argument("--write-rule", action="store_true", help=f"record the rule in {RULE_FILE.name}")
    a = ap.parse_args()
    curves = load_curves(ROOT / a.curves, a.length)
    if len(curves) < 3:
        sys.exit(f"{a.curves}: {len(curves)} curves recorded to {a.length} epochs; the table needs >= 3")
    out = dict(
        curves=a.curves,
        length=a.length,
        n_curves=len(curves),
        final="val_acc",
        tables={},
        judge={},
        precision=sorted({c.epochs[0].get("precision", "?") for c in curves}),
        date=time.strftime("%Y-%m-%d"),
    )
    for sig, what in SIGNALS.items():
        if not all(sig in c.epochs[0] for c in curves):
            continue
        table = fidelity_table(curves, sig, "val_acc")
        out["tables"][sig] = table
        out["judge"][sig] = judge_fraction(table, a.min_rho)
        print(
            f"\n{sig}: {what} at epoch k against val_acc at epoch {a.length}  ({table[0]['n']} configurations,"
            f" {table[0]['seed_pairs']} seed pairs)"
        )
        print("  k   frac  spearman  kendall  between-sd  seed-spread")
        for r in table:
            print(
                f"  {r['epoch']:2d}  {r['frac']:.3f}  {r['spearman']:8.3f}  {r['kendall']:7.3f}  "
                f"{r['between_sd'] or 0:10.4f}  {r['seed_spread'] if r['seed_spread'] is not None else '-':>11}"
            )
        print(f"  Spearman >= {a.min_rho} from fraction {out['judge'][sig]} of the schedule on")
    levers = []
    for lever, x, y in lever_pairs(curves):
        k = decided_at(x, y, "val_acc")
        levers.append(
            dict(
                lever=lever,
                variant=y.variant,
                a=x.name,
                b=y.name,
                a_final=x.final("val_acc"),
                b_final=y.final("val_acc"),
                gap=round(abs(x.final("val_acc") - y.final("val_acc")), 4),
                decided_at=k,
            )
        )
    out["levers"] = sorted(levers, key=lambda r: (r["lever"], r["decided_at"]))
    print("\neach lever against its base recipe: the epoch from which the order at every later epoch is the final one")
    for r in out["levers"]:
        what = " ".join(f"{k}={v}" for k, v in r["variant"].items())
        print(
            f"  {r['b']} {what:55s} {r['b_final']:.4f} vs base {r['a']} {r['a_final']:.4f}  "
            f"gap {r['gap']:.4f}  decided at epoch {r['decided_at']}"
        )
    out["reversal"] = reversal_table(curves, "val_acc")
    print("\nreversals: of the pairs where one stood > gap behind at epoch k, how many finished ahead")
    for r in out["reversal"]:
        if r["gap"] in (0.0, 0.01):
            print(f"  epoch {r['epoch']:2d}  gap > {r['gap']:.3f}: {r['reversed']:3d} of {r['pairs']:3d}")
    heads = [json.loads((ROOT / a.curves / f"{c.name}.jsonl").read_text().splitlines()[0]) for c in curves]
    out["machine"] = sorted({h.get("machine", "?") for h in heads})
    out["analysed_on"] = machine()
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    if a.write_rule:
        frac = out["judge"]["val_acc"]
        if frac is None:
            sys.exit(f"Spearman never stays >= {a.min_rho}: no rule to record")
        rule = dict(
            frac=frac,
            min_rho=a.min_rho,
            metric="val_acc",
            n=out["tables"]["val_acc"][0]["n"],
            length=a.length,
            record="experiments/search_fidelity",
            date=out["date"],
            reversal=out["reversal"],
        )  # what `kdsweep results` reads to say whether a cut trial might have won
        RULE_FILE.write_text(json.dumps(rule, indent=1) + "\n")
        print(f"wrote {RULE_FILE.relative_to(ROOT)}: {rule}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
