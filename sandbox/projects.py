"""A project folder of its own for the end-to-end tests and the benchmark: params.yaml (the overrides over the
checkout's shipped params.yaml), data/ (the shipped digits file) under DVC with a local default remote, and room
for the embedded MLflow store and ledger."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from iau_core.config import deep_merge
from iau_core.sources import materialize

# The checkout, not a project: sandbox is never installed, and its callers need its own code and shipped params.yaml
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def sh(cwd: Path, *args: str) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def make_project(root: Path, overrides: dict) -> Path:
    """A new project at `root` (which must not exist yet): `overrides` over the checkout's shipped params.yaml."""
    root.mkdir(parents=True)
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(deep_merge(base, overrides)))
    dvc = str(BIN / "dvc")
    sh(root, dvc, "init", "-q", "--no-scm")
    sh(root, dvc, "config", "core.analytics", "false")
    sh(root, dvc, "remote", "add", "-d", "local", str(root.parent / "dvc-remote"))
    materialize("digits", root / "data")
    sh(root, dvc, "add", "-q", "data")
    return root
