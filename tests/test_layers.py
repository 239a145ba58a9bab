"""Layers import downward only (shared/DESIGN.md): orchestrator/ -> trainables/ -> students/."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
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
    bad = {str(p.relative_to(ROOT)): sorted(imported_packages(p) & FORBIDDEN[package])
           for p in (ROOT / package).glob("*.py")}
    assert not {k: v for k, v in bad.items() if v}


def test_trainable_runs_without_orchestrator():
    """A lent GPU machine has no Ray: the plain training loop must import without it or orchestrator/."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['ray'] = None; sys.modules['orchestrator'] = None; "
            "import trainables.train, trainables.losses, trainables.config; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
