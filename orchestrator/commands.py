"""What each kdsweep command does: its arguments (parsed in cli.py) handed to the one function that does it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from orchestrator.errors import UserError


def set_overrides(items) -> dict:
    """--set KEY=VALUE items as {dotted key: YAML value}."""
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"kdsweep: --set takes KEY=VALUE (e.g. train.epochs=3), got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def teacher_train(a) -> int:
    from orchestrator.config import apply_overrides, from_dict, load_yaml
    from orchestrator.teacher.config import TeacherTrainConfig

    raw = apply_overrides(load_yaml(a.config), set_overrides(a.set))
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


def students(a) -> int:
    import torch

    from students import BUDGET, count_macs, count_params, create_student, deployed, list_students
    from trainables.speed import train_speed

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


def shadowed_overrides(cfg, keys) -> list[str]:
    """The `train.<key>` overrides among `keys` that no trial will see: every explicit trial sets that key, or
    the search space draws it (a --set that changes nothing, said rather than silently dropped)."""
    out = []
    for k in keys:
        head, _, key = k.partition(".")
        if head != "train" or not key:
            continue
        if key in cfg.search_space:
            out.append(f"--set {k} has no effect: search_space draws {key}; override search_space.{key} instead")
        elif cfg.trials and all(key in t for t in cfg.trials):
            out.append(
                f"--set {k} has no effect: every one of the config's trials sets {key}; override "
                f"trials instead (e.g. --set 'trials=[{{{key}: ...}}]')"
            )
    return out


def sweep_config(a):
    """The sweep config with the command line's overrides (--data-dir, --teacher-mean/std, --set)."""
    from orchestrator.config import load_sweep_config

    overrides = {}
    if a.data_dir:
        overrides["data.data_dir"] = a.data_dir
    if a.teacher_mean is not None:
        overrides["teacher.mean"] = a.teacher_mean
    if a.teacher_std is not None:
        overrides["teacher.std"] = a.teacher_std

    given = set_overrides(a.set)
    cfg = load_sweep_config(a.config, {**overrides, **given})
    for warning in shadowed_overrides(cfg, given):
        print(f"kdsweep: warning: {warning}", file=sys.stderr)
    return cfg


def sweep(a) -> int:
    from orchestrator.sweep.driver import run_sweep

    cfg = sweep_config(a)
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


def train(a) -> int:
    import torch

    from orchestrator.config import resolve_path
    from orchestrator.sweep.local import run_local

    cfg = sweep_config(a)
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


def cache(a) -> int:
    from orchestrator.sweep.prepare import prepare_data, uses_teacher

    cfg = sweep_config(a)
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


def export(a) -> int:
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


def demo(a) -> int:
    from orchestrator.release.demo import HOST, serve

    print(f"kdsweep demo: http://{HOST}:{a.port} (this machine only; Ctrl-C stops it)")
    serve(a.model, a.teacher or None, a.port, a.data_dir)
    return 0


def release(a) -> int:
    from orchestrator.release.promote import release_student, release_teacher

    if a.what == "student":
        release_student(Path(a.source))
    else:
        if not a.name:
            raise UserError("kdsweep release teacher needs --name (the release's file name, e.g. resnet50_x56)")
        release_teacher(Path(a.source), a.name)
    return 0


def results(a) -> int:
    from orchestrator.release.results import run_lines
    from orchestrator.run.rundir import Run

    print("\n".join(run_lines(Run(a.run).fetch())))
    return 0


def report(a) -> int:
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


def predict(a) -> int:
    from orchestrator.release.predict import classify

    for name, cls, p in classify(a.model, a.images):
        print(f"{name}\t{cls}\t{p:.3f}")
    return 0


def teacher_restore(a) -> int:
    from orchestrator.teacher.history import restore

    print(f"restored {restore(a.name)} (sha256 checked against its release record)")
    return 0


def teacher_eval(a) -> int:
    from orchestrator.teacher.model import evaluate_teacher

    res = evaluate_teacher(a.checkpoint, a.mean, a.std, a.data_dir, a.val_size, a.split_seed)
    print(
        f"{res['arch']}: {res['params']:,} parameters (torchinfo); val_acc {res['val_acc']:.4f} "
        f"({res['val_images']} images, split seed {a.split_seed}); test_acc {res['test_acc']:.4f} "
        f"({res['test_images']} images)"
    )
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0
