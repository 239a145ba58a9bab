"""Export the best trial of a sweep as a ready-to-ship student.

Selection is by validation accuracy over every kept checkpoint in the run
directory (no Ray needed, works on an interrupted sweep). Test accuracy is
measured here, once, and never fed back into selection.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from orchestrator import logs
from orchestrator.data import load_split, load_test
from orchestrator.errors import UserError
from orchestrator.loader import is_uri
from orchestrator.machine import machine
from orchestrator.release.deploy import TTA_VIEWS, Deployable, choose_tta, predict, shipped_tta
from orchestrator.release.plots import PLOT_FILES
from orchestrator.release.promote import refuse_models
from orchestrator.release.report import write_report
from orchestrator.run.io import project_relative, read_json, replace_dir, sha256_file
from orchestrator.run.layout import CKPT_FILE, CONFIG_FILE, FINAL_DIR, META_FILE
from students import BUDGET, count_params, deployed, rebuild

log = logging.getLogger(__name__)


def export_dir(run_dir: Path) -> Path:
    """Where export selects from: the final stage when the run has one, else the whole search."""
    return Path(run_dir) / FINAL_DIR if (Path(run_dir) / FINAL_DIR).is_dir() else Path(run_dir)


def find_checkpoints(run_dir: Path) -> list[Path]:
    return sorted(Path(run_dir).rglob(CKPT_FILE))


def best_checkpoint(run_dir: Path, trial: str | None = None) -> tuple[Path, dict]:
    """The kept checkpoint with the highest validation accuracy (ties: fewer epochs, then path); with `trial`,
    only the checkpoints of the one trial whose directory name contains it."""
    paths = find_checkpoints(run_dir)
    if trial is not None:
        dirs = sorted({p.parent.parent.name for p in paths})  # <trial>/checkpoint_<epoch>/checkpoint.pt
        hits = [d for d in dirs if trial in d]
        if len(hits) != 1:
            raise UserError(
                f"--trial {trial!r} matches {len(hits)} trials of {run_dir} (it must name one); "
                f"its trials: {', '.join(dirs) or 'none'}"
            )
        paths = [p for p in paths if p.parent.parent.name == hits[0]]
    best = None
    for p in paths:
        state = torch.load(p, map_location="cpu", weights_only=True)
        key = (state["metrics"]["val_acc"], -state["epoch"])
        if best is None or key > best[0]:
            best = (key, p, state)
    if best is None:
        raise FileNotFoundError(
            f"no {CKPT_FILE} under {run_dir}; is it a kdsweep run directory (runs/<name>)? Run `kdsweep sweep` first"
        )
    return best[1], best[2]


def export_program(model: Deployable, path: Path):
    """torch.export with a dynamic batch dimension, saved as .pt2."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    ep = torch.export.export(model.eval(), (torch.rand(4, 1, 28, 28),), dynamic_shapes={"x": {0: batch}})
    for node in ep.graph.nodes:  # the tracing stack: this machine's absolute source paths, in a shipped file
        node.meta.pop("stack_trace", None)
    torch.export.save(ep, str(path))


def export_onnx(model: Deployable, path: Path, atol: float = 1e-4):
    """ONNX (dynamo exporter, dynamic batch) checked by onnxruntime against the eager model (batch 1 and 37)."""
    import warnings

    import onnxruntime as ort

    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (torch.rand(4, 1, 28, 28),),
            str(path),
            dynamo=True,
            verbose=False,
            external_data=False,  # one self-contained file, weights inside
            dynamic_shapes={"x": {0: batch}},
            input_names=["pixels"],
            output_names=["logits"],
        )
    _drop_stack_traces(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 37):
        x = torch.rand(n, 1, 28, 28)
        with torch.no_grad():
            err = float(np.abs(sess.run(None, {"pixels": x.numpy()})[0] - model(x).numpy()).max())
        if err > atol:
            raise RuntimeError(
                f"onnxruntime disagrees with the eager model by {err:.2g} at batch {n}; "
                f"the ONNX file {path} is not usable"
            )
    return sess


