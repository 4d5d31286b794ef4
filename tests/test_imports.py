"""No import cycles among prelabel's modules, counting the imports a cycle hides in: inside functions and under
``TYPE_CHECKING``, as well as at module level."""

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "backend" / "prelabel"


def module_names() -> dict[str, Path]:
    """``prelabel.x.y`` -> its file (a package's name -> its ``__init__.py``)."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("prelabel", *path.relative_to(PACKAGE).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, names: dict[str, Path]) -> set[str]:
    """The prelabel modules one import statement reads (``from a import b`` reads ``a.b`` where it is a module)."""
    if isinstance(node, ast.Import):
        candidates = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            parent = module.split(".")[: len(module.split(".")) - (0 if is_package else 1) - (node.level - 1)]
            base = ".".join([*parent, *([node.module] if node.module else [])])
        candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in names else base for alias in node.names]
    found = set()
    for name in candidates:
        parts = name.split(".")
        while parts and ".".join(parts) not in names:
            parts.pop()
        if parts and ".".join(parts) != module:
            found.add(".".join(parts))
    return found


def import_graph() -> dict[str, set[str]]:
    names = module_names()
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in names.items():
        for node in ast.walk(ast.parse(path.read_text())):  # every statement: module level, functions, TYPE_CHECKING
            if isinstance(node, ast.Import | ast.ImportFrom):
                graph[module] |= imported(node, module, path.name == "__init__.py", names)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_the_import_graph_is_read_from_the_package():
    graph = import_graph()
    assert len(graph) > 50 and "prelabel.feedback.metrics" in graph["prelabel.feedback.validation"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_even_through_function_level_or_type_checking_imports():
    assert cycles(import_graph()) == []


def unexplained_function_level_imports(source: str) -> list[int]:
    """Lines of the import statements inside functions that give no reason: none on their line or on a comment line
    right above their block of imports, and not inside a ``try`` that handles ``ImportError`` (an optional package)."""
    lines = source.splitlines()
    tree = ast.parse(source)
    optional = {id(node) for handler in ast.walk(tree) if isinstance(handler, ast.Try)
                and any(isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                        for h in handler.handlers) for statement in handler.body for node in ast.walk(statement)}
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if not isinstance(node, ast.Import | ast.ImportFrom) or id(node) in optional:
                continue
            first = node.lineno - 1
            above = first - 1
            while above >= 0 and lines[above].lstrip().startswith(("import ", "from ")):
                above -= 1  # the comment above a block of imports explains each of them
            if "#" not in lines[first] and not lines[above].lstrip().startswith("#"):
                found.append(node.lineno)
    return sorted(set(found))


def test_every_function_level_import_says_why():
    assert unexplained_function_level_imports("def f():\n    import torch\n") == [2]
    assert unexplained_function_level_imports("def f():\n    # heavy\n    import a\n    from b import c\n") == []
    assert unexplained_function_level_imports("def f():\n    try:\n        import a\n    except ImportError:\n"
                                              "        pass\n") == []
    missing = {str(path.relative_to(PACKAGE)): lines for path in sorted(PACKAGE.rglob("*.py"))
               if (lines := unexplained_function_level_imports(path.read_text()))}
    assert missing == {}, "a function-level import needs a one-line reason (an optional extra, a heavy import)"


def test_the_batch_job_reaches_label_studio_through_two_modules():
    """batch/ reads and pushes through labelstudio.project and writes task files through labelstudio.tasks."""
    graph = import_graph()
    reached = {(module, other) for module, others in graph.items() if module.startswith("prelabel.batch.")
               for other in others if other.startswith("prelabel.labelstudio.")}
    assert reached == {("prelabel.batch.sources", "prelabel.labelstudio.project"),
                       ("prelabel.batch.outputs", "prelabel.labelstudio.tasks")}
