"""The shape of the `uva` package, checked from its source (nothing is imported):

- no import cycle between its modules (module-level and function-level imports alike: a cycle
  that only a lazy import hides is still two modules that need each other);
- no module over MAX_LINES lines unless its docstring says why, in a line starting "Size:";
- the core never imports rclpy (it must run, train and test without ROS).
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "models" / "uva"
MAX_LINES = 400


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path | None = None) -> dict[str, Path]:
    root = root or PACKAGE
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The package modules `path` (module `name`) imports, anywhere in its body."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # `from . import x` / `from .pkg import mod` name submodules; other names are
            # attributes of the module `stem` itself
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem
                       for a in node.names]
        for target in targets:
            # the deepest package module the import names (a.b.c -> a.b.c, else a.b, ...)
            parts = target.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            if parts and ".".join(parts) != name:
                found.add(".".join(parts))
    return found


def import_graph(root: Path | None = None) -> dict[str, set[str]]:
    mods = modules(root)
    known = set(mods)
    return {name: imported(path, name, known) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [m0, m1, ..., m0], or None (depth-first, in name order)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {m: WHITE for m in graph}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        colour[m] = GREY
        stack.append(m)
        for n in sorted(graph[m]):
            if colour[n] == GREY:
                return stack[stack.index(n):] + [n]
            if colour[n] == WHITE:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        colour[m] = BLACK
        return None

    for m in sorted(graph):
        if colour[m] == WHITE:
            found = visit(m)
            if found:
                return found
    return None


def test_import_graph_has_no_cycle():
    graph = import_graph()
    assert "uva.model" in graph and "uva.config" in graph["uva.model"]  # the graph is real
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_planted_cycle(tmp_path):
    """The check above can fail: a package whose modules import each other (one of them only
    inside a function) is reported with the cycle named."""
    pkg = tmp_path / "uva"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "c.py").write_text("import uva.a\n")
    (pkg / "d.py").write_text("from uva.a import f\n")
    graph = import_graph(pkg)
    assert graph["uva.a"] == {"uva.b"} and graph["uva.b"] == {"uva.c"}
    assert find_cycle(graph) == ["uva.a", "uva.b", "uva.c", "uva.a"]
    (pkg / "c.py").write_text("")
    assert find_cycle(import_graph(pkg)) is None


def size_reason(path: Path) -> str | None:
    doc = ast.get_docstring(ast.parse(path.read_text(), str(path))) or ""
    return next((line for line in doc.splitlines() if line.startswith("Size:")), None)


def test_large_modules_state_why():
    too_long = []
    for name, path in modules().items():
        n = len(path.read_text().splitlines())
        if n > MAX_LINES and size_reason(path) is None:
            too_long.append(f"{name} ({n} lines)")
    assert not too_long, (f"modules over {MAX_LINES} lines without a 'Size:' line in their "
                          f"docstring saying why: {too_long}")


def test_core_never_imports_rclpy():
    offenders = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                     else [])
            if any(n == "rclpy" or n.startswith("rclpy.") for n in names):
                offenders.append(f"{name}:{node.lineno}")
    assert not offenders, f"models/uva imports rclpy: {offenders}"