def _drop_stack_traces(path: Path):
    """The exporter records each node's tracing stack (this machine's absolute source paths) in a shipped file."""
    import onnx

    m = onnx.load(str(path))
    for node in m.graph.node:
        keep = [p for p in node.metadata_props if not p.key.endswith("stack_trace")]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
    onnx.save(m, str(path))


def latency_ms(run, batches=(1, 256), repeats: int = 30, budget_s: float = 1.0) -> dict[int, float]:
    """Median wall time of one call at each batch size (after warm-up), in ms: `repeats` calls, or as many
    as fit in `budget_s` (at least 5)."""
    import statistics

    out = {}
    for b in batches:
        x = torch.rand(b, 1, 28, 28)
        for _ in range(3):
            run(x)
        times = []
        t_end = time.perf_counter() + budget_s
        while len(times) < repeats and (len(times) < 5 or time.perf_counter() < t_end):
            t0 = time.perf_counter()
            run(x)
            times.append((time.perf_counter() - t0) * 1000)
        out[b] = statistics.median(times)
    return out


def export(
    run_dir: Path,
    out: Path,
    data_dir=None,
    budget: int = BUDGET,
    force: bool = False,
    trial: str | None = None,
    source: str | None = None,
    tta: str = "config",
) -> dict:
    """Write the export into a temporary directory beside `out` and rename it into place, so `out` is
    either the previous complete export or the new complete one, never half of either. Replacing an
    export of another run needs `force`. Files in `out` that the export does not write (a README beside
    a release) are carried over into the new export. `trial`: export that trial's best checkpoint rather
    than the run's (a substring of its directory name). `source`: where the run lives when `run_dir` is a
    local copy of it (a run on shared storage: its URI), as the export names it. `tta`: see shipped_tta."""
    out = Path(out)
    source = source or project_relative(run_dir)
    refuse_models(out, "export")
    if not (Path(run_dir) / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a kdsweep run directory (no {CONFIG_FILE}); pass runs/<name> "
            "of a sweep (`kdsweep sweep` makes one)"
        )
    previous = out / "metrics.json"
    if previous.is_file() and not force:
        theirs = json.loads(previous.read_text()).get("run_dir")
        if (
            theirs
            and theirs != source
            and (is_uri(theirs) or is_uri(source) or Path(theirs).resolve() != Path(run_dir).resolve())
        ):
            raise FileExistsError(
                f"{out} holds the export of another run ({theirs}); pass another --out, or --force to replace it"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    metrics: dict = {}
    replace_dir(
        out,
        lambda tmp: metrics.update(_export_into(Path(run_dir), tmp, data_dir, budget, trial, source, tta)),
        generated=PLOT_FILES,
    )
    log.info(
        f"exported {metrics['student']} ({metrics['params']:,} params) val_acc {metrics['val_acc']:.4f} "
        f"test_acc {metrics['test_acc']:.4f} -> {out}"
    )
    return metrics


def _export_into(
    run_dir: Path, out: Path, data_dir, budget: int, trial: str | None, source: str, tta: str = "config"
) -> dict:
    import torchinfo

    t0 = time.time()
    ckpt, state = best_checkpoint(export_dir(run_dir), trial)
    trained = rebuild(state)  # student.pt keeps this form (rebuild reads it); what ships is folded
    student = deployed(trained)
    params = count_params(student)
    if params > budget:
        raise UserError(f"refusing to export {state['student']}: {params:,} parameters > budget {budget:,}")
    cfg = state["config"]
    val_by_tta = None
    if tta == "auto":  # every view set measured on the run's validation split; the best is shipped
        data = read_json(run_dir / CONFIG_FILE).get("data") or {}
        split = load_split(
            data_dir, data.get("val_size", 5000), data.get("split_seed", 0), val_limit=data.get("val_limit")
        )
        tta, val_by_tta = choose_tta(student, cfg, split.val_x, split.val_y)
        log.info(f"test-time views on validation: {val_by_tta}; shipping {tta}")
    else:
        tta = shipped_tta(state, tta)
    deploy = Deployable(student, cfg["mean"], cfg["std"], tta).eval()
    out.mkdir(parents=True, exist_ok=True)
    # student.pt's config names the augmentation shipped (chosen here with --tta auto), so that a reader of
    # the weights (deployable, predict) runs what the .pt2 and ONNX run
    torch.save(
        dict(
            student=state["student"],
            student_kwargs=state["student_kwargs"],
            config={**cfg, "tta": tta},
            state_dict=trained.state_dict(),
            metrics=state["metrics"],
        ),
        out / "student.pt",
    )
    export_program(deploy, out / "student.pt2")
    sess = export_onnx(deploy, out / "student.onnx")
    prog = torch.export.load(str(out / "student.pt2")).module()
    with torch.no_grad():
        lat = {
            "student.pt2 (torch)": latency_ms(lambda x: prog(x)),
            "student.onnx (onnxruntime)": latency_ms(lambda x: sess.run(None, {"pixels": x.numpy()})),
        }
        if tta != "none":  # what the augmentation costs: the same weights without it, eager
            plain = Deployable(student, cfg["mean"], cfg["std"]).eval()
            lat[f"eager torch, with {tta} TTA ({len(TTA_VIEWS[tta])} views)"] = latency_ms(lambda x: deploy(x))
            lat["eager torch, without TTA"] = latency_ms(lambda x: plain(x))
    summary = torchinfo.summary(
        student,
        input_size=(1, student.in_chans, 28, 28),
        verbose=0,
        device="cpu",
        col_names=("output_size", "num_params"),
    )
    (out / "summary.txt").write_text(f"{state['student']} {state['student_kwargs']}\n{summary}\n")
    test_x, test_y = load_test(data_dir)
    logits = predict(deploy, test_x)
    pred = logits.argmax(1).numpy()
    test_acc = float((pred == test_y).mean())
    with open(out / "submission.csv", "w") as f:
        f.write("id,label\n")
        f.writelines(f"{i},{int(p)}\n" for i, p in enumerate(pred))
    m = state["metrics"]
    meta_path = run_dir / META_FILE
    run_meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    teacher = run_meta.get("teacher") or {}
    metrics = dict(
        student=state["student"],
        student_kwargs=state["student_kwargs"],
        params=params,
        val_acc=val_by_tta[tta]
        if val_by_tta
        else m.get("val_acc_flip" if tta == "flip" else "val_acc_plain", m["val_acc"]),
        test_acc=test_acc,
        epoch=state["epoch"],
        tta=tta,
        val_acc_plain=m.get("val_acc_plain"),
        val_acc_flip=m.get("val_acc_flip"),
        val_acc_by_tta=val_by_tta,
        trial_checkpoint=str(ckpt.relative_to(run_dir)),
        exported_trial=trial,
        command=logs.COMMAND,  # the kdsweep command that exported it (None: called as a library)
        loss=cfg["loss"],
        train_precision=state["metrics"].get("precision", cfg.get("precision", "fp32")),
        teacher_val_acc=teacher.get("val_acc"),
        teacher_sha256=teacher.get("sha256"),
        teacher_mode=teacher.get("mode"),
        teacher_forwards=run_meta.get("teacher_forwards"),
        teacher_params=teacher.get("params"),
        budget=budget,
        config=cfg,
        pruned=state["metrics"].get("pruned"),
        latency_ms=lat,
        threads=torch.get_num_threads(),
        file_bytes={f: (out / f).stat().st_size for f in ("student.pt", "student.pt2", "student.onnx")},
        sha256={f: sha256_file(out / f) for f in ("student.pt", "student.pt2", "student.onnx")},
        data={k: (read_json(run_dir / CONFIG_FILE).get("data") or {}).get(k) for k in ("val_size", "split_seed")},
        run_dir=source,
        sweep_wall_s=run_meta.get("wall_s"),
        machine=machine(),
    )
    write_report(run_dir, out, metrics, run_meta, model=deploy)
    metrics["export_wall_s"] = time.time() - t0
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics
