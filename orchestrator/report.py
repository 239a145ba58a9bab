"""report.md for an exported student: what was trained, how, and how well."""
from __future__ import annotations

from pathlib import Path


def write_report(run_dir: Path, out: Path, metrics: dict, run_meta: dict) -> Path:
    results = Path(run_dir) / "results.csv"
    table = ""
    if results.is_file():
        import pandas as pd
        df = pd.read_csv(results)
        table = df.head(20).to_markdown(index=False, floatfmt=".4f") if _has_tabulate() else \
            "```\n" + df.head(20).to_string(index=False) + "\n```"
    t = run_meta.get("teacher") or {}
    lines = [
        f"# kdsweep report: {run_meta.get('name', Path(run_dir).name)}",
        "",
        f"Best student: **{metrics['student']}** {metrics['student_kwargs'] or ''}, "
        f"{metrics['params']:,} parameters (torchinfo), loss `{metrics['loss']}`.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| validation accuracy (selection) | {metrics['val_acc']:.4f} |",
        f"| test accuracy (measured once, at export) | {metrics['test_acc']:.4f} |",
        f"| teacher validation accuracy | {t.get('val_acc', float('nan')):.4f} |",
        f"| teacher mode / forwards this sweep | {t.get('mode')} / {run_meta.get('teacher_forwards')} |",
        f"| sweep wall time | {(run_meta.get('wall_s') or 0) / 60:.1f} min |",
        f"| machine | {metrics['machine']} |",
        "",
        "## Method",
        "",
        "Teacher logits computed once per (training image, augmentation view), cached and shared through the Ray "
        "object store; Ray Tune trials with ASHA early stopping on validation accuracy (a seeded, stratified split "
        "of the training set); the best checkpoint by validation accuracy is exported. The test split is read "
        "only here.",
        "",
        "## Trials (best epoch of each, by validation accuracy)",
        "",
        table,
        "",
        "## Student summary",
        "",
        "```",
        (out / "summary.txt").read_text().rstrip(),
        "```",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
        return True
    except ImportError:
        return False
