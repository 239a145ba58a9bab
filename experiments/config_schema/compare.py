"""Would pydantic v2 make orchestrator/config.py smaller at equal messages? The same frozen dataclasses
validated by pydantic's TypeAdapter (extra keys forbidden, strict types as the hand-written loader's, the
__post_init__ checks unchanged), against the hand-written loader (`_convert` + `from_dict`), on every bad
config the tests refuse plus a few more. Prints and writes both messages side by side.

    .venv/bin/python experiments/config_schema/compare.py [--out experiments/config_schema/messages.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import pydantic  # noqa: E402

from orchestrator.config import SweepConfig  # noqa: E402
from orchestrator.loader import ConfigError, apply_overrides, from_dict, load_yaml  # noqa: E402

BAD = [  # (the raw config, or overrides of configs/sweep.yaml)
    {"name": "x", "trian": {}},
    {"name": "x", "train": {"lerning_rate": 0.1}},
    {"name": "x", "train": {"lr": "fast"}},
    {"name": "x", "train": {"epochs": 2.5}},
    {"name": "x", "train": {"epochs": True}},
    {"name": "x", "train": {"epochs": 0}},
    {"name": "x", "train": {"loss": "kdd"}},
    {"name": "x", "search_space": {"lr": {"loguniform": [0, 1]}}},
    {"name": "x", "search_space": {"colour": {"choice": [1]}}},
    {"name": "x", "search_space": {"loss": {"grid": ["kd", "hinton"]}}},
    {"name": "x", "sweep": {"reduction_factor": 1}},
    {"name": "x", "sweep": {"gpus_per_trial": "all"}},
    {"name": "x", "sweep": {"gpus_per_trial": -1}},
    {"name": "x", "teacher": "models/teacher/resnet50.pt"},
    {"train": {}},
    {"sweep.grace_period": 99},
    {"trials": [{"student": "resnet_huge"}]},
    {"final.epochs": 0, "final.minutes": 25},
]
GOOD = [{"train.lr": "1e-2"}, {"train.lr": 1}]  # YAML 1.1 reads 1e-2 as a string; an int where a float goes


def _forbid_extra(cls):
    """Pydantic reads a stdlib dataclass's `__pydantic_config__`: unknown keys refused (lax types: strict mode on a dataclass demands an instance of it)."""
    if dataclasses.is_dataclass(cls) and "__pydantic_config__" not in vars(cls):
        cls.__pydantic_config__ = pydantic.ConfigDict(extra="forbid")
        for f in dataclasses.fields(cls):
            for t in (f.type if isinstance(f.type, type) else None, *getattr(f.type, "__args__", ())):
                if isinstance(t, type):
                    _forbid_extra(t)


def pydantic_load(raw: dict):
    """The whole pydantic loader: one adapter, one line of message per first error."""
    import typing

    for t in typing.get_type_hints(SweepConfig).values():
        _forbid_extra(t if isinstance(t, type) else type(None))
    _forbid_extra(SweepConfig)
    try:
        return pydantic.TypeAdapter(SweepConfig).validate_python(raw)
    except pydantic.ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"{'.'.join(map(str, err['loc'])) or '<root>'}: {err['msg']}") from None


def raw_of(case: dict) -> dict:
    if "name" in case or "train" in case and "." not in "".join(case):
        return case
    return apply_overrides(load_yaml(ROOT / "configs" / "sweep.yaml"), case)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out")
    args = p.parse_args()
    rows = []
    for case in BAD + GOOD:
        row = {"input": case}
        for name, load in (("hand", lambda r: from_dict(SweepConfig, r)), ("pydantic", pydantic_load)):
            try:
                load(json.loads(json.dumps(raw_of(case))))
                row[name] = "accepted"
            except ConfigError as e:
                row[name] = str(e)
            except Exception as e:  # noqa: BLE001 -- what escapes the loader is part of the measurement
                row[name] = f"ESCAPED {type(e).__name__}: {e}"
        rows.append(row)
        print(json.dumps(case), "\n   hand:    ", row["hand"][:200], "\n   pydantic:", row["pydantic"][:200])
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
