"""A newcomer can read the tree: arrows run one way, modules and functions stay small, no code hides in strings."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("host", "device", "deploy")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an import names (a package's attribute import counts as the package)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(path: Path) -> list[tuple[ast.AST, str, bool]]:
    """(node, imported project module, inside a function?) for every import of ours in a file."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            names = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names = [f"{child.module}.{a.name}" for a in child.names]
            for name in names:
                target = _resolve(name)
                if target is not None:
                    found.append((child, target, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def _graph() -> dict[str, set[str]]:
    return {name: {target for _, target, _ in _imports(path) if target != name} for name, path in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def _package_of(module: str) -> str:
    return module.split(".")[0]


def test_the_import_graph_has_no_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_device_imports_nothing_of_ours_but_device():
    arrows = [f"{m} -> {t}" for m, ts in _graph().items() if _package_of(m) == "device" for t in ts
              if _package_of(t) != "device"]
    assert not arrows, arrows


def test_deploy_never_imports_host_and_host_stages_never_import_each_other():
    graph = _graph()
    bad = [f"{m} -> {t}" for m, ts in graph.items() for t in ts
           if (_package_of(m) == "deploy" and _package_of(t) == "host")
           or (m.startswith("host.bundle") and t.startswith("host.train"))
           or (m.startswith("host.train") and t.startswith("host.bundle"))]
    assert not bad, bad


def test_host_is_split_by_stage():
    for stage in ("bundle", "train"):
        assert (REPO / "host" / stage / "__init__.py").is_file()
    for gone in ("ppo", "dqn", "vecenv"):
        assert not (REPO / "host" / f"{gone}.py").exists()
        assert not any(name.endswith(f".{gone}") for name in MODULES), gone


def test_function_level_imports_of_ours_only_defer_import_cost_and_say_so():
    offenders = []
    for path in MODULES.values():
        lines = path.read_text().splitlines()
        for node, target, in_function in _imports(path):
            if not in_function:
                continue
            around = " ".join(lines[max(0, node.lineno - 3):node.lineno]).lower()
            if "defer" not in around:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} imports {target} inside a function")
    assert not offenders, "\n".join(offenders)


def test_no_module_over_400_lines_and_no_function_over_60():
    offenders = []
    for path in MODULES.values():
        text = path.read_text()
        rel = path.relative_to(REPO)
        if (n := len(text.splitlines())) > MAX_MODULE_LINES:
            offenders.append(f"{rel}: {n} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    offenders.append(f"{rel}:{node.lineno} {node.name}() is {length} lines")
    assert not offenders, "\n".join(offenders)


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _is_program(text: str) -> bool:
    if re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", text):  # an environment variable's spelling, KEY=value
        return False
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    code = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.For, ast.While, ast.With, ast.Try, ast.Assign)
    return any(isinstance(node, code) for node in ast.walk(tree))


def test_deploy_holds_no_python_program_inside_a_string():
    found = []
    for path in sorted((REPO / "deploy").rglob("*.py")):
        tree = ast.parse(path.read_text())
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                    and _is_program(node.value)):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value.strip()[:60]!r}")
    assert not found, "\n".join(found)


def test_the_readme_is_a_guide_a_newcomer_reads_through():
    # Tables of what is taken, figures and design live in docs/; README says how to use edgerl.
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move reference material to docs/"
