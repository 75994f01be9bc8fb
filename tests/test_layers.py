"""The layer rules (ARCHITECTURE.md, "What three capabilities taught"), read from the imports of every .py file:
a folder's name says what kind of code it holds, and imports point one way. Parsed with ast, so an import inside a
function counts too and nothing is imported to check."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = {"iau_core", "ledger", "stores", "reporting", "ops", "tasks", "flows", "cli", "studies", "benchmarks", "tests",
        "sandbox"}
ORCHESTRATION = {"prefect", "mlflow", "dvc"}

# package -> (our packages it may import besides itself, third-party roots it must not import)
RULES: dict[str, tuple[set[str], set[str]]] = {
    "iau_core": (set(), ORCHESTRATION),  # the science runs alone on a box with only torch
    "reporting": ({"iau_core"}, ORCHESTRATION),  # figures and text from results; callers publish them
    "stores": ({"iau_core", "ledger"}, {"prefect"}),  # side effects on the stores, usable without Prefect
    "ledger": (set(), set()),  # opened by the CLI fast: nothing of ours
    # the operations' use cases as plain functions: run in-process by `iau`, as tasks by flows; never a Prefect or
    # Typer import, so they are unit-tested without a server and a flow cannot hide a rule
    "ops": ({"iau_core", "stores", "ledger", "reporting"}, {"prefect", "typer"}),
    "tasks": ({"iau_core", "stores", "reporting", "ops"}, set()),
    "flows": ({"tasks", "ops", "stores", "iau_core", "reporting", "ledger"}, set()),
    "cli": (OURS - {"tests", "studies", "benchmarks", "sandbox"}, set()),
    "sandbox": ({"iau_core"}, ORCHESTRATION),  # servers as processes, projects as folders: for checks only
}  # studies/, benchmarks/ and tests/ are scripts and checks: they may import anything


def python_files(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if "__pycache__" not in p.parts)


def imported_roots(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in the file; a relative import stays in its package."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def violations(package: str) -> list[str]:
    allowed, banned = RULES[package]
    forbidden_ours = OURS - allowed - {package}
    return [f"{path.relative_to(REPO)}:{line} imports {root} ({package} may import "
            f"{', '.join(sorted(allowed)) or 'nothing of ours'}; never {', '.join(sorted(forbidden_ours | banned))})"
            for path in python_files(package) for line, root in imported_roots(path)
            if root in forbidden_ours or root in banned]


@pytest.mark.parametrize("package", sorted(RULES))
def test_imports_point_one_way(package):
    assert python_files(package), f"{package}/ holds no .py file: the rule checks nothing"
    found = violations(package)
    assert not found, "layer rule broken:\n  " + "\n  ".join(found)


def test_the_rule_names_the_file_and_the_import(tmp_path, monkeypatch):
    """A broken rule is reported by file, line and forbidden import (a check that fails silently holds nothing)."""
    (tmp_path / "stores").mkdir()
    (tmp_path / "stores" / "bad.py").write_text("import os\n\n\ndef f():\n    from prefect import task\n")
    monkeypatch.setitem(globals(), "REPO", tmp_path)
    assert violations("stores") == [
        "stores/bad.py:5 imports prefect (stores may import iau_core, ledger; never benchmarks, cli, flows, ops, "
        "prefect, reporting, sandbox, studies, tasks, tests)"]


def test_tasks_hold_prefect_tasks_only():
    """A file in tasks/ that defines no @task is not a task module: it belongs in stores/, reporting/ or cli/."""
    for path in python_files("tasks"):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        decorated = [d for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) for d in node.decorator_list]
        names = {getattr(d.func if isinstance(d, ast.Call) else d, "id", None) for d in decorated}
        assert "task" in names, f"{path.relative_to(REPO)} defines no Prefect @task"


def test_importing_the_science_changes_no_environment():
    """`import iau_core` (and its config) leaves os.environ as it was: the entry points set what they need."""
    code = ("import os\nbefore = dict(os.environ)\nimport iau_core, iau_core.config, iau_core.runtime\n"
            "changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))\n"
            "print(changed)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DO_NOT_TRACK", "OMP_WAIT_POLICY")}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
