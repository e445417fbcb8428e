"""The package's layers (docs/architecture.md): no module imports one that imports it back, as it loads or
later inside a function (imports for type checkers only aside)."""

from __future__ import annotations

import ast
import sys
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


# What config/ may import: itself and the modules below it (errors, kinds), the standard library and YAML.
CONFIG_MAY_IMPORT = {"ednaml.config", "ednaml.errors", "ednaml.kinds"}


def _imports_anywhere(path: Path) -> list[str]:
    """Every module a file imports, at the top, inside a function or for type checkers alike."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names if node.module == "ednaml"]
    return found


def test_config_is_plain_data_it_imports_no_torch_lightning_or_a_layer_above_it():
    files = sorted((PACKAGE / "config").rglob("*.py"))
    assert len(files) >= 8
    wrong = []
    for path in files:
        for module in _imports_anywhere(path):
            top = module.partition(".")[0]
            if top == "ednaml":
                ok = module == "ednaml" or any(module == m or module.startswith(m + ".") for m in CONFIG_MAY_IMPORT)
            else:
                ok = top in sys.stdlib_module_names or top == "yaml"
            if not ok:
                wrong.append(f"{path.relative_to(PACKAGE)}: {module}")
    assert wrong == []


def test_the_layer_rule_catches_an_import_inside_a_function(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    import torch\n    from ednaml import registry\n")
    assert _imports_anywhere(planted) == ["torch", "ednaml", "ednaml.registry"]


def test_lightning_is_imported_only_by_the_adapters_and_the_command_line():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE)
        if where.parts[0] == "adapters" or where == Path("cli.py"):
            continue
        wrong += [
            f"{where}: {m}"
            for m in _imports_anywhere(path)
            if m.partition(".")[0] in ("lightning", "pytorch_lightning")
        ]
    assert wrong == []
