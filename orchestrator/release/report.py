"""The report a user hands in: `report.md` and a self-contained `report.html` (plots embedded), written
from the run directory and the export (`kdsweep report --run runs/<name>`, also run by export). Its method
text is method.py's, its plots plots.py's and the search's front front.py's."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from orchestrator.release import front as front_mod
from orchestrator.release import results as results_mod
from orchestrator.release.method import MISSION_PARAMS, method_text, tta_text
from orchestrator.release.plots import draw_plots, val_confusion


def _md_table(df) -> str:
    cols = list(df.columns)
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


LOAD_LINES = """import torch
model = torch.export.load("student.pt2").module()        # or onnxruntime.InferenceSession("student.onnx")
logits = model(torch.rand(8, 1, 28, 28))                 # pixels in [0, 1], white garment on black"""


def _release_point() -> dict | None:
    """The released student as a point on the front's MACs panel (its validation at its own length)."""
    from orchestrator.release.promote import STUDENT_RELEASE
    from students import count_macs, create_student

    path = STUDENT_RELEASE / "metrics.json"
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    macs = count_macs(create_student(m["student"], **(m.get("student_kwargs") or {})))
    epochs = (m.get("config") or {}).get("epochs")
    return dict(val=m["val_acc"], macs=macs, label=f"the release ({epochs} epochs)" if epochs else "the release")


def write_report(run_dir: Path, out: Path, metrics: dict, run_meta: dict, model=None) -> Path:
    """report.md + report.html (+ PNG plots) in `out`; `model` (pixels in [0,1] -> logits) adds the confusion
    matrix. Returns the path of report.md."""
    run_dir, out = Path(run_dir), Path(out)
    cfg_file = run_dir / results_mod.CONFIG_FILE
    run_cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else dict(run_meta.get("config") or {})
    ts = results_mod.trials(run_dir) if (run_dir / results_mod.CONFIG_FILE).is_file() else []
    confusion = val_confusion(model, run_cfg) if model is not None and run_cfg.get("data") else None
    plots = draw_plots(ts, metrics, out, confusion, run_meta)
    paras = method_text(ts, metrics, run_meta, run_cfg) if run_cfg else []
    if chosen := (run_meta.get("final") or {}).get("chosen"):  # the two best, compared on the same images
        paras.append(f"**The winner, against the runner-up.** {chosen[0].upper()}{chosen[1:]}.")
    if points := front_mod.ledger_points(run_cfg):  # a search kept in a ledger: every chunk's candidates
        winner = max((p for p in points if p.finished), key=lambda p: p.best_val, default=None)
        plots["front"] = front_mod.front_plot(
            points, out / "search_front.png", winner and winner.index, _release_point()
        )
        paras.append(
            "**Accuracy and cost.** "
            + "; ".join(front_mod.front_lines(points)[:1])
            + ". The front (best validation at the search's length against the shape's multiply-adds): "
            + "; ".join(
                f"c{p.index:03d} {p.best_val:.4f} at {p.macs / 1e6:.1f} M MACs ({p.label})"
                for p in front_mod.front(points)
            )
            + "."
        )
    table = results_mod.table(run_dir) if ts else None
    t = run_meta.get("teacher") or {}
    headline = [
        ("student", f"{metrics['student']} {metrics.get('student_kwargs') or ''}"),
        ("parameters (torchinfo)", f"{metrics['params']:,} of {metrics.get('budget', 100_000):,}"),
        ("validation accuracy (used for selection)", f"{metrics['val_acc']:.4f}"),
        ("test-time augmentation", tta_text(metrics)),
        ("test accuracy (measured once, at export; never used to choose)", f"{metrics['test_acc']:.4f}"),
        (
            "teacher",
            f"{t.get('arch', 'none')}, {t.get('params', 0):,} params, val {t.get('val_acc', float('nan')):.4f}",
        ),
        (
            "compression (teacher / student parameters)",
            f"{t['params'] / metrics['params']:.0f}x" if t.get("params") else "-",
        ),
        (
            "compression against the course's ResNet-50",
            f"{MISSION_PARAMS / metrics['params']:.0f}x ({MISSION_PARAMS:,} / {metrics['params']:,} parameters)"
            + (
                f"; the student's teacher was a {t.get('arch')}, not the ResNet-50"
                if t.get("arch") and t.get("arch") != "resnet50"
                else ""
            ),
        ),
        ("teacher forwards this run", f"{run_meta.get('teacher_forwards', 0):,}"),
        ("sweep wall time", f"{(run_meta.get('wall_s') or 0) / 60:.1f} min"),
        ("machine", metrics.get("machine", "")),
    ]
    for name, ms in (metrics.get("latency_ms") or {}).items():
        headline.append((f"CPU latency, {name}", ", ".join(f"batch {b}: {v:.2f} ms" for b, v in ms.items())))
    if metrics.get("file_bytes"):
        headline.append(("files", ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in metrics["file_bytes"].items())))
    summary = (out / "summary.txt").read_text().rstrip() if (out / "summary.txt").is_file() else ""
    config_json = json.dumps(metrics.get("config", {}), indent=1)
    title = f"kdsweep report: {run_meta.get('name', run_dir.name)}"

    md = [
        f"# {title}",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in headline],
        "",
        "## Method",
        "",
        *[p + "\n" for p in paras],
        "## Plots",
        "",
        *[f"![{k}]({p.name})\n" for k, p in plots.items()],
        "## Trials (best epoch of each by validation accuracy, and why each stopped)",
        "",
        _md_table(table) if table is not None else "",
        "",
        "## Student summary (torchinfo)",
        "",
        "```",
        summary,
        "```",
        "",
        "## The exported student's full configuration",
        "",
        "```json",
        config_json,
        "```",
        "",
        "## Load and run it",
        "",
        "```python",
        LOAD_LINES,
        "```",
        "",
    ]
    (out / "report.md").write_text("\n".join(md))

    def img(p: Path) -> str:
        return f'<img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'

    def para(p: str) -> str:
        text = html.escape(p)
        while "**" in text:  # **bold** -> <b>bold</b>
            text = text.replace("**", "<b>", 1).replace("**", "</b>", 1)
        while text.count("`") >= 2:
            text = text.replace("`", "<code>", 1).replace("`", "</code>", 1)
        return f"<p>{text}</p>"

    body = [
        f"<h1>{html.escape(title)}</h1>",
        "<table class=h>",
        *[f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in headline],
        "</table>",
        "<h2>Method</h2>",
        *[para(p) for p in paras],
        "<h2>Plots</h2>",
        *[img(p) for p in plots.values()],
        "<h2>Trials</h2>",
        table.to_html(index=False, float_format=lambda v: f"{v:.4f}") if table is not None else "",
        "<h2>Student summary (torchinfo)</h2>",
        f"<pre>{html.escape(summary)}</pre>",
        "<h2>The exported student's full configuration</h2>",
        f"<pre>{html.escape(config_json)}</pre>",
        "<h2>Load and run it</h2>",
        f"<pre>{html.escape(LOAD_LINES)}</pre>",
    ]
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
        "img{max-width:100%;display:block;margin:1em 0}table{border-collapse:collapse;font-size:0.85em}"
        "td,th{border:1px solid #ccc;padding:0.2em 0.5em;text-align:left}pre{background:#f6f6f6;padding:0.5em;"
        "overflow-x:auto;font-size:0.8em}"
    )
    (out / "report.html").write_text(
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}"
        f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
    return out / "report.md"
