"""docs/config.md is the schema's own reference: regenerated, it is the committed file, and every key of
every config section is in it."""

import dataclasses

from orchestrator.config import SweepConfig
from orchestrator.config_doc import render
from orchestrator.teacher.config import TeacherTrainConfig
from tests.conftest import ROOT


def test_the_config_reference_is_generated_from_the_schema():
    assert (ROOT / "docs" / "config.md").read_text() == render(), (
        "docs/config.md drifted from the schema: .venv/bin/python -m orchestrator.config_doc > docs/config.md"
    )


def test_every_key_is_documented_with_its_default():
    doc = render()

    def keys(cls, prefix=""):
        for f in dataclasses.fields(cls):
            d = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(d):
                yield from keys(type(d), f"{prefix}{f.name}.")
            else:
                yield f"{prefix}{f.name}"

    missing = [k for cls in (SweepConfig, TeacherTrainConfig) for k in keys(cls) if f"| `{k}` |" not in doc]
    assert not missing
    assert "| `train.mix` | one of ['none', 'mixup', 'cutmix'] | `'none'` | function matching" in doc
    assert "| `sweep.ledger` | str | `''` | a folder (relative to the project) holding the search's candidates" in doc
