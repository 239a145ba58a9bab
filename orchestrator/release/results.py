"""A run's trials read from its directory, without Ray: per-epoch histories, resolved settings, stop reasons.

Works on a running, interrupted or finished sweep (`kdsweep results runs/<name>`): Tune writes one
`result.json` line per reported epoch into each trial's directory, and the trial's sampled config in
`params.json`; the run directory holds the sweep's config (`kdsweep_config.json`) and, for the final
stage, the winner's resolved settings (`final/final_base.json`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from orchestrator.errors import UserError
from orchestrator.run import trial as record
from orchestrator.run.io import read_json as _read_json
from orchestrator.run.layout import (
    CONFIG_FILE,
    ERROR_FILE,
    FATAL_FILE,
    FINAL_BASE_FILE,
    FINAL_DIR,
    META_FILE,
    RESULT_FILE,
)
from orchestrator.rungs import read_rule, reversal_rate
from trainables.config import KWARGS, merge_train

_SIGNALS = {
    "Segmentation fault": "SIGSEGV",
    "Aborted": "SIGABRT",
    "Bus error": "SIGBUS",
    "Floating-point exception": "SIGFPE",
    "Floating point exception": "SIGFPE",
    "Illegal instruction": "SIGILL",
}


def trial_id_of(dir_name: str) -> str:
    """Tune's trial id from a trial directory's name (`<trainable>_<id>_<n>_<tag>`), for a trial that never
    reported."""
    named = re.search(r"_([0-9a-f]{5}_\d{5})_", dir_name)
    return named.group(1) if named else dir_name


def _short(path: str) -> str:
    """A source path as a reader knows it: from the package root (torch/nn/..., students/...)."""
    return re.split(r"/site-packages/|/(?=(?:orchestrator|trainables|students|bench|tests)/)", path)[-1]


def failure(trial_dir: Path) -> str:
    """Why a trial failed, in one line: the signal that killed its worker and the innermost Python frame (from
    faulthandler's FATAL_FILE), else the last exception line of Tune's error.txt."""
    fatal = trial_dir / FATAL_FILE
    text = fatal.read_text(errors="replace") if fatal.is_file() else ""
    if m := re.findall(r"Fatal Python error: (.+)", text):
        name = m[-1].strip()
        # the innermost frame of the thread that was training (the one whose stack passes through trainables/)
        threads = re.split(r"\n(?=(?:Current thread|Thread) 0x)", text.rsplit("Fatal Python error", 1)[-1])
        stack = next((t for t in threads if "/trainables/" in t), threads[-1])
        frame = re.search(r'File "([^"]+)", line (\d+) in (\S+)', stack)
        where = f" in {_short(frame.group(1))}:{frame.group(2)} ({frame.group(3)})" if frame else ""
        return f"failed: {_SIGNALS.get(name, name)}{where}"
    err = (trial_dir / ERROR_FILE).read_text(errors="replace") if (trial_dir / ERROR_FILE).is_file() else ""
    if "OutOfMemoryError" in err or "low on memory" in err:
        return "failed: out of memory (Ray's memory monitor killed the worker)"
    if "worker process has died" in err:
        return (
            "failed: the worker process died with no signal recorded (the kernel's OOM killer, SIGKILL, "
            "or storage without the crash file)"
        )
    lines = [
        ln.strip() for ln in err.splitlines() if re.match(r"^(\w+\.)*\w*(Error|Exception|Interrupt|Exit)\b", ln.strip())
    ]
    return f"failed: {lines[-1][:200]}" if lines else "failed"


def trials(run_dir: Path, finished: bool | None = None) -> list[dict]:
    """Every trial of the run (search, then final), each with its resolved settings and history.

    `finished` says whether the sweep has ended (default: whether it wrote its meta file), which tells
    a trial stopped by ASHA from one still running."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a kdsweep run directory (no {CONFIG_FILE}); pass runs/<name> of a sweep"
        )
    sweep_cfg = _read_json(run_dir / CONFIG_FILE)
    finished = (run_dir / META_FILE).is_file() if finished is None else finished
    stages = [
        ("search", run_dir, sweep_cfg["train"]),
        ("final", run_dir / FINAL_DIR, _read_json(run_dir / FINAL_DIR / FINAL_BASE_FILE)),
    ]
    out = []
    for stage, root, base in stages:
        # the search is over once the final stage has begun
        done = finished or (stage == "search" and (run_dir / FINAL_DIR / FINAL_BASE_FILE).is_file())
        for rj in sorted(root.glob(f"*/{RESULT_FILE}")):
            d = rj.parent
            params = record.params(d)
            cfg = merge_train(base, params.get("_variant", {}), {k: v for k, v in params.items() if k != "_variant"})
            lines = record.rows(d)
            hist = [
                dict(
                    epoch=r["epoch"],
                    val_acc=r["val_acc"],
                    val_loss=r.get("val_loss"),
                    train_loss=r.get("train_loss"),
                    elapsed_s=r.get("elapsed_s"),
                    timestamp=r.get("timestamp"),
                    threads=r.get("threads"),
                )
                for r in lines
                if "val_acc" in r and not r.get("diverged")
            ]
            diverged = next((r["diverged"] for r in lines if r.get("diverged")), None)
            # its length: as configured, or as a time budget refitted it (the last row that says)
            refitted = [int(r["epochs_total"]) for r in lines if "epochs_total" in r]
            epochs = refitted[-1] if refitted else int(cfg.get("epochs", 0))
            run = hist[-1]["epoch"] if hist else 0
            best = max(hist, key=lambda h: h["val_acc"]) if hist else None
            if diverged:
                status = diverged
            elif (d / ERROR_FILE).is_file() and run < epochs:
                status = failure(d)
            elif run >= epochs:
                status = "finished"
            elif done:
                status = f"stopped by ASHA after epoch {run}"
            else:
                status = "running or interrupted"
            out.append(
                dict(
                    stage=stage,
                    trial=next((r["trial_id"] for r in lines if "trial_id" in r), trial_id_of(d.name)),
                    dir=str(d),
                    config=cfg,
                    history=hist,
                    epochs_run=run,
                    epochs=epochs,
                    status=status,
                    best_val_acc=best["val_acc"] if best else float("nan"),
                    best_epoch=best["epoch"] if best else 0,
                    params=next((r.get("params") for r in lines if "params" in r), None),
                    nodes=list(dict.fromkeys(r["node"] for r in lines if r.get("node"))),
                    # in order of use: a trial resumed on another kind of CPU shows both ("bf16+fp32")
                    precision="+".join(dict.fromkeys(r["precision"] for r in lines if r.get("precision"))),
                    lengths=_lengths(lines),
                )
            )
    return out


