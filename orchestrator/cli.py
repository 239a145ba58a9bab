"""kdsweep command line (`kdsweep` == `python -m orchestrator`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from orchestrator.errors import UserError


def _overrides(items) -> dict:
    """--set KEY=VALUE items as {dotted key: YAML value}."""
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"kdsweep: --set takes KEY=VALUE (e.g. train.epochs=3), got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def _teacher_train(a) -> int:
    from orchestrator.config import TeacherTrainConfig, apply_overrides, from_dict, load_yaml

    raw = apply_overrides(load_yaml(a.config), _overrides(a.set))
    if a.workers is not None:
        raw["workers"] = a.workers
    if a.gpu:
        raw["use_gpu"] = True
    if a.epochs is not None:
        raw.setdefault("optim", {})["epochs"] = a.epochs
    cfg = from_dict(TeacherTrainConfig, raw)
    from orchestrator.release.promote import refuse_models

    run_dir = Path(a.run_dir or f"runs/teacher/{cfg.name}").resolve()
    out = Path(a.out or f"artifacts/teacher/{cfg.name}.pt").resolve()
    refuse_models(out, "teacher's weights")
    if a.no_ray:
        from orchestrator.teacher.train import train_local

        path = train_local(cfg, run_dir, out, chunk_minutes=a.chunk_minutes)
        if path is None:
            print(f"{run_dir}: this chunk is done; the same command goes on from its last epoch")
            return 0
    else:
        if a.chunk_minutes is not None:
            raise UserError("--chunk-minutes goes with --no-ray (on Ray Train, stop the job; its rerun resumes)")
        from orchestrator.teacher.train import train_ray

        path = train_ray(cfg, run_dir, out, address=a.address)
    print(
        f"wrote {path} (+ {path.with_suffix('.json').name}); evaluate with `kdsweep teacher eval --checkpoint "
        f"{path}`; release it with `kdsweep release teacher --from {path} --name NAME`"
    )
    return 0


def _students(a) -> int:
    import torch

    from students import BUDGET, count_macs, count_params, create_student, deployed, list_students
    from trainables.train import train_speed

    torch.set_num_threads(a.threads)
    speed = "" if a.no_speed else f"  train img/s ({a.threads} thread{'s' * (a.threads > 1)}, batch 128)"
    head = f"{'student':<22} {'params':>9}  {'trained':>9}  {'M MACs':>7}  in_chans  budget {BUDGET:,}"
    print(head + speed, flush=True)
    for name in list_students():
        m = create_student(name)
        n, trained = count_params(deployed(m)), count_params(m)  # what ships (and the budget counts); what trains
        macs = count_macs(deployed(m)) / 1e6  # a forward of one image, as it ships
        rate = "" if a.no_speed else f"  {train_speed(name):>10,.0f}"
        print(
            f"{name:<22} {n:>9,}  {trained:>9,}  {macs:>7.1f}  {m.in_chans:>8}  "
            f"{'ok' if n <= BUDGET else 'OVER':>13}{rate}",
            flush=True,
        )
    return 0


def _load_sweep_config(a):
    """The sweep config with the command line's overrides (--data-dir, --teacher-mean/std, --set)."""
    from orchestrator.config import load_sweep_config

    overrides = {}
    if a.data_dir:
        overrides["data.data_dir"] = a.data_dir
    if a.teacher_mean is not None:
        overrides["teacher.mean"] = a.teacher_mean
    if a.teacher_std is not None:
        overrides["teacher.std"] = a.teacher_std
    from orchestrator.config import shadowed_overrides

    given = _overrides(a.set)
    cfg = load_sweep_config(a.config, {**overrides, **given})
    for warning in shadowed_overrides(cfg, given):
        print(f"kdsweep: warning: {warning}", file=sys.stderr)
    return cfg


def _tta_arg(p):
    p.add_argument(
        "--tta",
        choices=("config", "auto", "none"),
        default="config",
        help="the export's test-time views: as the trial's train.tta (config: the flip where it helped on "
        "validation), the best of none / flip / flip_shift (six views) measured on validation (auto), or none",
    )


