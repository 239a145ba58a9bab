"""Record the product's search (configs/search.yaml, run directory runs/search) as small committed files, so
that what it found survives the run directory: `progress.json` (each candidate's settings, epochs run, last and
best validation, the precisions it trained in; the search account; one entry per recorded chunk naming the
machine) and, for each candidate that ran to its end, its per-epoch curve in
experiments/search_fidelity/curves/search_XX.jsonl (more configurations for the fidelity table, whose rule
file is then derived again: bench/search_fidelity.py --write-rule).
    .venv/bin/python experiments/search_release/record.py [--run runs/search]"""

import argparse
import json
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
from orchestrator.machine import machine  # noqa: E402
from orchestrator.release.results import result_lines, search_account, trials  # noqa: E402
from orchestrator.run.io import atomic_write_text  # noqa: E402
from orchestrator.run.layout import CONFIG_FILE, META_FILE  # noqa: E402

KEEP = (
    "epoch",
    "val_acc",
    "val_acc_plain",
    "val_acc_flip",
    "val_acc_raw",
    "val_loss",
    "train_loss",
    "lr",
    "images_per_s",
    "elapsed_s",
    "precision",
    "threads",
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/search")
    a = ap.parse_args()
    run = ROOT / a.run
    cfg = json.loads((run / CONFIG_FILE).read_text())
    space = sorted(cfg.get("search_space") or {})
    meta = json.loads((run / META_FILE).read_text()) if (run / META_FILE).is_file() else {}
    ts = trials(run)
    prev = json.loads((HERE / "progress.json").read_text()) if (HERE / "progress.json").is_file() else {}
    rows, curves = [], 0
    for t in ts:
        m = re.search(r"_(\d{5})_", Path(t["dir"]).name)
        k = int(m.group(1)) if m else None
        h = t["history"]
        rows.append(
            dict(
                stage=t["stage"],
                candidate=k,
                settings={s: t["config"].get(s) for s in space},
                epochs_run=t["epochs_run"],
                epochs=t["epochs"],
                status=t["status"],
                last_val_acc=h[-1]["val_acc"] if h else None,
                best_val_acc=t["best_val_acc"] if h else None,
                precision=t["precision"],
            )
        )
        if t["stage"] == "search" and t["status"] == "finished" and k is not None:
            lines = [r for r in result_lines(Path(t["dir"]) / "result.json") if "val_acc" in r]
            head = {
                "config": "search.yaml",
                "trial": k,
                "variant": rows[-1]["settings"],
                "collected_on": machine(),
                "note": "the product's search (configs/search.yaml, teacher ta_resnet20 views); each line's "
                "precision says which kind of CPU ran it",
            }
            atomic_write_text(
                ROOT / "experiments/search_fidelity/curves" / f"search_{k:02d}.jsonl",
                "".join(json.dumps(r) + "\n" for r in [head] + [{x: r[x] for x in KEEP if x in r} for r in lines]),
            )
            curves += 1
    acc = search_account(ts, meta)
    trial_epochs = acc["trial_epochs"] + sum(r["epochs_run"] for r in rows if r["stage"] == "final")
    chunks = list(prev.get("chunks", []))
    chunks.append(
        dict(
            recorded=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            machine=machine(),
            trial_epochs_so_far=trial_epochs,
        )
    )
    out = dict(
        config="configs/search.yaml (written out whole: config.yaml here)",
        run=a.run,
        finished=bool(meta),
        candidates=rows,
        account={k: v for k, v in acc.items() if k != "anytime"},
        anytime=acc["anytime"],
        chunks=chunks,
    )
    atomic_write_text(HERE / "progress.json", json.dumps(out, indent=1) + "\n")
    if curves:  # the fidelity record grew: its rule (and the table beside it) are derived again from all curves
        import subprocess

        subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench/search_fidelity.py"),
                "--out",
                str(ROOT / "experiments/search_fidelity/fidelity.json"),
                "--write-rule",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    done = sum(r["status"] == "finished" for r in rows if r["stage"] == "search")
    print(
        f"recorded {len(rows)} trials ({done} search candidates finished, {curves} curves), "
        f"{trial_epochs} trial-epochs so far"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
