"""One search-space domain, in one type: what `search_space:` in a config means. The config validates it
here; the driver translates these domains (not the YAML) to Ray Tune's, the plan counts trials and the
preparation rewrites values through them; nothing else reads the YAML form."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KINDS = ("choice", "grid", "uniform", "loguniform")
RANGES = ("uniform", "loguniform")


def _num(v) -> float | None:
    try:
        return float(v) if not isinstance(v, bool) else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Domain:
    """`{kind: values}` for one train key. choice: one of the values, drawn; grid: each value, every time;
    uniform / loguniform: a number drawn between (low, high)."""

    key: str
    kind: str
    values: tuple

    @classmethod
    def parse(cls, key: str, raw: Any) -> Domain:
        """The YAML form, checked: ValueError with the one-line reason otherwise."""
        if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in KINDS:
            raise ValueError(
                f"search_space.{key}: write exactly one of {list(KINDS)}, e.g. "
                f"{{choice: [a, b]}} or {{loguniform: [1e-3, 1e-1]}}; got {raw}"
            )
        kind, vals = next(iter(raw.items()))
        if not isinstance(vals, list) or not vals:
            raise ValueError(f"search_space.{key}.{kind}: expected a non-empty list")
        if kind in RANGES:
            nums = [_num(v) for v in vals]
            if len(vals) != 2 or not all(isinstance(v, float) for v in nums) or nums[0] >= nums[1]:
                raise ValueError(f"search_space.{key}.{kind}: expected [low, high] numbers with low < high")
            if kind == "loguniform" and nums[0] <= 0:
                raise ValueError(f"search_space.{key}.loguniform: bounds must be > 0")
            vals = nums
        return cls(key, kind, tuple(vals))

    @property
    def sampled(self) -> bool:
        """Drawn (a searcher picks), not enumerated (a grid)."""
        return self.kind != "grid"

    @property
    def grid_size(self) -> int:
        """How many trials this key multiplies the search by."""
        return len(self.values) if self.kind == "grid" else 1

    def map(self, f: Callable[[Any], Any]) -> Domain:
        """The same domain with each listed value replaced by f(value) (a range is returned as it is)."""
        return self if self.kind in RANGES else Domain(self.key, self.kind, tuple(f(v) for v in self.values))

    def to_yaml(self) -> dict:
        return {self.kind: list(self.values)}

    def draw(self, rng) -> Any:
        """One value drawn with numpy Generator `rng` (a grid is enumerated by `draw_candidates`, not drawn)."""
        if self.kind == "uniform":
            return float(rng.uniform(*self.values))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.values[0]), math.log(self.values[1]))))
        return self.values[int(rng.integers(len(self.values)))]


def parse_space(raw: dict) -> dict[str, Domain]:
    return {key: Domain.parse(key, dom) for key, dom in (raw or {}).items()}


def grid_size(space: dict[str, Domain]) -> int:
    return math.prod(d.grid_size for d in space.values())


def draw_candidates(space: dict[str, Domain], num_samples: int, seed: int, trials=()) -> list[dict]:
    """A random search's candidates, drawn up front and the same for the same seed: each explicit trial x
    each grid point x `num_samples` draws of the sampled keys (the count search_trials plans). A search
    split into chunks names its candidates by their place in this list."""
    import itertools

    import numpy as np

    rng = np.random.default_rng(seed)
    grids = [d for d in space.values() if not d.sampled]
    out = []
    for variant in list(trials) or [{}]:
        for point in itertools.product(*(d.values for d in grids)):
            for _ in range(num_samples):
                drawn = {d.key: d.draw(rng) for d in space.values() if d.sampled}
                out.append({**variant, **{d.key: v for d, v in zip(grids, point)}, **drawn})
    return out
