"""kdsweep command line (`kdsweep` == `python -m orchestrator`): the parser and the entry point; what each
command does is orchestrator/commands.py."""

from __future__ import annotations

import argparse
import sys
import time

from orchestrator import commands
from orchestrator.errors import UserError


def _tta_arg(p):
    p.add_argument(
        "--tta",
        choices=("config", "auto", "none"),
        default="config",
        help="the export's test-time views: as the trial's train.tta (config: the flip where it helped on "
        "validation), the best of none / flip / flip_shift (six views) measured on validation (auto), or none",
    )


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
    tt.set_defaults(func=commands.teacher_train)
    te = tsub.add_parser("eval", help="validation and test accuracy and torchinfo parameter count of a teacher")
    te.add_argument("--checkpoint", default="models/teacher/resnet50.pt")
    te.add_argument("--mean", type=float, default=None, help="input mean (default: from the .json sidecar)")
    te.add_argument("--std", type=float, default=None, help="input std (default: from the .json sidecar)")
    te.add_argument("--data-dir", default=None)
    te.add_argument("--val-size", type=int, default=5000)
    te.add_argument("--split-seed", type=int, default=0)
    te.add_argument("--json", default=None, help="also write the results to this JSON file")
    te.set_defaults(func=commands.teacher_eval)
    tr = tsub.add_parser("restore", help="bring back a released teacher kept in git history (sha256-checked)")
    tr.add_argument("name", help="its release name, e.g. resnet50_x56")
    tr.set_defaults(func=commands.teacher_restore)

    s = sub.add_parser("students", help="registered students: torchinfo parameter counts, measured training speed")
    s.add_argument("--threads", type=int, default=1, help="torch threads for the speed measurement (one trial's CPU)")
    s.add_argument("--no-speed", action="store_true", help="skip the speed measurement (seconds per student)")
    s.set_defaults(func=commands.students)

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
    sw.set_defaults(func=commands.sweep)

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
    tr.set_defaults(func=commands.train)

    ca = sub.add_parser(
        "cache",
        help="build a config's teacher-logits cache now (e.g. on a GPU machine), for the sweeps that use it later",
    )
    _config_args(ca, "configs/sweep.yaml")
    ca.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when PyTorch sees a GPU)")
    ca.set_defaults(func=commands.cache)

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
    e.set_defaults(func=commands.export)

    r = sub.add_parser("results", help="the trials table of a run (running or finished), without Ray")
    r.add_argument("run", help="the run directory, runs/<name>")
    r.set_defaults(func=commands.results)

    rp = sub.add_parser("report", help="report.md + report.html (plots, method, summary) of an exported run")
    rp.add_argument("--run", required=True, help="the run directory, runs/<name>")
    rp.add_argument("--out", default=None, help="the export directory (default artifacts/<name>); exported if empty")
    rp.add_argument("--data-dir", default=None)
    rp.set_defaults(func=commands.report)

    pr = sub.add_parser("predict", help="classify PNG/JPEG images or an IDX file with an exported student")
    pr.add_argument("--model", default="models/student/student.pt2", help="student.pt2 or student.onnx")
    pr.add_argument("images", nargs="+", help="image files (any size, colour or grayscale) or IDX files")
    pr.set_defaults(func=commands.predict)
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
    dm.set_defaults(func=commands.demo)
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
    rl.set_defaults(func=commands.release)
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
    from orchestrator.sweep.tune_run import Interrupted

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
