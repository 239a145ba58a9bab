"""Copy one finished trial's per-epoch record from runs/ into curves/<cfg>_<k>.jsonl (small, committed), with
the trial's settings and the machine it ran on, so the analysis and the searcher replay need no run directory.
    python experiments/search_fidelity/collect.py r50 3"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
from orchestrator.machine import machine  # noqa: E402

cfg, k = sys.argv[1], int(sys.argv[2])
name = f"fidelity_{cfg}"
(d,) = (ROOT / "runs" / name / "final").glob(f"local_{k:02d}*")
lines = [json.loads(s) for s in (d / "result.json").read_text().splitlines() if s.strip()]
variant = json.loads((d / "params.json").read_text())["_variant"]
keep = ("epoch", "val_acc", "val_acc_plain", "val_acc_flip", "val_acc_raw", "val_loss", "train_loss", "lr",
        "images_per_s", "elapsed_s", "precision", "threads", "diverged")
out = HERE / "curves" / f"{cfg}_{k:02d}.jsonl"
out.parent.mkdir(exist_ok=True)
head = {"config": f"{cfg}.yaml", "trial": k, "variant": variant, "machine": machine()}
tmp = out.with_suffix(".tmp")
tmp.write_text("".join(json.dumps(r) + "\n" for r in [head] + [{x: r[x] for x in keep if x in r} for r in lines]))
tmp.replace(out)
print(f"collected {out.relative_to(ROOT)}: {len(lines)} epochs")
