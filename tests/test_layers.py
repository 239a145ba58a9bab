"""Layers import downward only (shared/DESIGN.md): orchestrator/ -> trainables/ -> students/."""

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

FORBIDDEN = {"students": {"orchestrator", "trainables"}, "trainables": {"orchestrator"}}


def imported_packages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package):
    bad = {
        str(p.relative_to(ROOT)): sorted(imported_packages(p) & FORBIDDEN[package])
        for p in (ROOT / package).glob("*.py")
    }
    assert not {k: v for k, v in bad.items() if v}


def test_trainable_runs_without_orchestrator():
    """A lent GPU machine has no Ray: the plain training loop must import without it or orchestrator/."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['ray'] = None; sys.modules['orchestrator'] = None; "
        "import trainables.train, trainables.losses, trainables.config; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


# Ray API calls live in the sweep driver, the Tune trainable, the cluster cache builder, the Ray Train teacher
# loop and the Ray session bookkeeping (shared/DESIGN.md); everything else runs where Ray is not installed.
RAY_ALLOWED = {
    "orchestrator/sweep/driver.py",
    "orchestrator/sweep/resources.py",
    "orchestrator/sweep/stages.py",
    "orchestrator/sweep/tune_run.py",
    "orchestrator/sweep/ray_session.py",
    "orchestrator/sweep/tune_callbacks.py",  # the driver's Tune callbacks, run in the driver
    "orchestrator/teacher/cache_ray.py",
    "orchestrator/teacher/train.py",
    "trainables/tune_trainable.py",
}
PACKAGES = ("orchestrator", "trainables", "students")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = p
    return out


def _imports(path: Path, modules: dict) -> set[str]:
    """Project modules `path` imports anywhere (in functions too), as module names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:  # `from pkg import module` names a module; `from module import name` not
                found.add(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module)
    return {m for m in found if m in modules}


def test_no_import_cycles_and_ray_only_where_allowed():
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, f"import cycles: {cycles}"
    ray_users = {str(p.relative_to(ROOT)) for p in modules.values() if "ray" in imported_packages(p)}
    assert ray_users <= RAY_ALLOWED, f"Ray imported outside its modules: {sorted(ray_users - RAY_ALLOWED)}"


ENTRY_POINTS = {  # the top: commands and generators that import the rest
    "orchestrator.cli",
    "orchestrator.commands",
    "orchestrator.__main__",
    "orchestrator.submit",
    "orchestrator.config_doc",
}


def test_no_import_loops_between_packages():
    """A loop between packages (sweep imports release, release imports sweep) is one the module-level check
    cannot see when no single module closes it; each package must sit above or below each other one."""
    modules = _modules()
    subpackages = {m for m, p in modules.items() if p.name == "__init__.py"}
    assert {"orchestrator.sweep", "orchestrator.release", "orchestrator.run", "orchestrator.teacher"} <= subpackages

    def pkg(m: str) -> str:
        parts = m.split(".")
        if m in ENTRY_POINTS or parts[0] != "orchestrator":
            return m if m in ENTRY_POINTS else parts[0]
        return ".".join(parts[:2]) if ".".join(parts[:2]) in subpackages else "orchestrator"

    edges: dict[tuple[str, str], str] = {}
    for m, p in modules.items():
        for d in _imports(p, modules):
            if pkg(m) != pkg(d):
                edges.setdefault((pkg(m), pkg(d)), f"{m} -> {d}")
    loops = sorted(f"{edges[a, b]} and {edges[b, a]}" for a, b in edges if (b, a) in edges and a < b)
    assert not loops, f"import loops between packages: {loops}"
