"""The project travels as an argument (issue 30): an entry point reads params.yaml once, opens the ledger it was
told to, and hands both to the flow as a Project, never through the environment and never as a flow parameter
Prefect would store and show. Also the provenance line that generated reports open with.

The flows' own runs (training, the recipe) are the subject of tests/test_nightly.py and tests/test_flow.py; here
the flow is replaced by a recorder at the point where the project crosses into it, so these tests take seconds."""

from __future__ import annotations

import json
import os
import re
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest
import yaml
from conftest import DIGITS_SIZES
from dvc_repo import make_repo
from typer.testing import CliRunner

import iau_core.config.params

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def count_params_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every read of a params file from now on (load_params parses the file through read_yaml; a --set value
    goes through it too, named `--set ...`, and is not counted)."""
    reads: list[str] = []
    real = iau_core.config.params.read_yaml

    def counted(data, where: str):
        if not where.startswith("--set"):
            reads.append(where)
        return real(data, where)

    monkeypatch.setattr(iau_core.config.params, "read_yaml", counted)
    return reads


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    root = make_repo(tmp_path, monkeypatch)  # git + DVC, digits versioned: the data check passes
    (root / "params.yaml").write_text(yaml.safe_dump({"data": DIGITS_SIZES}))
    monkeypatch.delenv("IAU_LEDGER_URL", raising=False)
    monkeypatch.delenv("IAU_PROJECT_DIR", raising=False)
    return root


def test_iau_train_reads_params_once_and_gives_the_flow_the_project_it_opened(project, tmp_path, monkeypatch):
    import cli.prefect_server
    import flows.train
    from cli.main import app

    reads = count_params_reads(monkeypatch)
    seen: dict = {}

    def recorded_flow(opened):  # flows.train.train_flow's shape: the project in, a flow to call out
        def run() -> dict:
            seen.update(project=opened, env=os.environ.get("IAU_LEDGER_URL"))
            return {"champion": "models:/m@champion", "train_size": 600, "data_version": "v1"}
        return run

    monkeypatch.setattr(flows.train, "train_flow", recorded_flow)
    monkeypatch.setattr(cli.prefect_server, "owned_prefect_server", nullcontext)  # no flow run here: no server
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    done = runner.invoke(app, ["--project", str(project), "--ledger-url", url, "train", "--set", "training.lr=0.005"])
    assert done.exit_code == 0, done.output
    assert "champion: models:/m@champion" in done.output
    assert reads == [str(project.resolve() / "params.yaml")]  # once, by the CLI; the flow reads none
    opened = seen["project"]
    assert opened.root == project.resolve() and opened.params.training.lr == 0.005  # the --set, read that once
    assert opened.ledger.url_for_display == url and (tmp_path / "elsewhere.db").is_file()
    assert not (project / "ledger.db").exists()  # the --ledger-url reached the flow, not the project's default
    assert seen["env"] is None and "IAU_LEDGER_URL" not in os.environ  # no hand-off through the environment


def test_the_train_flow_over_an_opened_project_has_no_parameters(tmp_path):
    """What Prefect stores and shows of `iau train`'s flow run: nothing (the ledger URL may hold a password)."""
    from flows.train import train, train_flow
    from ops.project import open_project

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": DIGITS_SIZES}))
    project = open_project(tmp_path, ledger_url=f"sqlite:///{tmp_path / 'l.db'}")
    with project.ledger:
        flow = train_flow(project)
        assert flow.name == train.name == "train"
        assert flow.parameters.properties == {}
    # the module's flow (a deployment's entry) names no ledger either: the worker's environment does
    assert set(train.parameters.properties) == {"params_file", "overrides", "project_dir"}


def test_the_unlearn_command_reads_params_once_and_gives_them_to_the_flow(project, monkeypatch):
    import flows.unlearn

    class Started(Exception):
        pass

    reads = count_params_reads(monkeypatch)
    calls: list[dict] = []

    def recorded_unlearn(**kwargs):
        calls.append(kwargs)
        raise Started

    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "argv", ["flows.unlearn", "--selection", "random", "--seeds", "3",
                                      "--set", "training.lr=0.004"])
    monkeypatch.setattr(flows.unlearn, "unlearn", recorded_unlearn)
    with pytest.raises(Started):
        flows.unlearn.main()
    assert reads == [str(project.resolve() / "params.yaml")]
    params = calls[0]["params"]  # as read, with the selection, the seeds and the --set in them
    assert params.selection.strategy == "random" and list(params.seeds) == [3] and params.training.lr == 0.004


def test_a_generated_report_names_its_command_and_commit():
    from studies.provenance import code_commit, command_line, generated_by

    commit = code_commit()
    assert re.fullmatch(r"[0-9a-f]{12}( \(uncommitted changes in the tree\))?", commit), commit
    command = command_line("python -m studies.gate_power", ["--set", "training.lr=0.01", "--out", "a b.md"])
    assert command == "python -m studies.gate_power --set training.lr=0.01 --out 'a b.md'"
    assert generated_by(command) == f"Generated by `{command}` at commit {commit}; do not edit by hand."
    assert generated_by(command, "abc123") == f"Generated by `{command}` at commit abc123; do not edit by hand."


def test_the_reproduction_page_opens_with_its_command_and_commit():
    from studies.reproduce_report import render

    raw = json.loads((REPO / "docs" / "reproduction_data.json").read_text())
    page = render({**raw, "commit": "0123abcd"}, ".venv/bin/python -m studies.reproduce --setting leaking --seeds 0")
    assert page.splitlines()[2].startswith("Generated by `.venv/bin/python -m studies.reproduce --setting leaking "
                                           "--seeds 0` at commit 0123abcd; do not edit by hand.")


def test_the_performance_page_names_its_command():
    from benchmarks.report import command_of, markdown

    assert command_of({"mode": "quick", "command": "python -m benchmarks --set x=1"}) == \
        "`python -m benchmarks --set x=1`"
    assert command_of({"mode": "full"}).startswith("`python -m benchmarks --full` (rebuilt from the mode")
    assert command_of({"mode": "quick (headline)"}).startswith("`python -m benchmarks --only headline`")
    result = json.loads((REPO / "reports" / "bench.json").read_text())
    page = markdown(result)
    assert f"- command: {command_of(result['meta'])}" in page.splitlines()
    assert f"commit `{result['meta']['commit']}`" in page
