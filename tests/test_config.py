import sys

import pytest

from orchestrator.config import ConfigError, SweepConfig, from_dict, load_sweep_config, to_dict
from orchestrator.teacher.config import TeacherTrainConfig, load_teacher_config
from tests.conftest import ROOT

TEACHER_CONFIGS = sorted(p.stem for p in (ROOT / "configs").glob("teacher*.yaml"))
SWEEP_CONFIGS = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml") if p.stem not in TEACHER_CONFIGS)


def test_configs_hold_what_a_user_runs():
    """configs/ is the product's: a handful of files, each saying in its first line what it is for; an
    experiment's config lives in experiments/<name>/ with its record."""
    files = sorted((ROOT / "configs").glob("*.yaml"))
    assert {"smoke", "sweep", "full", "release"} <= set(SWEEP_CONFIGS)
    assert {"teacher", "teacher_ta"} <= set(TEACHER_CONFIGS)
    assert len(files) <= 8
    for f in files:
        first = f.read_text().splitlines()[0]
        assert first.startswith("# ") and len(first) > 20, f"{f.name}: the first line says what it is for"
        assert "--force" not in f.read_text(), f"{f.name}: a release changes only through `kdsweep release`"


@pytest.mark.parametrize("name", SWEEP_CONFIGS)
def test_shipped_sweep_configs_load(name):
    cfg = load_sweep_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg.students()
    assert all((ROOT / m).is_file() for m in cfg.teacher.ensemble)  # its members ship with it
    assert cfg.augment.shift == 2 or name == "smoke"  # the code's default (2) and the shipped configs agree


@pytest.mark.parametrize("name", TEACHER_CONFIGS)
def test_teacher_configs_load(name):
    cfg = load_teacher_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg.arch == ("cifar_resnet20" if name == "teacher_ta" else "resnet50") and cfg.data.val_size == 5000


def test_a_config_builds_on_its_base(tmp_path):
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "base.yaml").write_text(
        "name: base\ntrain: {epochs: 75, lr: 0.1, erase: 0.5}\ntrials:\n  - {loss: kd}\n  - {loss: ce}\n"
        "sweep: {max_concurrent_trials: 2, grace_period: 75}\n"
    )
    (tmp_path / "long.yaml").write_text(
        "base: common/base.yaml\nname: long\ntrain: {epochs: 120}\ntrials: []\nsweep: {grace_period: 120}\n"
    )
    cfg = load_sweep_config(tmp_path / "long.yaml", {"train.lr": 0.2})
    assert cfg.name == "long" and cfg.train.epochs == 120 and cfg.sweep.grace_period == 120
    assert cfg.train.erase == 0.5 and cfg.sweep.max_concurrent_trials == 2  # mappings merge key by key
    assert cfg.train.lr == 0.2  # --set applies on top
    assert list(cfg.trials) == []  # a list is replaced, not extended
    (tmp_path / "a.yaml").write_text("base: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nname: b\n")
    with pytest.raises(ConfigError, match="leads back to itself"):
        load_sweep_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: nowhere.yaml\nname: c\n")
    with pytest.raises(ConfigError, match=r"nowhere.yaml not found \(the base of .*c.yaml\)"):
        load_sweep_config(tmp_path / "c.yaml")


