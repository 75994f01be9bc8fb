"""`iau` works where the team stands: the project is found as git and dvc find theirs (--project, IAU_PROJECT_DIR,
the current directory or a parent holding params.yaml and data.dvc), and `iau data ids` lists the ids of the
current data's roles, the ids a request may name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import DIGITS_SIZES
from typer.testing import CliRunner

from cli.main import app
from iau_core.config import DataParams
from iau_core.data import load_bundle
from stores.project import ProjectNotFound, find_project, project_root

runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory, digits_root) -> Path:
    """A project folder (params.yaml + data.dvc) whose data is the shared digits data."""
    root = tmp_path_factory.mktemp("team") / "project"
    (root / "notebooks" / "deep").mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump({"data": {**DIGITS_SIZES, "root": str(digits_root)}}))
    (root / "data.dvc").write_text(yaml.safe_dump({"outs": [{"md5": "0123abcd.dir", "path": "data"}]}))
    return root


@pytest.fixture(scope="module")
def bundle(digits_root):
    return load_bundle(DataParams(**DIGITS_SIZES), digits_root)


def test_the_project_is_the_nearest_folder_holding_params_and_data_dvc(project, tmp_path, monkeypatch):
    monkeypatch.delenv("IAU_PROJECT_DIR", raising=False)
    assert find_project(project / "notebooks" / "deep") == project
    monkeypatch.chdir(project / "notebooks")
    assert project_root() == project
    # params.yaml alone is not a project (a parent folder of many projects may hold one); both files are
    (tmp_path / "params.yaml").write_text("{}")
    with pytest.raises(ProjectNotFound, match="params.yaml and data.dvc"):
        find_project(tmp_path)


def test_explicit_beats_environment_beats_the_current_directory(project, tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    (other / "params.yaml").write_text("{}")
    monkeypatch.chdir(project)
    monkeypatch.setenv("IAU_PROJECT_DIR", str(other))
    assert project_root() == other
    assert project_root(project) == project
    monkeypatch.setenv("IAU_PROJECT_DIR", str(tmp_path / "missing"))
    with pytest.raises(ProjectNotFound, match="IAU_PROJECT_DIR .*missing is not a folder"):
        project_root()


def test_outside_any_project_a_command_says_what_it_looked_for(tmp_path, monkeypatch):
    monkeypatch.delenv("IAU_PROJECT_DIR", raising=False)
    monkeypatch.delenv("IAU_LEDGER_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    for command in (["data", "ids"], ["requests", "list"]):
        done = runner.invoke(app, command)
        assert done.exit_code == 2
        assert done.output.count("\n") == 1 and "params.yaml and data.dvc" in done.output
        assert "--project" in done.output
    done = runner.invoke(app, ["--project", str(tmp_path), "data", "ids"])
    assert done.exit_code == 2 and "holds no params.yaml" in done.output
    # a command that needs no project (the ledger is named) runs anywhere
    done = runner.invoke(app, ["--ledger-url", f"sqlite:///{tmp_path / 'l.db'}", "requests", "list"])
    assert done.exit_code == 0 and "no deletion requests" in done.output


@pytest.mark.parametrize("role, split", [("train", "train"), ("val", "val"), ("test", "test"),
                                         ("shadow", "shadow_pool")])
def test_data_ids_lists_each_role_from_a_subfolder(project, bundle, role, split, monkeypatch):
    monkeypatch.delenv("IAU_PROJECT_DIR", raising=False)
    monkeypatch.chdir(project / "notebooks")
    done = runner.invoke(app, ["data", "ids", "--role", role])
    assert done.exit_code == 0, done.output
    expected = sorted(getattr(bundle, split).ids.tolist())
    assert [int(line) for line in done.stdout.splitlines()] == expected  # one per line: usable as --file
    assert f"{len(expected)} ids of role {role}, data version 0123abcd.dir" in done.stderr


def test_data_ids_json_defaults_to_d_and_the_roles_are_disjoint(project, bundle):
    listed = {}
    for role in ("train", "val", "test", "shadow"):
        done = runner.invoke(app, ["--project", str(project), "data", "ids", "--json", "--role", role])
        assert done.exit_code == 0, done.output
        listed[role] = json.loads(done.stdout)
    default = json.loads(runner.invoke(app, ["--project", str(project), "data", "ids", "--json"]).stdout)
    assert default == listed["train"]
    assert default["count"] == DIGITS_SIZES["train_size"] == len(set(default["ids"]))
    assert default["data_version"] == "0123abcd.dir"
    every = [i for entry in listed.values() for i in entry["ids"]]
    assert len(every) == len(set(every))  # no record plays two roles


def test_an_unknown_role_is_refused_and_requests_add_points_to_data_ids(project):
    done = runner.invoke(app, ["--project", str(project), "data", "ids", "--role", "D"])
    assert done.exit_code == 2 and "unknown role 'D'; known: train, val, test, shadow" in done.output
    assert "iau data ids" in " ".join(runner.invoke(app, ["requests", "add", "--help"]).stdout.split())


def test_data_ids_feeds_requests_add(project, tmp_path):
    """What `iau data ids` prints is what `iau requests add --file` accepts; another role's ids are refused."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ids_file = tmp_path / "ids.txt"
    train = runner.invoke(app, ["--project", str(project), "data", "ids"]).stdout.splitlines()
    ids_file.write_text("\n".join(train[:3]) + "\n")
    done = runner.invoke(app, ["--project", str(project), "--ledger-url", url, "requests", "add", "--file",
                               str(ids_file), "--reason", "test"])
    assert done.exit_code == 0 and f"queued 3 deletion request(s), tier normal: {', '.join(train[:3])}" in done.stdout
    val = runner.invoke(app, ["--project", str(project), "data", "ids", "--role", "val"]).stdout.splitlines()
    done = runner.invoke(app, ["--project", str(project), "--ledger-url", url, "requests", "add", val[0],
                               "--reason", "test"])
    assert done.exit_code == 2


def test_data_ids_names_a_version_not_committed_to_git_yet(project, tmp_path):
    """After `iau nightly` (or `dvc add data`) data.dvc names the new version before anyone commits it: `iau data
    ids` says so, and which git command makes it the team's version."""
    import shutil
    import subprocess

    repo = tmp_path / "repo"
    shutil.copytree(project, repo)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "params.yaml", "data.dvc"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "data"], cwd=repo, check=True)
    committed = runner.invoke(app, ["--project", str(repo), "data", "ids", "--json"])
    assert json.loads(committed.stdout)["committed"] is True
    (repo / "data.dvc").write_text(yaml.safe_dump({"outs": [{"md5": "4567ef01.dir", "path": "data"}]}))
    done = runner.invoke(app, ["--project", str(repo), "data", "ids"])
    assert done.exit_code == 0, done.output
    assert "data version 4567ef01.dir, not committed yet" in done.stderr and "git add data.dvc" in done.stderr
    assert json.loads(runner.invoke(app, ["--project", str(repo), "data", "ids", "--json"]).stdout)["committed"] \
        is False
