"""YAML files -> frozen dataclasses, strictly; generic (it knows no kdsweep key: orchestrator/config.py
holds the schema).

`yaml.safe_load` only (no tags that run code). Unknown keys, wrong types and impossible values raise
`ConfigError` naming the key path and the fix; a dataclass's `__post_init__` checks (ValueError, TypeError)
come out the same way, prefixed with their section. Hand-written rather than pydantic: measured in
experiments/config_schema (pydantic's messages drop the allowed keys and take `true` for an int).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from orchestrator.errors import UserError


class ConfigError(UserError):
    pass


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def is_uri(path: str | Path) -> bool:
    """A location on shared storage (s3://, gs://, file://...) rather than a path on this machine."""
    return "://" in str(path)


def base_dir() -> Path:
    """What relative paths (configs, teacher, runs, cache) are relative to: the current directory when it is a
    kdsweep checkout (make, `ray job submit --working-dir .`), else the project's own root (`ray submit` runs
    the script from the head's home directory)."""
    cwd = Path.cwd()
    return cwd if (cwd / "configs").is_dir() else PROJECT_ROOT


def resolve_path(p: str | None) -> str | None:
    """An absolute path or URI as given; a relative one against base_dir()."""
    if p is None or is_uri(p) or Path(p).is_absolute():
        return p
    return str((base_dir() / p).resolve())


def _convert(tp, value, path: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{path or '<root>'}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, path)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {value!r} matches none of {tp}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{path}: {value!r} is not allowed; use one of {list(allowed)}")
        return value
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        return {_convert(kt, k, f"{path}.{k}"): _convert(vt, v, f"{path}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        (et, *_) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        return tuple(_convert(et, v, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{path}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def from_dict(cls, data: dict, path: str = ""):
    """Build dataclass `cls` from `data`, recursing into nested dataclasses."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(
            f"unknown key {where}{unknown[0]}; allowed keys{' in ' + path if path else ''}: {sorted(names)}"
        )
    kwargs = {k: _convert(hints[k], v, f"{path}.{k}" if path else k) for k, v in data.items()}
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing key {path + '.' if path else ''}{missing[0]}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def _merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`: mappings merge key by key; anything else (lists included) is replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_yaml(path: str | Path, _chain: tuple = ()) -> dict:
    """A config file as a dict. `base: other.yaml` (relative to this file) starts from that file's dict and
    sets only what this one changes, so a variant of a recorded config is a few lines, not a copy."""
    path = Path(resolve_path(str(path))).resolve()
    if not path.is_file():
        raise ConfigError(
            f"config file {path} not found"
            + (f" (the base of {_chain[-1]})" if _chain else "")
            + "; see configs/ for examples"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    if "base" not in data:
        return data
    base = data.pop("base")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: base must be the path of another config file, relative to this one")
    base_path = (path.parent / base).resolve()
    if base_path in _chain or base_path == path:
        chain = " -> ".join(map(str, (*_chain, path, base_path)))
        raise ConfigError(
            f"{path}: base {base} leads back to itself ({chain}); a config can only build on one "
            "that does not build on it"
        )
    return _merge(load_yaml(base_path, (*_chain, path)), data)


def apply_overrides(data: dict, overrides: dict | None) -> dict:
    """Dotted keys (`train.epochs`) set in the raw YAML dict, before the strict loader checks it."""
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return data
