"""The rooms of core/ by pipeline stage: imports only run down the flow."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"
# lowest first: a room may import only from rooms before it (and from itself)
ORDER = [
    "errors",
    "config",
    "access",
    "stats",
    "data",
    "model",
    "training",
    "evaluation",
    "runs",
    "explain",
    "serving",
    "review",
    "arguments",
    "cli",
    "worker",
    "__init__",
]


def _room(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def _imports(path: Path) -> set[str]:
    """Every core module that ``path`` imports, at the top or inside a function."""
    module = ".".join(path.relative_to(CORE.parent).with_suffix("").parts)
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("core"):
                found.add(target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("core")}
    return found


def _modules():
    return [p for p in sorted(CORE.rglob("*.py")) if "__pycache__" not in p.parts]


def test_imports_only_run_down_the_flow():
    upward = []
    for path in _modules():
        module = ".".join(path.relative_to(CORE.parent).with_suffix("").parts)
        here = _room(module) if path.name != "__init__.py" or path.parent != CORE else "__init__"
        for target in _imports(path):
            there = _room(target) if target != "core" else "__init__"
            if ORDER.index(there) > ORDER.index(here):
                upward.append(f"{module} imports {target}")
    assert not upward, "\n".join(upward)