def _lengths(lines: list[dict]) -> list[dict]:
    """What each length a trial read ended with: its wsd cool-down branches (trainables/branch.py), then the
    run itself where its last epoch measured the fit gap ({"epochs", "val_acc", "train_acc"})."""
    out = [
        dict(epochs=r["branch"], val_acc=r["branch_val_acc"], train_acc=r.get("branch_train_acc"))
        for r in lines
        if "branch" in r
    ]
    end = [r for r in lines if "train_acc" in r and "val_acc" in r]
    if out and end:
        out.append(dict(epochs=end[-1]["epoch"], val_acc=end[-1]["val_acc"], train_acc=end[-1]["train_acc"]))
    return out


def length_lines(ts: list[dict]) -> list[str]:
    """The lengths read off each trial with cool-down branches, and the fit gap at each (`kdsweep results`)."""
    out = []
    for t in ts:
        if not t.get("lengths"):
            continue
        said = "; ".join(
            f"{x['epochs']} epochs val {x['val_acc']:.4f}"
            + (f" (train {x['train_acc']:.4f}, gap {x['train_acc'] - x['val_acc']:+.4f})" if x["train_acc"] else "")
            for x in t["lengths"]
        )
        out.append(f"lengths read off {t['trial']} (wsd cool-down branches, then the run): {said}")
    return out


def _flat(cfg: dict) -> dict:
    """A trial's settings with its student's kwargs as `student_kwargs.<kwarg>` keys (a drawn shape shows)."""
    return {
        **{k: v for k, v in cfg.items() if k != KWARGS},
        **{f"{KWARGS}.{k}": v for k, v in (cfg.get(KWARGS) or {}).items()},
    }


