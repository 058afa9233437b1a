"""A newcomer can read the tree: arrows run one way, modules and functions stay small, no code hides in strings."""

from __future__ import annotations

import ast
import re
import sys
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


CANARY_REPLAY = ("deploy.fleet.canary", "host.bundle.replay")
"""The one arrow from deploy into host: the canary's games are replayed on the host's own env (torch)."""


def test_deploy_never_imports_host_and_host_stages_never_import_each_other():
    graph = _graph()
    bad = [f"{m} -> {t}" for m, ts in graph.items() for t in ts
           if (_package_of(m) == "deploy" and _package_of(t) == "host" and (m, t) != CANARY_REPLAY)
           or (m.startswith("host.bundle") and t.startswith("host.train"))
           or (m.startswith("host.train") and t.startswith("host.bundle"))]
    assert not bad, bad


DEPLOY_LAYERS = ("board", "agent", "link", "", "fleet", "ansible", "channel", "cli")
"""deploy/ by role, lowest first: what runs on the board, the pull agent that runs there beside it, the connection,
one board's operations (deploy/*.py), the fleet, the same steps as Ansible's tasks, the pull channel's host side,
the commands. A module imports its
own layer or those below it, never one above."""


def _deploy_layer(module: str) -> int:
    parts = module.split(".")
    return DEPLOY_LAYERS.index(parts[1] if len(parts) > 1 and parts[1] in DEPLOY_LAYERS else "")


def test_deploy_is_laid_out_by_role_and_the_tests_mirror_it():
    roles = [r for r in DEPLOY_LAYERS if r]
    assert all((REPO / "deploy" / role / "__init__.py").is_file() for role in roles)
    loose = sorted(p.name for p in (REPO / "deploy").glob("*.py") if p.name.startswith(("board_", "ssh", "fleet")))
    assert loose == ["board_client.py"], f"by role, these belong in a subfolder of deploy/: {loose}"
    for package in PACKAGES:
        folders = (p for p in (REPO / "tests" / package).rglob("*") if p.is_dir() and p.name != "__pycache__")
        for folder in sorted(folders):
            mirror = REPO / folder.relative_to(REPO / "tests")
            assert (mirror / "__init__.py").is_file(), f"{folder.relative_to(REPO)}: no package folder {mirror}"
    assert all(any((REPO / "tests" / "deploy" / role).glob("test_*.py")) for role in ("board", "link", "fleet"))


def test_deploy_arrows_run_down_its_layers():
    up = [f"{m} -> {t}" for m, ts in _graph().items() if _package_of(m) == "deploy" for t in ts
          if _package_of(t) == "deploy" and _deploy_layer(t) > _deploy_layer(m)]
    assert not up, "deploy/ imports against its layers (" + " < ".join(r or "one board" for r in DEPLOY_LAYERS) \
        + "): " + ", ".join(up)


BOARD_DEVICE_FILES = {"device", "device.in_use", "device.layout", "device.manifest", "device.trust"}
"""The device contract the board's code imports; deploy/board_client.py ships exactly these beside it."""


def _foreign_imports(folder: Path, allowed: set[str], top_level: set[str], python: tuple[int, int]) -> list[str]:
    """Imports of a folder's modules that are neither `allowed` modules nor under an allowed top-level name."""
    found = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), feature_version=python)):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [f"{node.module}.{a.name}" if node.module in {"device", "deploy.board", "deploy.agent"}
                         else node.module for a in node.names]
            else:
                continue
            found += [f"{path.name}:{node.lineno} {n}" for n in names
                      if n not in allowed and n.split(".")[0] not in sys.stdlib_module_names | top_level]
    return found


def _stems(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.py")} - {"__init__"}


def test_the_board_folder_imports_only_the_stdlib_and_the_device_contract_and_parses_as_python_3_9():
    folder = REPO / "deploy" / "board"
    siblings = _stems(folder)
    allowed = BOARD_DEVICE_FILES | {"deploy.board"} | {f"deploy.board.{s}" for s in siblings}
    found = _foreign_imports(folder, allowed, siblings, (3, 9))  # the oldest python3 a board may have
    assert not found, "the board runs only the stdlib and the device contract: " + ", ".join(found)


AGENT_LIBS = {"tuf", "urllib3", "securesystemslib"}
"""python-tuf and its pure-Python dependencies: what `edgerl enroll` copies beside the agent."""


def test_the_pull_agent_imports_only_the_stdlib_python_tuf_the_board_modules_and_the_device_contract():
    from deploy.channel.enroll import agent_files

    folder = REPO / "deploy" / "agent"
    siblings, board = _stems(folder), _stems(REPO / "deploy" / "board")
    allowed = BOARD_DEVICE_FILES | {f"deploy.agent.{s}" for s in siblings} | {f"deploy.board.{b}" for b in board}
    found = _foreign_imports(folder, allowed, siblings | board | AGENT_LIBS, (3, 10))  # python-tuf 7's minimum
    assert not found, "the agent runs the stdlib, python-tuf and the board's modules: " + ", ".join(found)
    shipped = {name for name in agent_files() if "/" not in name}
    assert {f"{s}.py" for s in siblings} <= shipped, "every agent module travels to the board"


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
