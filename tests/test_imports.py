"""The package's layers (docs/architecture.md): no module imports one that imports it back, as it loads or
later inside a function (imports for type checkers only aside)."""

from __future__ import annotations

import ast
from pathlib import Path

import ednaml

PACKAGE = Path(ednaml.__file__).parent


def module_imports() -> dict[str, set[str]]:
    """{module: the ednaml modules it imports anywhere but under `if TYPE_CHECKING:`}."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for block in ast.walk(tree):
            if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING"):
                block.body = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                named = [f"{node.module}.{alias.name}" for alias in node.names]
                targets = [t for t in named if t in modules] + (
                    [node.module] if any(t not in modules for t in named) else []
                )
            else:
                continue
            edges[name] |= {t for t in targets if t in modules and t != name}
    return edges


def test_no_module_imports_one_that_imports_it_back():
    edges = module_imports()
    assert len(edges) > 60 and "ednaml.config.sections" in edges["ednaml.adapters.module"]
    assert "ednaml.adapters.runner" in edges["ednaml.api"]  # an import inside a function counts

    def reaches(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    cycles = sorted(name for name in edges if name in reaches(name))
    assert cycles == []
