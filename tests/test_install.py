"""A team that pip-installs the package (not editable) gets an `iau` that works on the project folder it stands
in: a fresh venv, the package built from a copy of this checkout, commands run from a project made elsewhere.

Fast and offline: the venv has no pip of its own (`--without-pip`) and sees this interpreter's installed
dependencies through a .pth file. Lines of a .pth only extend sys.path, so .pth files inside those folders (an
editable install of this checkout among them) are not processed: the only copy of our packages the venv can
import is the one installed into it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from sandbox.projects import REPO, make_project

# What the wheel is built from (pyproject.toml's packages.find); copied so no build/ lands in the checkout.
SOURCES = ("pyproject.toml", "iau_core", "stores", "reporting", "tasks", "flows", "cli", "ledger", "ops")
pytestmark = pytest.mark.slow  # builds and installs the package: about a minute on a quiet machine
TRAIN_SIZE = 300


def run(cwd: Path, env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(the fresh venv, a clean environment for its commands)."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(REPO / name, source / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = run(root, {}, str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    shared = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and Path(p).is_dir()]
    shared.append(sysconfig.get_paths()["purelib"])
    Path(purelib.stdout.strip(), "_shared_dependencies.pth").write_text("\n".join(dict.fromkeys(shared)) + "\n")
    # a clean environment, as a user's shell would have: no settings of ours, no PYTHONPATH to this checkout
    env = {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "HOME": os.environ.get("HOME", str(root))}
    done = run(root, env, str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
               str(source), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv, env


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A team's project outside the repository: params.yaml, data.dvc and a small digits data set."""
    return make_project(tmp_path_factory.mktemp("team") / "project", {
        "device": "cpu", "threads": 1,
        "data": {"dataset": "digits", "train_size": TRAIN_SIZE, "val_size": 200, "test_size": 300,
                 "shadow_pool_size": 400}})


def test_the_installed_package_is_a_copy_in_the_venv(installed):
    venv, env = installed
    done = run(venv, env, str(venv / "bin" / "python"), "-c",
               "import cli, iau_core, ledger.migrate as m; print(cli.__file__); print(iau_core.__file__); "
               "print(sorted(p.name for p in (m.MIGRATIONS / 'versions').glob('*.py')))")
    assert done.returncode == 0, done.stderr
    cli_file, core_file, migrations = done.stdout.splitlines()
    for imported in (cli_file, core_file):
        assert Path(imported).is_relative_to(venv) and not Path(imported).is_relative_to(REPO)
    assert "0001_initial.py" in migrations  # the ledger's migrations are packaged


def test_iau_acts_on_the_project_it_stands_in(installed, project):
    venv, env = installed
    iau = str(venv / "bin" / "iau")
    (project / "notebooks").mkdir(exist_ok=True)
    ids = run(project / "notebooks", env, iau, "data", "ids")
    assert ids.returncode == 0, ids.stderr
    train = ids.stdout.split()
    assert len(train) == TRAIN_SIZE
    version = json.loads(run(project, env, iau, "data", "ids", "--json").stdout)["data_version"]
    assert ids.stderr.strip().splitlines() == [f"{TRAIN_SIZE} ids of role train, data version {version}"]
    added = run(project / "notebooks", env, iau, "requests", "add", train[0], train[1], "--reason", "art. 17")
    assert added.returncode == 0, added.stderr
    assert f"queued 2 deletion request(s), tier normal: {train[0]}, {train[1]}" in added.stdout
    assert added.stderr == ""  # no telemetry errors, no progress bars
    assert (project / "ledger.db").is_file()  # the ledger of the project, not of site-packages
    assert not list(venv.rglob("ledger.db"))
    listed = json.loads(run(project, env, iau, "requests", "list", "--json").stdout)
    assert [(r["sample_id"], r["status"]) for r in listed] == [(int(train[0]), "pending"), (int(train[1]), "pending")]
    doctor = run(project / "notebooks", env, iau, "doctor")  # opens the MLflow store and the model registry
    assert doctor.returncode == 0 and "champion none, 2 pending request(s)" in doctor.stdout, doctor.stderr
    assert (project / "mlflow.db").is_file() and not list(venv.rglob("mlflow.db"))
    assert not [line for line in doctor.stderr.splitlines() if "INFO" not in line]  # no telemetry errors


def test_elsewhere_iau_says_what_it_looked_for_unless_told_the_project(installed, project, tmp_path):
    venv, env = installed
    iau = str(venv / "bin" / "iau")
    lost = run(tmp_path, env, iau, "data", "ids")
    assert lost.returncode == 2 and lost.stdout == ""
    assert lost.stderr.count("\n") == 1 and "params.yaml and data.dvc" in lost.stderr
    for how in ([iau, "--project", str(project)], [iau]):
        extra = {"IAU_PROJECT_DIR": str(project)} if how == [iau] else {}
        found = run(tmp_path, {**env, **extra}, *how, "data", "ids", "--role", "val")
        assert found.returncode == 0, found.stderr
        assert len(found.stdout.split()) == 200