def _sweep(a) -> int:
    from orchestrator.sweep.driver import run_sweep

    cfg = _load_sweep_config(a)
    from orchestrator.config import resolve_path

    if a.release and a.no_export:
        raise UserError("kdsweep sweep --release releases the run's export: drop --no-export")
    export_to = None if a.no_export else resolve_path(a.export_dir or f"artifacts/{cfg.name}")
    run_sweep(
        cfg,
        teacher_path=a.teacher,
        address=a.address,
        export_to=export_to,
        force=a.force,
        dashboard=a.dashboard,
        tta=a.tta,
        t_start=a.started,
    )
    if a.release:  # refused (one line, exit 2) unless better on validation than what is released
        from orchestrator.release.promote import release_student

        release_student(Path(export_to))
    return 0


def _train(a) -> int:
    import torch

    from orchestrator.config import resolve_path
    from orchestrator.sweep.local import run_local

    cfg = _load_sweep_config(a)
    torch.set_num_threads(a.threads or max(1, int(cfg.sweep.cpus_per_trial)))
    if cfg.sweep.ledger and cfg.search_space:  # a search kept in a ledger: its candidates, here, without Ray
        from orchestrator.sweep.local import run_ledger_search

        entries = run_ledger_search(cfg, a.teacher, a.device, a.minutes)
        left = sum(e.end is None for e in entries)
        best = max((e for e in entries if e.rows), key=lambda e: e.best, default=None)
        print(
            f"ledger {cfg.sweep.ledger}: {len(entries) - left} of {len(entries)} candidates ended"
            + (f"; the best so far c{best.index:03d} val {best.best:.4f} {best.variant}" if best else "")
            + ("; the final stage and export: `kdsweep sweep` with the same config" if not left else "")
        )
        return 0
    export_to = None if a.no_export else resolve_path(a.export_dir or f"artifacts/{cfg.name}")
    run_local(cfg, teacher_path=a.teacher, only=a.trial, device=a.device, export_to=export_to, force=a.force)
    return 0


def _cache(a) -> int:
    from orchestrator.sweep.prepare import prepare_data, uses_teacher

    cfg = _load_sweep_config(a)
    if not uses_teacher(cfg) or cfg.teacher.mode not in ("views", "clean"):
        raise UserError(
            f"{a.config}: nothing to cache (teacher.mode {cfg.teacher.mode!r}, losses "
            f"{sorted(cfg.losses())}); the cache serves teacher.mode views or clean"
        )
    from orchestrator.sweep.local import resolve_device

    device = resolve_device(a.device)
    _, facts = prepare_data(cfg, a.teacher, device=device)
    c = facts.cache
    how = "cache hit" if c["hit"] else f"built in {c['build_s']:.1f} s on {device}"
    print(
        f"{c['path']}: {c['n_images']} images x {c['n_views']} views, {how}, "
        f"{facts.teacher_forwards:,} teacher forwards now"
    )
    return 0


def _export(a) -> int:
    from orchestrator.release.export import export
    from orchestrator.run.rundir import Run

    run = Run(a.run)  # a local directory, or shared storage (its records and checkpoints fetched here)
    export(
        run.fetch(checkpoints=True),
        Path(a.out or f"artifacts/{run.name}"),
        data_dir=a.data_dir,
        budget=a.budget,
        force=a.force,
        trial=a.trial,
        source=None if run.is_local else run.path,
        tta=a.tta,
    )
    return 0


def _demo(a) -> int:
    from orchestrator.release.demo import HOST, serve

    print(f"kdsweep demo: http://{HOST}:{a.port} (this machine only; Ctrl-C stops it)")
    serve(a.model, a.teacher or None, a.port, a.data_dir)
    return 0


def _release(a) -> int:
    from orchestrator.release.promote import release_student, release_teacher

    if a.what == "student":
        release_student(Path(a.source))
    else:
        if not a.name:
            raise UserError("kdsweep release teacher needs --name (the release's file name, e.g. resnet50_x56)")
        release_teacher(Path(a.source), a.name)
    return 0