def varying_keys(ts: list[dict]) -> list[str]:
    """Settings that differ between the trials (what the table needs to show), student and loss first."""
    keys = sorted({k for t in ts for k in _flat(t["config"])})
    vary = [k for k in keys if len({json.dumps(_flat(t["config"]).get(k), sort_keys=True) for t in ts}) > 1]
    return [k for k in ("student", "loss") if k in keys] + [k for k in vary if k not in ("student", "loss")]


def table(run_dir: Path):
    """One row per trial: stage, what it ran with, best validation accuracy and epoch, epochs, stop reason."""
    import pandas as pd

    ts = trials(run_dir)
    keys = [k for k in varying_keys(ts) if k != "epochs"]  # the epochs column shows run/planned already
    rows = [
        dict(
            stage=t["stage"],
            trial=t["trial"],
            **{k: _flat(t["config"]).get(k) for k in keys},
            params=t["params"],
            val_acc=t["best_val_acc"],
            best_epoch=t["best_epoch"],
            epochs=f"{t['epochs_run']}/{t['epochs']}",
            precision=t["precision"],
            status=t["status"],
        )
        for t in ts
    ]
    df = pd.DataFrame(rows)
    if len(df):
        df["params"] = df["params"].astype("Int64")  # stays an integer where a trial has not reported yet
        df = df.sort_values(["stage", "val_acc"], ascending=[False, False], ignore_index=True)
    return df


def search_account(ts: list[dict], meta: dict | None = None, reversal: list[dict] | None = None) -> dict:
    """What the search stage spent and what it bought, from its trials' histories: the anytime curve (best
    validation accuracy so far against trial-epochs and core-hours, epochs in the order they were reported),
    how many trials ASHA cut at each epoch and whether a cut one might have won (`reversal`: the recorded
    table, by default the one in orchestrator/rungs.json), and the searcher and rule from the run's
    meta record."""
    search = [t for t in ts if t["stage"] == "search"]
    if reversal is None and any(t["status"].startswith("stopped") for t in search):
        try:
            reversal = read_rule().get("reversal")
        except (UserError, OSError, ValueError):  # no rule recorded: the account says it cannot judge
            reversal = None
    events = sorted(
        ((h.get("timestamp") or 0, i, n, h) for i, t in enumerate(search) for n, h in enumerate(t["history"])),
        key=lambda e: e[:3],
    )
    anytime, best, epochs, core_s, last = [], float("-inf"), 0, 0.0, {}
    for _, i, _, h in events:
        epochs += 1
        core_s += max(0.0, (h.get("elapsed_s") or 0) - last.get(i, 0.0)) * (h.get("threads") or 1)
        last[i] = h.get("elapsed_s") or 0
        if h["val_acc"] > best:
            best = h["val_acc"]
            anytime.append(dict(trial_epochs=epochs, core_h=round(core_s / 3600, 4), best_val_acc=best))
    cut: dict[int, int] = {}
    for t in search:
        if t["status"].startswith("stopped"):
            cut[t["epochs_run"]] = cut.get(t["epochs_run"], 0) + 1
    said = (meta or {}).get("search") or {}
    return dict(
        trials=len(search),
        trial_epochs=epochs,
        core_h=round(core_s / 3600, 4),
        anytime=anytime,
        cut_at=dict(sorted(cut.items())),
        finished=sum(t["status"] == "finished" for t in search),
        searcher=said.get("searcher", "random"),
        statement=said.get("statement"),
        rule=said.get("rule"),
        cut_check=cut_check(search, reversal),
        skipped=said.get("skipped", ""),
    )


