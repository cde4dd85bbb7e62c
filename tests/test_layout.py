"""The repository's shape, as a newcomer meets it: the method alone at the root, folders that import one way, the
method free of the toy world, a short algorithm box, short files, short argument lists."""

import ast
import os
import subprocess
import sys

from plumbing.common import REPO

ROOT_FILES = {  # the reading order, plus what a user runs by path
    "advantages.py",
    "logprobs.py",
    "grpo.py",
    "judge.py",
    "rollout.py",
    "train_stage1.py",
    "train_stage2.py",
    "evaluate.py",
    "baselines.py",
    "config.py",
}
FOLDERS = ("toy", "domains", "scale", "plumbing", "analysis", "scripts")


def modules() -> dict[str, str]:
    """Module name -> path, for the root and the folders (tests aside)."""
    found = {f[:-3]: os.path.join(REPO, f) for f in ROOT_FILES}
    for folder in FOLDERS:
        for f in sorted(os.listdir(os.path.join(REPO, folder))):
            if f.endswith(".py"):
                name = folder if f == "__init__.py" else f"{folder}.{f[:-3]}"
                found[name] = os.path.join(REPO, folder, f)
    return found


def imports_of(path: str, known: set[str]) -> set[str]:
    """The project modules a file imports, at module level or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module in known:
            full = {f"{node.module}.{a.name}" for a in node.names}
            out |= (full & known) or {node.module}
    return out


def test_the_root_holds_the_method_and_what_users_run():
    assert {f for f in os.listdir(REPO) if f.endswith(".py")} == ROOT_FILES
    for folder in FOLDERS[:4]:  # each folder says what it holds and what it may import
        doc = ast.get_docstring(ast.parse(open(os.path.join(REPO, folder, "__init__.py")).read()))
        assert doc and "import" in doc, folder


def test_the_method_loads_no_toy_module_and_the_first_files_no_scale_out():
    code = (
        "import sys, train_stage1; print(sorted(m for m in sys.modules if m.split('.')[0] == 'toy'));"
        "import advantages, logprobs, grpo, judge, rollout"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    code = (
        "import sys, advantages, logprobs, grpo, judge, rollout;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('toy', 'scale', 'plumbing')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_import_cycle():
    found = modules()
    graph = {m: imports_of(p, set(found)) - {m} for m, p in found.items()}
    state = {}  # 1: on the current path, 2: done

    def visit(m, path):
        state[m] = 1
        for n in graph[m]:
            assert state.get(n) != 1, " -> ".join(path + [m, n])
            if n not in state:
                visit(n, path + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_main_is_the_algorithm_box_and_files_stay_short():
    tree = ast.parse(open(os.path.join(REPO, "train_stage1.py")).read())
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    assert main.end_lineno - main.lineno + 1 <= 70
    for name, path in modules().items():
        assert len(open(path).read().splitlines()) <= 410, name


def test_no_call_passes_more_than_five_positional_arguments():
    for name, path in modules().items():
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Call) and not any(isinstance(a, ast.Starred) for a in node.args):
                # torch.autograd.Function.apply takes positional arguments only
                is_apply = isinstance(node.func, ast.Attribute) and node.func.attr == "apply"
                assert len(node.args) <= 5 or is_apply, f"{name}:{node.lineno}"