def _results(a) -> int:
    import json

    import pandas as pd

    from orchestrator.release.front import front_lines, ledger_points
    from orchestrator.release.results import account_lines, search_account, table, trials
    from orchestrator.run.layout import CONFIG_FILE, META_FILE
    from orchestrator.run.rundir import Run

    run_dir = Run(a.run).fetch()
    df = table(run_dir)
    if df.empty:
        print(f"{a.run}: no trial has reported yet")
        return 0
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_rows", 500):
        print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    meta = json.loads((run_dir / META_FILE).read_text()) if (run_dir / META_FILE).is_file() else {}
    if "search" not in meta:  # a run under way has no meta record yet: its config says how it searches
        cfg = json.loads((run_dir / CONFIG_FILE).read_text()) if (run_dir / CONFIG_FILE).is_file() else {}
        meta = {**meta, "search": {"searcher": (cfg.get("sweep") or {}).get("searcher", "random")}}
        if skipped := Run(run_dir).search_skipped:  # the run's record of it, read as the driver reads it
            meta["search"]["skipped"] = skipped
    for line in account_lines(search_account(trials(run_dir), meta)):
        print(line)
    cfg = json.loads((run_dir / CONFIG_FILE).read_text()) if (run_dir / CONFIG_FILE).is_file() else {}
    for line in front_lines(ledger_points(cfg)):  # a search kept in a ledger: every chunk's candidates
        print(line)
    return 0


def _report(a) -> int:
    """The report of an exported run: rebuilt from `out` when it holds the export, else export first."""
    import json

    import torch

    from orchestrator.release.deploy import deployable
    from orchestrator.release.export import export
    from orchestrator.release.report import write_report
    from orchestrator.run.layout import META_FILE
    from orchestrator.run.rundir import Run

    r = Run(a.run)
    out = Path(a.out or f"artifacts/{r.name}")
    run = r.fetch(checkpoints=not (out / "metrics.json").is_file())
    if not (out / "metrics.json").is_file():
        export(run, out, data_dir=a.data_dir)
    else:
        metrics = json.loads((out / "metrics.json").read_text())
        state = torch.load(out / "student.pt", map_location="cpu", weights_only=True)
        meta = run / META_FILE
        write_report(run, out, metrics, json.loads(meta.read_text()) if meta.is_file() else {}, model=deployable(state))
    print(f"wrote {out / 'report.md'} and {out / 'report.html'}")
    return 0


def _predict(a) -> int:
    from orchestrator.release.predict import classify

    for name, cls, p in classify(a.model, a.images):
        print(f"{name}\t{cls}\t{p:.3f}")
    return 0


def _teacher_restore(a) -> int:
    from orchestrator.teacher.history import restore

    print(f"restored {restore(a.name)} (sha256 checked against its release record)")
    return 0


def _teacher_eval(a) -> int:
    import json

    import torchinfo

    from orchestrator.data import load_split, load_test
    from orchestrator.teacher.model import accuracy, load_teacher, predict_logits

    model, info = load_teacher(a.checkpoint, a.mean, a.std)
    params = torchinfo.summary(
        model, input_size=(1, info.preprocess.channels, 28, 28), verbose=0, device="cpu"
    ).total_params
    s = load_split(a.data_dir, a.val_size, a.split_seed)
    val_acc = accuracy(predict_logits(model, s.val_x, info.preprocess), s.val_y)
    tx, ty = load_test(a.data_dir)
    test_acc = accuracy(predict_logits(model, tx, info.preprocess), ty)
    from orchestrator.teacher.model import sidecar_path

    side = sidecar_path(a.checkpoint)
    trained = json.loads(side.read_text()) if side.is_file() else {}
    res = dict(
        checkpoint=str(a.checkpoint),
        arch=info.arch,
        params=params,
        val_acc=val_acc,
        test_acc=test_acc,
        val_images=len(s.val_x),
        test_images=len(tx),
        sha256=info.sha256,
        preprocess=info.preprocess.__dict__,
        **{
            k: trained[k]
            for k in ("best_epoch", "epochs", "wall_s", "machine", "trained_with", "recipe")
            if k in trained
        },
    )
    print(
        f"{info.arch}: {params:,} parameters (torchinfo); val_acc {val_acc:.4f} "
        f"({len(s.val_x)} images, split seed {a.split_seed}); test_acc {test_acc:.4f} ({len(tx)} images)"
    )
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