def cut_check(search: list[dict], reversal: list[dict] | None) -> dict | None:
    """Whether a trial ASHA cut might have won: each cut trial's gap, at its last epoch, to the trial that won
    the search (the best that ran to its end, as seen at that same epoch), and how often the recorded curves
    (`reversal`, from orchestrator/rungs.json) saw a configuration that far behind at that point of its
    schedule finish ahead. None where nothing was cut or no trial ran to its end."""
    cut = [t for t in search if t["status"].startswith("stopped")]
    ended = [t for t in search if t["status"] == "finished" and t["history"]]
    if not cut or not ended:
        return None
    win = max(ended, key=lambda t: t["history"][-1]["val_acc"])
    seen = {h["epoch"]: h["val_acc"] for h in win["history"]}
    rows = []
    for t in cut:
        e = t["epochs_run"]
        if e not in seen or not t["history"]:
            continue
        gap = seen[e] - t["history"][-1]["val_acc"]
        rate = reversal_rate(reversal, e / max(t["epochs"], 1), max(gap, 0.0)) if reversal else None
        rows.append(
            dict(
                trial=t["trial"],
                epoch=e,
                gap=round(gap, 4),
                reversal=None if rate is None else round(rate[0], 3),
                pairs=None if rate is None else rate[1],
            )
        )
    known = [r["reversal"] for r in rows if r["reversal"] is not None]
    return dict(
        winner=win["trial"],
        cut=len(cut),
        compared=len(rows),
        ahead_when_cut=sum(r["gap"] < 0 for r in rows),
        expected=round(sum(known), 2) if known else None,
        judged=len(known),
        rows=rows,
    )


def account_lines(acc: dict) -> list[str]:
    """The search account in a few lines (`kdsweep results`, the report)."""
    if acc.get("skipped"):
        return [f"search: skipped ({acc['skipped']})"]
    if not acc["trials"]:
        return []
    cuts = ", ".join(f"{n} at epoch {e}" for e, n in acc["cut_at"].items()) or "none"
    lines = [
        f"search: {acc['trials']} trials by {acc['searcher']}, {acc['trial_epochs']} trial-epochs, "
        f"{acc['core_h']:.2f} core-hours; ASHA cut {sum(acc['cut_at'].values())} ({cuts}), "
        f"{acc['finished']} ran to the end"
    ]
    if acc["anytime"]:
        pts = acc["anytime"]
        marks = sorted({0, len(pts) // 2, len(pts) - 1})
        lines.append(
            "best validation so far: "
            + ", ".join(
                f"{pts[k]['best_val_acc']:.4f} after {pts[k]['trial_epochs']} trial-epochs "
                f"({pts[k]['core_h']:.2f} core-h)"
                for k in marks
            )
        )
    chk = acc.get("cut_check")
    if chk:
        said = (
            f"by the recorded curves, configurations that far behind at that point finished ahead "
            f"{chk['expected']:.2f} times in {chk['judged']} such cuts"
            if chk["expected"] is not None
            else "no recorded curves to judge them by (orchestrator/rungs.json has no reversal table)"
        )
        lines.append(
            f"would a cut trial have won: {chk['cut']} cut, {chk['ahead_when_cut']} of them ahead of the "
            f"winner ({chk['winner']}) when cut; {said}"
        )
    if acc.get("statement"):
        lines.append(acc["statement"])
    return lines


def run_lines(run_dir: Path) -> list[str]:
    """What `kdsweep results` prints: the trials table, the search's account (a run under way has no meta
    record yet: its config says how it searches) and, for a search kept in a ledger, every chunk's
    candidates and their accuracy/cost front."""
    import pandas as pd

    from orchestrator.release.front import front_lines, ledger_points
    from orchestrator.run.rundir import Run

    df = table(run_dir)
    if df.empty:
        return [f"{run_dir}: no trial has reported yet"]
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_rows", 500):
        lines = [df.to_string(index=False, float_format=lambda v: f"{v:.4f}")]
    meta = _read_json(run_dir / META_FILE) if (run_dir / META_FILE).is_file() else {}
    cfg = _read_json(run_dir / CONFIG_FILE) if (run_dir / CONFIG_FILE).is_file() else {}
    if "search" not in meta:
        meta = {**meta, "search": {"searcher": (cfg.get("sweep") or {}).get("searcher", "random")}}
        if skipped := Run(run_dir).search_skipped:  # the run's record of it, read as the driver reads it
            meta["search"]["skipped"] = skipped
    ts = trials(run_dir)
    return lines + account_lines(search_account(ts, meta)) + length_lines(ts) + front_lines(ledger_points(cfg))