@pytest.mark.parametrize(
    "raw, match",
    [
        ({"name": "x", "trian": {}}, "unknown key trian"),
        ({"name": "x", "train": {"lerning_rate": 0.1}}, "unknown key train.lerning_rate"),
        ({"name": "x", "train": {"lr": "fast"}}, "train.lr: expected float"),
        ({"name": "x", "train": {"epochs": 0}}, "epochs must be >= 1"),
        ({"name": "x", "train": {"loss": "kdd"}}, "train.loss: 'kdd' is not allowed"),
        ({"name": "x", "search_space": {"lr": {"loguniform": [0, 1]}}}, "bounds must be > 0"),
        ({"name": "x", "search_space": {"lr": {"between": [0, 1]}}}, "write exactly one of"),
        ({"name": "x", "search_space": {"colour": {"choice": [1]}}}, "not a train key"),
        ({"name": "x", "search_space": {"loss": {"grid": ["kd", "hinton"]}}}, "value 'hinton' is invalid"),
        ({"name": "x", "sweep": {"reduction_factor": 1}}, "reduction_factor must be >= 2"),
        ({"name": "x", "sweep": {"gpus_per_trial": "all"}}, "sweep.gpus_per_trial: 'all' matches none of"),
        ({"name": "x", "sweep": {"gpus_per_trial": -1}}, "gpus_per_trial must be >= 0 or auto"),
        ({"train": {}}, "missing key name"),
    ],
)
def test_bad_configs_name_the_key(raw, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(SweepConfig, raw)


def test_overrides_and_types():
    cfg = load_sweep_config(ROOT / "configs" / "smoke.yaml", {"train.epochs": 3, "train.lr": "1e-2"})
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.01
    with pytest.raises(ConfigError, match="expected int"):
        from_dict(TeacherTrainConfig, {"optim": {"epochs": 2.5}})


@pytest.mark.parametrize("uri", [False, True], ids=["local", "uri"])
def test_run_dir_refuses_another_config(tmp_path, uri):
    """The claim holds on a local disk and on shared storage (a file:// URI goes through pyarrow's
    filesystem, the code path of s3://)."""
    import dataclasses

    from orchestrator.run.rundir import Run

    cfg = load_sweep_config(ROOT / "configs" / "smoke.yaml")
    teacher = dict(path="/t.pt", sha256="ab")
    run = Run(f"file://{tmp_path}/r" if uri else str(tmp_path / "r"))
    assert run.is_local is not uri
    run.claim(cfg, teacher)
    other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=9))
    run.claim(other, teacher)  # no trial ran yet: a corrected config takes the name over
    (tmp_path / "r" / "trial_0").mkdir()
    (tmp_path / "r" / "trial_0" / "result.json").write_text("{}\n")
    run.claim(other, teacher)  # the same computation: resuming is fine
    with pytest.raises(ValueError, match=r"computed something else \(differs in train\)"):
        run.claim(cfg, teacher)
    with pytest.raises(ValueError, match=r"differs in the teacher: /t.pt -> /u.pt"):
        run.claim(other, dict(path="/u.pt", sha256="cd"))
    run.claim(other, dict(path="/moved/t.pt", sha256="ab"))  # the same bytes at another path: the same teacher
    member = dict(path="/m.pt", sha256="ee")
    with pytest.raises(ValueError, match="differs in the teacher"):  # an ensemble member is part of it
        run.claim(other, dict(path="/moved/t.pt", sha256="ab", ensemble=[member]))
    # a run whose trials are all in its final stage (kdsweep train; a skipped search) holds its claim too
    final = Run(f"file://{tmp_path}/f" if uri else str(tmp_path / "f"))
    final.claim(cfg, teacher)
    final.write_final_base({"epochs": 3})
    with pytest.raises(ValueError, match=r"computed something else \(differs in train\)"):
        final.claim(other, teacher)
    # where trials find GPUs (auto, resolved per cluster; older claims hold a number) is not what they compute
    gpus = dataclasses.replace(cfg, sweep=dataclasses.replace(cfg.sweep, gpus_per_trial=0.0))
    final.claim(gpus, teacher)