def _config_args(parser, config: str):
    """What every command that reads a sweep config takes: the config, the teacher, the data, overrides."""
    parser.add_argument("--config", default=config)
    parser.add_argument("--teacher", default=None, help="teacher checkpoint (overrides teacher.checkpoint)")
    parser.add_argument("--teacher-mean", type=float, default=None, help="teacher input mean (no sidecar JSON)")
    parser.add_argument("--teacher-std", type=float, default=None, help="teacher input std (no sidecar JSON)")
    parser.add_argument("--data-dir", default=None, help="directory with the Fashion-MNIST IDX .gz files")
    parser.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. train.epochs=3"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kdsweep", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("teacher", help="train or evaluate the ResNet-50 teacher")
    tsub = t.add_subparsers(dest="teacher_cmd", required=True)
    tt = tsub.add_parser("train", help="train a teacher with Ray Train (resumes an interrupted run)")
    tt.add_argument("--config", default="configs/teacher.yaml")
    tt.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    tt.add_argument("--workers", type=int, default=None, help="Ray Train workers (DDP when > 1)")
    tt.add_argument("--gpu", action="store_true", help="one GPU per worker")
    tt.add_argument("--epochs", type=int, default=None, help="override optim.epochs")
    tt.add_argument("--run-dir", default=None, help="default runs/teacher/<name>")
    tt.add_argument(
        "--out",
        default=None,
        help="where the weights go (default artifacts/teacher/<name>.pt; "
        "models/teacher/ changes only through `kdsweep release teacher`)",
    )
    tt.add_argument("--no-ray", action="store_true", help="plain PyTorch in this process (no Ray needed)")
    tt.add_argument(
        "--chunk-minutes",
        type=float,
        default=None,
        help="with --no-ray: stop after the epoch that passes this many minutes; the same command "
        "goes on (a training of hours in chunks that fit a session)",
    )
    tt.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config key, e.g. data.train_limit=512 or preprocess.size=56",
    )
    tt.set_defaults(func=_teacher_train)
    te = tsub.add_parser("eval", help="validation and test accuracy and torchinfo parameter count of a teacher")
    te.add_argument("--checkpoint", default="models/teacher/resnet50.pt")
    te.add_argument("--mean", type=float, default=None, help="input mean (default: from the .json sidecar)")
    te.add_argument("--std", type=float, default=None, help="input std (default: from the .json sidecar)")
    te.add_argument("--data-dir", default=None)
    te.add_argument("--val-size", type=int, default=5000)
    te.add_argument("--split-seed", type=int, default=0)
    te.add_argument("--json", default=None, help="also write the results to this JSON file")
    te.set_defaults(func=_teacher_eval)
    tr = tsub.add_parser("restore", help="bring back a released teacher kept in git history (sha256-checked)")
    tr.add_argument("name", help="its release name, e.g. resnet50_x56")
    tr.set_defaults(func=_teacher_restore)

    s = sub.add_parser("students", help="registered students: torchinfo parameter counts, measured training speed")
    s.add_argument("--threads", type=int, default=1, help="torch threads for the speed measurement (one trial's CPU)")
    s.add_argument("--no-speed", action="store_true", help="skip the speed measurement (seconds per student)")
    s.set_defaults(func=_students)

    sw = sub.add_parser("sweep", help="run a distillation sweep on Ray Tune (ASHA), then export the best student")
    _config_args(sw, "configs/sweep.yaml")
    sw.add_argument("--address", default=None, help="Ray cluster to join ('auto', ray://...); default: local Ray")
    sw.add_argument("--no-export", action="store_true", help="skip exporting the best trial")
    sw.add_argument("--export-dir", default=None, help="default artifacts/<name>")
    _tta_arg(sw)
    sw.add_argument(
        "--release",
        action="store_true",
        help="then release the export as models/student (refused unless better on validation)",
    )
    sw.add_argument(
        "--dashboard", action="store_true", help="start the local Ray with its dashboard on 127.0.0.1 and print its URL"
    )
    sw.add_argument(
        "--force",
        action="store_true",
        help="start a finished or different run of this name over; replace another run's export",
    )
    sw.set_defaults(func=_sweep)

    tr = sub.add_parser(
        "train",
        help="train a config's trials in this process, without Ray (e.g. on a GPU "
        "machine), in the layout export/results/report read; with sweep.ledger, a search's candidates",
    )
    _config_args(tr, "configs/release.yaml")
    tr.add_argument(
        "--trial",
        type=int,
        action="append",
        metavar="K",
        help="train only trial K of the config's trials list (repeatable; one process per GPU share)",
    )
    tr.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when PyTorch sees a GPU)")
    tr.add_argument("--threads", type=int, default=None, help="torch CPU threads (default sweep.cpus_per_trial)")
    tr.add_argument("--no-export", action="store_true", help="skip exporting the best trial when the run ends")
    tr.add_argument("--export-dir", default=None, help="default artifacts/<name>")
    tr.add_argument("--force", action="store_true", help="start the run over (without --trial)")
    tr.add_argument(
        "--minutes",
        type=float,
        default=0,
        help="a search kept in a ledger (sweep.ledger): start no candidate after this long (0: no limit)",
    )
    tr.set_defaults(func=_train)

    ca = sub.add_parser(
        "cache",
        help="build a config's teacher-logits cache now (e.g. on a GPU machine), for the sweeps that use it later",
    )
    _config_args(ca, "configs/sweep.yaml")
    ca.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when PyTorch sees a GPU)")
    ca.set_defaults(func=_cache)

    e = sub.add_parser("export", help="export the best trial of a run: weights, .pt2, summary, metrics, CSV, report")
    e.add_argument("--run", required=True, help="the run directory, runs/<name>")
    e.add_argument("--out", default=None, help="default artifacts/<name>")
    e.add_argument("--data-dir", default=None)
    e.add_argument("--budget", type=int, default=100_000)
    e.add_argument("--force", action="store_true", help="replace an export of another run in --out")
    e.add_argument(
        "--trial",
        default=None,
        help="export this trial's best checkpoint (a substring of its "
        "directory name, e.g. 00001 or starter_model_2) instead of the run's best",
    )
    _tta_arg(e)
    e.set_defaults(func=_export)

    r = sub.add_parser("results", help="the trials table of a run (running or finished), without Ray")
    r.add_argument("run", help="the run directory, runs/<name>")
    r.set_defaults(func=_results)

    rp = sub.add_parser("report", help="report.md + report.html (plots, method, summary) of an exported run")
    rp.add_argument("--run", required=True, help="the run directory, runs/<name>")
    rp.add_argument("--out", default=None, help="the export directory (default artifacts/<name>); exported if empty")
    rp.add_argument("--data-dir", default=None)
    rp.set_defaults(func=_report)

    pr = sub.add_parser("predict", help="classify PNG/JPEG images or an IDX file with an exported student")
    pr.add_argument("--model", default="models/student/student.pt2", help="student.pt2 or student.onnx")
    pr.add_argument("images", nargs="+", help="image files (any size, colour or grayscale) or IDX files")
    pr.set_defaults(func=_predict)
    dm = sub.add_parser(
        "demo", help="the student in a browser page on 127.0.0.1 (Gradio): drop a photo, see its classes"
    )
    dm.add_argument("--model", default="models/student/student.pt2", help="an exported student.pt2")
    dm.add_argument(
        "--teacher",
        default="models/teacher/resnet50.pt",
        help="a teacher checkpoint (with its JSON sidecar) shown beside the student; '' for none",
    )
    dm.add_argument("--port", type=int, default=7860)
    dm.add_argument("--data-dir", default=None, help="directory with the Fashion-MNIST IDX .gz files")
    dm.set_defaults(func=_demo)
    rl = sub.add_parser(
        "release",
        help="replace the released student or teacher (models/) by a candidate, only if a paired test calls it better",
    )
    rl.add_argument("what", choices=["student", "teacher"])
    rl.add_argument(
        "--from",
        dest="source",
        required=True,
        help="student: an export directory (artifacts/<name>); teacher: its weights (.pt + .json)",
    )
    rl.add_argument("--name", default=None, help="teacher: the release's name in models/teacher/ (e.g. resnet50)")
    rl.set_defaults(func=_release)
    return p


def main(argv=None) -> int:
    started = time.time()  # a sweep's budget counts from here: torch's and Ray's imports are part of it
    a = build_parser().parse_args(argv)
    a.started = started
    import shlex

    from orchestrator import logs
    from orchestrator.config import ConfigError

    logs.setup()
    logs.COMMAND = shlex.join(["kdsweep", *(sys.argv[1:] if argv is None else argv)])
    from orchestrator.sweep.driver import Interrupted

    try:
        return a.func(a)
    except ConfigError as e:
        print(f"kdsweep: config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kdsweep: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (FileNotFoundError, FileExistsError) as e:  # a missing run, model, data or checkpoint: the message says so
        print(f"kdsweep: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:  # the message says to rerun
        print(f"kdsweep: {e}", file=sys.stderr)
        return 130
    except UserError as e:  # a config, budget, argument or file the user can fix: the message says how
        print(f"kdsweep: {e}", file=sys.stderr)
        return 2
    finally:
        logs.COMMAND = None  # a program that calls main() goes on as a library
