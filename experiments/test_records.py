"""The experiment records' configs: each loads (its `base:` chain included), and the protocols their figures
rely on hold (a seeds probe changes only the seed, an epochs probe only epochs and seed)."""
from pathlib import Path

import pytest
import yaml

from orchestrator.config import load_sweep_config, to_dict
from orchestrator.teacher.config import load_teacher_config
from orchestrator.teacher.history import IN_HISTORY

ROOT = Path(__file__).resolve().parent.parent
EXP = ROOT / "experiments"
CONFIGS = sorted(p.parent.name for p in EXP.glob("*/config.yaml"))
TEACHERS = [n for n in CONFIGS if n.startswith("teacher_")]


def test_every_experiment_has_its_record():
    assert len(CONFIGS) >= 10
    for d in EXP.iterdir():
        if d.is_dir() and not d.name.startswith((".", "_")):
            assert (d / "README.md").is_file(), f"experiments/{d.name}: no write-up (README.md)"


def test_no_record_builds_on_a_product_config():
    """A record's `base:` chain stays inside experiments/: a later edit of configs/ cannot change what it measured."""
    for f in EXP.rglob("*.yaml"):
        chain, path = [], f.resolve()
        while (base := (yaml.safe_load(path.read_text()) or {}).get("base")) and len(chain) < 10:
            path = (path.parent / base).resolve()
            chain.append(path)
        assert all(EXP in p.parents for p in chain), f"{f.relative_to(ROOT)} builds on {chain[-1]}: write it out whole"


@pytest.mark.parametrize("name", CONFIGS)
def test_experiment_configs_load(name):
    if name in TEACHERS:
        cfg = load_teacher_config(EXP / name / "config.yaml")
        assert not cfg.kd_from or (ROOT / cfg.kd_from).is_file(), f"kd_from {cfg.kd_from} is not in the tree"
    else:
        cfg = load_sweep_config(EXP / name / "config.yaml")
        kept = [m for m in cfg.teacher.ensemble if not (ROOT / m).is_file() and Path(m).stem not in IN_HISTORY]
        assert cfg.students() and not kept, f"ensemble members neither in the tree nor in git history: {kept}"


def test_release_seeds_changes_only_the_seed_of_the_released_trial():
    """Its figures are read as seed-to-seed spread of the released recipe: nothing else may differ."""
    rel = load_sweep_config(EXP / "release_res" / "config.yaml")  # the recipe the seeds measured
    seeds = load_sweep_config(EXP / "release_seeds" / "config.yaml")
    released = {**to_dict(rel.train), **rel.trials[0]}
    assert released["student"] == "res3_w16_32_76_s121" and released["seed"] == 0
    for t in seeds.trials:
        trial = {**to_dict(seeds.train), **t}
        assert {k for k in trial if trial[k] != released[k]} == {"seed"}
    assert sorted(t["seed"] for t in seeds.trials) == [1, 2]
    for part in ("data", "teacher", "augment"):
        assert to_dict(getattr(seeds, part)) == to_dict(getattr(rel, part))


@pytest.mark.parametrize("name", ["sweep_epochs", "sweep_seeds"])
def test_sweep_probes_vary_only_epochs_and_seed_of_the_default_sweeps_kd_finalist(name):
    """experiments/sweep_epochs/config.yaml chose sweep_v1's final.epochs (make sweep's until issue 23) and
    sweep_seeds measures its spread: their trials must be sweep_v1's KD setting, its final.epochs among them,
    nothing else changed."""
    default = load_sweep_config(EXP / "sweep_v1" / "config.yaml")
    probe = load_sweep_config(EXP / name / "config.yaml")
    kd = next(t for t in default.trials if t.get("loss") == "kd")
    finalist = {**to_dict(default.train), **kd, "epochs": default.final.epochs, "seed": 0}
    for t in probe.trials:
        trial = {**to_dict(probe.train), **t}
        assert {k for k in trial if trial[k] != finalist[k]} <= {"epochs", "seed"}
    assert default.final.epochs in {t["epochs"] for t in probe.trials}
    for part in ("data", "teacher", "augment"):
        assert to_dict(getattr(probe, part)) == to_dict(getattr(default, part))


def test_search_fidelity_configs_are_whole_and_vary_one_lever_group_a_trial():
    """search_fidelity's curves are read as 'this lever changed': its configs carry no `base:` (a product
    config edit cannot change them), share everything but the teacher, and train every trial to the end."""
    import yaml
    here = EXP / "search_fidelity"
    cfgs = {n: load_sweep_config(here / f"{n}.yaml") for n in ("r50", "r20")}
    for n, cfg in cfgs.items():
        assert "base" not in yaml.safe_load((here / f"{n}.yaml").read_text())
        assert cfg.train.epochs == 40 and cfg.train.ema > 0 and cfg.teacher.mode == "clean"
        assert all(set(t) <= {"seed", "loss", "alpha", "temperature", "label_smoothing", "beta", "kd_warmup", "lr",
                              "student"} for t in cfg.trials)
    a, b = (to_dict(c) for c in cfgs.values())
    assert {k for k in a if a[k] != b[k]} == {"name", "teacher", "trials"}
    assert {k for k in a["teacher"] if a["teacher"][k] != b["teacher"][k]} == {"checkpoint"}