def test_a_run_on_shared_storage_reads_writes_and_fetches_its_records(tmp_path):
    """Run is the one place that tells a local directory from a URI: records written through it land
    whole, the finished marker is seen, `fetch` copies the records (and checkpoints when asked) for the
    readers, and `remove` deletes it."""
    import pandas as pd

    from orchestrator.run.layout import CKPT_FILE, META_FILE, RESULTS_FILE
    from orchestrator.run.rundir import Run

    run = Run(f"file://{tmp_path}/store/r1")
    assert not run.finished and run.read_json(META_FILE) == {} and run.final_base == {}
    run.write_final_base({"epochs": 7})
    run.write_results(pd.DataFrame({"trial_id": ["a"], "val_acc": [0.5]}))
    (tmp_path / "store" / "r1" / "t0" / "checkpoint_000001").mkdir(parents=True)
    (tmp_path / "store" / "r1" / "t0" / "result.json").write_text('{"epoch": 1}\n')
    (tmp_path / "store" / "r1" / "t0" / "checkpoint_000001" / CKPT_FILE).write_bytes(b"w")
    run.finish({"wall_s": 1.0})
    assert run.finished and run.meta == {"wall_s": 1.0} and run.final_base == {"epochs": 7}
    assert run.storage == f"file://{tmp_path}/store"
    assert "t0/result.json" in run.listing() and "t0/result.json" not in run.listing(depth=1)
    local = run.fetch(tmp_path / "copy")
    assert (local / RESULTS_FILE).is_file() and (local / "t0" / "result.json").is_file()
    assert not (local / "t0" / "checkpoint_000001").exists()  # records only, unless asked
    (local / "t9").mkdir()
    (local / "t9" / "result.json").write_text("{}")  # left by an earlier run of r1
    assert not (run.fetch(tmp_path / "copy") / "t9" / "result.json").exists()  # the copy mirrors the store
    copy2 = run.fetch(tmp_path / "copy2", checkpoints=True)
    assert (copy2 / "t0" / "checkpoint_000001" / CKPT_FILE).read_bytes() == b"w"
    assert not list((tmp_path / "store" / "r1").glob(".*tmp*"))  # nothing half-written left behind
    run.remove()
    assert not (tmp_path / "store" / "r1").exists() and not run.exists("")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"sweep.grace_period": 99}, r"sweep.grace_period \(99\) exceeds train.epochs"),
        ({"trials": [{"student": "resnet_huge"}]}, r"unknown student 'resnet_huge'; registered students: .*res3"),
        ({"search_space": {"student": {"choice": ["starter_model_1", "nope"]}}}, "unknown student 'nope'"),
        ({"final.seeds": 0}, "seeds must be >= 1"),
        ({"final.top": 0}, "top must be >= 1"),
        ({"final.minutes": -1}, "minutes must be >= 0"),
        ({"final.epochs": 0, "final.minutes": 25}, r"minutes needs final.epochs > 0 \(the cap"),
        ({"train.erase": 1.5}, "erase must be a probability"),
        ({"train.ema": 1.0}, r"ema must be in \[0, 1\)"),
        ({"train.kd_warmup": 50}, "kd_warmup must be in 0..epochs"),
        ({"grow.search_space": {"lr": {"choice": [0.1]}}, "minutes": 0}, "grow needs minutes > 0"),
        ({"grow.search_space": {"student": {"choice": ["starter_model_1"]}}}, "search students with search_space"),
        ({"grow.search_space": {"lrr": {"choice": [0.1]}}}, r"grow.search_space.lrr: not a train key; allowed"),
        ({"grow.search_space": {"alpha": {"choice": [2.0]}}}, r"grow.search_space.alpha: value 2.0 is invalid"),
        ({"grow.min_candidates": 1}, "need 2 <= min_candidates <= max_candidates"),
    ],
)
def test_configs_that_cannot_work_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep_config(ROOT / "configs" / "sweep.yaml", overrides)


def test_cli_diagnoses_in_one_line(tmp_path, capsys):
    """Bad inputs end with exit status 2 and one line that says what to do, never a traceback."""
    from orchestrator.cli import main

    assert main(["export", "--run", str(tmp_path)]) == 2
    assert "not a kdsweep run directory" in capsys.readouterr().err
    (tmp_path / "kdsweep_config.json").write_text("{}")  # a run that has no checkpoint yet
    assert main(["export", "--run", str(tmp_path)]) == 2
    assert "no checkpoint.pt under" in capsys.readouterr().err
    (tmp_path / "kdsweep_config.json").unlink()
    assert main(["results", str(tmp_path)]) == 2
    assert "not a kdsweep run directory" in capsys.readouterr().err
    assert main(["sweep", "--config", str(ROOT / "configs" / "sweep.yaml"), "--set", "trials=[{student: nope}]"]) == 2
    assert "unknown student 'nope'" in capsys.readouterr().err
    assert main(["sweep", "--config", str(ROOT / "configs" / "search.yaml"), "--no-export", "--release"]) == 2
    assert "--release releases the run's export: drop --no-export" in capsys.readouterr().err
    assert (
        main(["sweep", "--config", str(ROOT / "configs" / "sweep.yaml"), "--teacher", str(tmp_path / "missing.pt")])
        == 2
    )
    err = capsys.readouterr().err
    assert "teacher checkpoint" in err and "not found" in err and "Traceback" not in err
    assert main(["predict", "--model", str(tmp_path / "none.pt2"), str(tmp_path / "x.png")]) == 2
    (tmp_path / "shirt.png").write_text("not an image")  # both wrong: the model, written first, is said
    assert main(["predict", "--model", str(tmp_path / "none.onnx"), str(tmp_path / "shirt.png")]) == 2
    err = capsys.readouterr().err
    assert "--model" in err and "none.onnx: no such model" in err and "shirt.png" not in err


