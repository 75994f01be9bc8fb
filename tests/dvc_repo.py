"""A project like ours in a temporary folder, for tests of the DVC data layer: git + DVC, digits only."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import iau_core.sources
import stores.data

GIT_USER = ["-c", "user.name=test", "-c", "user.email=test@example.com"]


def sh(cwd: Path, *args: str) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


def dvc(cwd: Path, *args: str) -> str:
    """The dvc beside this Python (the project's venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "dvc"
    return sh(cwd, str(beside) if beside.is_file() else shutil.which("dvc") or "dvc", *args)


def make_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """data/ tracked by data.dvc, a local default remote `dvc-storage`; digits only (fast)."""
    monkeypatch.setattr(stores.data, "SHIPPED", ("digits",))  # a rebuild from raw makes digits only
    root = tmp_path / "project"
    root.mkdir()
    sh(root, "git", "init", "-q")
    dvc(root, "init", "-q")
    dvc(root, "config", "core.analytics", "false")
    dvc(root, "remote", "add", "-d", "local", "dvc-storage")
    iau_core.sources.materialize("digits", root / "data")
    dvc(root, "add", "-q", "data")
    return root


def clean(root: Path) -> bool:
    """`dvc status` (workspace vs cache) and `dvc status -c` (cache vs default remote) report nothing."""
    return all(json.loads(dvc(root, "status", "--json", *extra)) == {} for extra in ([], ["-c"]))
