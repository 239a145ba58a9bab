"""docs/config.md, generated from the schema: every config key with its type, default and meaning, so the
reference cannot drift from the code (tests/test_config_doc.py fails when it does).

    .venv/bin/python -m orchestrator.config_doc > docs/config.md

A key's meaning is its comment in the dataclass that defines it: the comment at the end of its line and the
comment lines under it, or the comment lines just above a key whose own line has none.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize

from orchestrator.config import SweepConfig
from orchestrator.teacher.config import TeacherTrainConfig


def _comments(cls) -> dict[str, str]:
    """{field: its comment} from the source of the class that defines the fields."""
    src = textwrap.dedent(inspect.getsource(cls))
    body = ast.parse(src).body[0].body
    fields = [(n.target.id, n.lineno, n.end_lineno) for n in body if isinstance(n, ast.AnnAssign)]
    comments: dict[int, tuple[str, bool]] = {}  # line -> (text, the whole line is a comment)
    lines = src.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            row = tok.start[0]
            comments[row] = (tok.string.lstrip("#").strip(), lines[row - 1].strip().startswith("#"))
    out: dict[str, list[str]] = {}
    for k, (name, start, end) in enumerate(fields):
        own = [comments[r][0] for r in range(start, end + 1) if r in comments and not comments[r][1]]
        nxt = fields[k + 1][1] if k + 1 < len(fields) else len(lines) + 1
        after = []
        for r in range(end + 1, nxt):  # comment lines under it, up to a blank or code line
            if r in comments and comments[r][1]:
                after.append(r)
            else:
                break
        if own:  # its trailing comment goes on under it
            out[name] = own + [comments[r][0] for r in after]
        else:
            out.setdefault(name, [])
        if not own and after and k + 1 < len(fields):  # comment lines above the next key, which has none
            out.setdefault(fields[k + 1][0], []).extend(comments[r][0] for r in after)
    return {k: " ".join(v) for k, v in out.items()}


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING  # required


def _fmt(v) -> str:
    if v is dataclasses.MISSING:
        return "(required)"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list, tuple)) and not v:
        return "{}" if isinstance(v, dict) else "[]"
    return repr(v) if isinstance(v, str) else str(v)


def _rows(cls, prefix: str) -> tuple[list[str], list[tuple[str, type]]]:
    """Markdown rows of the plain keys of `cls`, and its sections (nested dataclasses) to render after it."""
    notes: dict[str, str] = {}
    for klass in reversed([c for c in cls.__mro__ if dataclasses.is_dataclass(c)]):
        notes.update(_comments(klass))
    rows, sections = [], []
    for f in dataclasses.fields(cls):
        d = _default(f)
        if dataclasses.is_dataclass(d):
            sections.append((f"{prefix}{f.name}", type(d)))
            continue
        kind = str(f.type).replace("|", "or").replace("Literal", "one of ")
        default = _fmt(d) if d is dataclasses.MISSING else f"`{_fmt(d)}`"
        rows.append(f"| `{prefix}{f.name}` | {kind} | {default} | {notes.get(f.name, '')} |")
    return rows, sections


def _section(title: str, cls, prefix: str) -> list[str]:
    rows, sections = _rows(cls, prefix)
    out = [f"### {title}", "", "| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    for name, sub in sections:
        out += _section(f"`{name}:`", sub, f"{name}.")
    return out


def render() -> str:
    head = [
        "# Config reference",
        "",
        "Generated from the schema (`orchestrator/config.py`, `trainables/config.py`) by "
        "`.venv/bin/python -m orchestrator.config_doc > docs/config.md`; a test fails when it drifts. A config "
        "is YAML read strictly: an unknown key, a wrong type or an impossible value is refused with the key's "
        "path and the fix. Override any key on the command line with `--set key.path=value`; a file may start "
        "from another with `base: other.yaml`.",
        "",
        "## A sweep (`kdsweep sweep --config`, `configs/sweep.yaml`, `search.yaml`, `release.yaml`, ...)",
        "",
        "`search_space` maps a train key (or `student_kwargs.<kwarg>`, one of the student's arguments, e.g. "
        "its shape) to one of `{choice: [...]}`, `{grid: [...]}`, `{uniform: [low, high]}`, "
        "`{loguniform: [low, high]}`; `trials` is a list of train-key mappings, each crossed with the space.",
        "",
    ]
    body = _section("top level", SweepConfig, "")
    teacher = ["## A teacher's training (`kdsweep teacher train --config`, `configs/teacher.yaml`)", ""]
    teacher += _section("top level", TeacherTrainConfig, "")
    return "\n".join(head + body + teacher).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