@pytest.mark.parametrize(
    "argv, says",
    [
        (["sweep", "--config", "{m}/c.yaml"], "config file {m}/c.yaml not found"),
        (["train", "--config", "{m}/c.yaml"], "config file {m}/c.yaml not found"),
        (["cache", "--config", "{m}/c.yaml"], "config file {m}/c.yaml not found"),
        (["teacher", "train", "--config", "{m}/t.yaml"], "config file {m}/t.yaml not found"),
        (["teacher", "eval", "--checkpoint", "{m}/t.pt"], "teacher checkpoint {m}/t.pt not found"),
        (["teacher", "restore", "nope"], "no teacher 'nope' is kept in git history"),
        (["export", "--run", "{m}/run"], "{m}/run is not a kdsweep run directory"),
        (["report", "--run", "{m}/run"], "{m}/run is not a kdsweep run directory"),
        (["results", "{m}/run"], "{m}/run is not a kdsweep run directory"),
        (["release", "student", "--from", "{m}/art"], "{m}/art is not an export"),
        (["predict", "--model", "{m}/s.pt2", "{m}/x.png"], "--model {m}/s.pt2: no such model"),
    ],
)
def test_every_command_names_its_first_missing_argument(tmp_path, capsys, argv, says):
    """Each command checks its own arguments first, in the order they are written: exit 2 and one line."""
    from orchestrator.cli import main

    m = str(tmp_path / "missing")
    assert main([a.format(m=m) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert says.format(m=m) in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_an_override_no_trial_sees_is_said(capsys):
    from orchestrator.cli import build_parser
    from orchestrator.commands import sweep_config

    a = build_parser().parse_args(
        [
            "sweep",
            "--config",
            str(ROOT / "configs" / "sweep.yaml"),
            "--set",
            "train.loss=dkd",
            "--set",
            "train.epochs=3",
        ]
    )
    cfg = sweep_config(a)
    err = capsys.readouterr().err
    assert cfg.train.loss == "dkd" and "--set train.loss has no effect: every one of the config's trials" in err
    assert "train.epochs" not in err  # the trials do not set it: it applies


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only a UserError is a one-line diagnosis; a ValueError from inside the code is a bug and propagates."""
    import orchestrator.cli as cli
    from orchestrator.errors import UserError

    def buggy(a):
        raise ValueError("an internal invariant broke")

    parser = cli.build_parser()
    parser._subparsers._group_actions[0].choices["results"].set_defaults(func=buggy)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    with pytest.raises(ValueError, match="internal invariant"):
        cli.main(["results", "runs/x"])
    from orchestrator.config import ConfigError
    from orchestrator.release.predict import NotAnImageError
    from orchestrator.sweep.prepare import BudgetError

    assert all(issubclass(e, UserError) for e in (ConfigError, NotAnImageError, BudgetError))


def test_interrupted_sweep_is_not_finished():
    """Tune returns normally after Ctrl-C: a run with trials neither finished nor failed is not complete."""
    from orchestrator.sweep.tune_run import Interrupted, check_complete

    class Grid(list):
        def __init__(self, terminated, errors, n):
            super().__init__(range(n))
            self.num_terminated, self.num_errors = terminated, errors

    check_complete(Grid(3, 1, 4), "x", "runs/x")
    with pytest.raises(Interrupted, match="run the same command again"):
        check_complete(Grid(2, 1, 4), "x", "runs/x")
    with pytest.raises(Interrupted):  # stopped before the searcher had made all its trials
        check_complete(Grid(2, 0, 2), "x", "runs/x", expected=6)


def test_claims_of_an_older_schema_still_match(tmp_path):
    """A run claimed before new train keys existed (their defaults) and before teacher records resumes."""
    import json as _json

    from orchestrator.run.layout import CONFIG_FILE
    from orchestrator.run.rundir import Run

    cfg = load_sweep_config(ROOT / "configs" / "smoke.yaml")
    old = _json.loads(_json.dumps(to_dict(cfg), default=str))
    for key in ("prune_from", "prune_importance", "prune_steps", "prune_to", "ema", "erase"):
        old["train"].pop(key)  # what an older kdsweep wrote
    (tmp_path / CONFIG_FILE).write_text(_json.dumps(old))
    (tmp_path / "t0").mkdir()
    (tmp_path / "t0" / "result.json").write_text("{}\n")
    Run(str(tmp_path)).claim(cfg, dict(path="/t.pt", sha256="ab"))  # accepted
    old["train"]["epochs"] = 77
    (tmp_path / CONFIG_FILE).write_text(_json.dumps(old))
    with pytest.raises(ValueError, match="differs in train"):
        Run(str(tmp_path)).claim(cfg, dict(path="/t.pt", sha256="ab"))
    # the default's run claimed before `grow` existed resumes under today's default, which has a grow space
    default = load_sweep_config(ROOT / "configs" / "sweep.yaml")
    old = _json.loads(_json.dumps(to_dict(default), default=str))
    old.pop("grow")
    (tmp_path / CONFIG_FILE).write_text(_json.dumps(old))
    Run(str(tmp_path)).claim(default, dict(path="/t.pt", sha256="ab"))  # accepted
    old["grow"] = {"search_space": {"lr": {"choice": [0.1]}}}  # a claim that has one compares it
    (tmp_path / CONFIG_FILE).write_text(_json.dumps(old))
    with pytest.raises(ValueError, match="differs in grow"):
        Run(str(tmp_path)).claim(default, dict(path="/t.pt", sha256="ab"))


def test_final_epochs_fit_the_budget_at_the_searchs_speed():
    from orchestrator.sweep.final_budget import fit_final_epochs

    # two finalists side by side on two slots: an epoch of the stage takes the slower one's 40 s
    assert fit_final_epochs(40, 25, [35.0, 40.0], seeds=1, slots=2) == 37  # 1500 s // 40 s
    assert fit_final_epochs(40, 60, [35.0, 40.0], seeds=1, slots=2) == 40  # the cap binds
    # four trials (2 finalists x 2 seeds) queue on two slots: (35 + 40) * 2 / 2 = 75 s an epoch of the stage
    assert fit_final_epochs(40, 25, [35.0, 40.0], seeds=2, slots=2) == 20
    assert fit_final_epochs(40, 0.01, [35.0], seeds=1, slots=1) == 1  # never less than one epoch
    assert fit_final_epochs(40, 0.01, [35.0], seeds=1, slots=1, floor=12) == 12  # nor than final.min_epochs


def test_search_seconds_per_epoch_are_each_finalists_own():
    from types import SimpleNamespace

    import pandas as pd

    from orchestrator.sweep.stages import search_seconds_per_epoch
    from trainables.config import TrainConfig

    base = to_dict(load_sweep_config(ROOT / "configs" / "sweep.yaml").train)

    def trial(variant, elapsed):  # a search trial's history: elapsed_s after each epoch
        df = pd.DataFrame({"epoch": range(1, len(elapsed) + 1), "elapsed_s": elapsed, "val_acc": 0.5})
        return SimpleNamespace(metrics_dataframe=df, config={"_variant": variant})

    results = [
        trial({"loss": "kd"}, [30.0, 62.0]),
        trial({"loss": "kd"}, [34.0, 70.0, 102.0, 140.0]),
        trial({"loss": "dkd"}, [40.0, 84.0]),
        trial({"loss": "ce"}, [10.0]),
    ]
    finalists = [TrainConfig(**{**base, "loss": loss, "epochs": 40}) for loss in ("dkd", "kd")]
    assert search_seconds_per_epoch(results, base, finalists) == [42.0, 33.0]  # kd: the median of 31 and 35
    with pytest.raises(RuntimeError, match="no timed epoch of finalist .* lskd"):
        search_seconds_per_epoch(results, base, [TrainConfig(**{**base, "loss": "lskd", "epochs": 40})])


def test_a_reference_control_is_never_a_finalist():
    """final.control reference: the best distillation trials go on, even where the control tied or won the
    short search; with only no-teacher trials, they do."""
    from types import SimpleNamespace

    import pandas as pd

    from orchestrator.sweep.stages import best_trial_configs

    base = to_dict(load_sweep_config(ROOT / "configs" / "sweep.yaml").train)

    def trial(loss, acc):
        return SimpleNamespace(
            metrics_dataframe=pd.DataFrame({"epoch": [1, 2], "val_acc": [0.5, acc]}),
            config={"_variant": {"loss": loss}},
        )

    results = [trial("kd", 0.888), trial("ce", 0.890)]
    assert [c.loss for c in best_trial_configs(results, base, 1)] == ["ce"]
    assert [c.loss for c in best_trial_configs(results, base, 1, control=False)] == ["kd"]
    assert [c.loss for c in best_trial_configs([trial("ce", 0.9)], base, 1, control=False)] == ["ce"]
    assert load_sweep_config(ROOT / "configs" / "sweep.yaml").final.control == "reference"


def test_gpus_auto_packs_the_cpu_slots_onto_the_gpus():
    """sweep.gpus_per_trial auto: nothing without GPUs; with them, each trial the CPUs can run at once gets
    an equal share, several to a GPU, never more than one GPU; a number is kept as it is."""
    from orchestrator.sweep.resources import gpu_share

    assert gpu_share({"CPU": 2}, 1) == 0.0
    assert gpu_share({"CPU": 16, "GPU": 1}, 1) == 0.0625  # 16 trials on the one GPU
    assert gpu_share({"CPU": 16, "GPU": 2}, 2) == 0.25  # 8 slots, 4 to each GPU
    assert gpu_share({"CPU": 6, "GPU": 2}, 1) == 0.3333  # Ray's resolution, rounded down
    assert gpu_share({"CPU": 2, "GPU": 4}, 1) == 1.0
    assert load_sweep_config(ROOT / "configs" / "sweep.yaml").sweep.gpus_per_trial == "auto"
    assert load_sweep_config(ROOT / "configs" / "smoke.yaml", {"sweep.gpus_per_trial": 0.5}).sweep.gpus_per_trial == 0.5


def test_a_search_space_domain_is_one_type():
    """orchestrator/space.Domain: the YAML form parsed once; what the plan counts and the preparation maps."""
    from orchestrator.space import Domain, grid_size, parse_space

    space = parse_space(
        {"lr": {"loguniform": ["1e-3", 0.1]}, "student": {"grid": ["a", "b", "c"]}, "loss": {"choice": ["kd", "ce"]}}
    )
    assert space["lr"] == Domain("lr", "loguniform", (1e-3, 0.1)) and space["lr"].sampled
    assert grid_size(space) == 3 and not space["student"].sampled
    assert space["student"].map(str.upper).to_yaml() == {"grid": ["A", "B", "C"]}
    assert space["lr"].map(str.upper) is space["lr"]  # a range has no listed values to rewrite
    for raw, says in [
        ({"uniform": [2, 1]}, "low < high"),
        ({"loguniform": [0, 1]}, "bounds must be > 0"),
        ({"choice": []}, "non-empty list"),
        ({"pick": [1]}, "write exactly one of"),
    ]:
        with pytest.raises(ValueError, match=says):
            Domain.parse("lr", raw)


def test_kdsweeps_messages_go_to_the_stdout_of_the_moment(monkeypatch):
    """The CLI's log handler writes to sys.stdout as it is when a message comes: a stream swapped since
    (a capture, a redirect; the first one closed) gets the message, and nothing writes to the closed one."""
    import io
    import logging

    from orchestrator import logs

    first = io.StringIO()
    monkeypatch.setattr(sys, "stdout", first)
    logs.setup()
    first.close()
    now = io.StringIO()
    monkeypatch.setattr(sys, "stdout", now)
    logging.getLogger("orchestrator.test").info("plan: said")
    assert now.getvalue() == "plan: said\n"


def test_the_sweeps_budget_counts_from_the_commands_start(monkeypatch):
    """`kdsweep sweep`'s budget clock starts when the command does, before its first work (the config's
    load; torch's and Ray's imports in a fresh process), not when the driver begins."""
    import time

    import orchestrator.cli as cli
    import orchestrator.commands as commands
    import orchestrator.sweep.driver as driver

    seen, load = {}, commands.sweep_config
    monkeypatch.setattr(commands, "sweep_config", lambda a: (seen.update(loading=time.time()), load(a))[1])
    monkeypatch.setattr(driver, "run_sweep", lambda cfg, **kw: seen.update(kw))
    before = time.time()
    assert cli.main(["sweep", "--config", str(ROOT / "configs" / "sweep.yaml"), "--no-export"]) == 0
    assert before <= seen["t_start"] <= seen["loading"]
