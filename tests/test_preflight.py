"""`iau train` and `iau nightly` check the data before Prefect starts: a dataset that was never built, or data/
that is not the version data.dvc records, ends in one line naming the fix (issue 30: 387 lines and 3 tracebacks
after about 50 s before)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from conftest import DIGITS_SIZES
from dvc_repo import make_repo
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def project(tmp_path, monkeypatch, dataset, model="lenet5") -> Path:
    root = make_repo(tmp_path, monkeypatch)
    (root / "params.yaml").write_text(yaml.safe_dump({"data": {**DIGITS_SIZES, "dataset": dataset},
                                                      "model": {"name": model}}))
    return root


def test_a_dataset_never_built_is_named_before_anything_starts(tmp_path, monkeypatch):
    root = project(tmp_path, monkeypatch, {"kind": "table", "name": "churn", "path": "raw/churn.csv",
                                           "sample_id_column": "customer", "label_column": "churned"}, "mlp")
    start = time.monotonic()
    done = runner.invoke(app, ["--project", str(root), "--ledger-url", f"sqlite:///{tmp_path / 'l.db'}", "train"])
    assert done.exit_code == 1, done.output
    assert done.output.count("\n") == 1 and "churn is missing" in done.output
    assert "python -m iau_core.datasets" in done.output and "dvc add data" in done.output
    assert "Traceback" not in done.output and time.monotonic() - start < 30


def test_data_that_is_not_the_recorded_version_is_refused_in_one_line(tmp_path, monkeypatch):
    root = project(tmp_path, monkeypatch, "digits")
    records = next((root / "data").glob("*/records.csv"))
    records.write_text(records.read_text() + "\n")  # an edit nobody versioned
    done = runner.invoke(app, ["--project", str(root), "--ledger-url", f"sqlite:///{tmp_path / 'l.db'}", "train"])
    assert done.exit_code == 1, done.output
    assert done.output.count("\n") == 1 and "does not match data.dvc" in done.output and "dvc add data" in done.output


def test_the_unlearn_flow_command_checks_the_data_before_prefect_starts(tmp_path, monkeypatch, capsys):
    """`python -m flows.unlearn` (its main, in this process): the same check, the same one line, no flow run."""
    import sys

    import flows.unlearn

    root = project(tmp_path, monkeypatch, {"kind": "table", "name": "churn", "path": "raw/churn.csv",
                                           "sample_id_column": "customer", "label_column": "churned"}, "mlp")
    monkeypatch.chdir(root)
    monkeypatch.delenv("IAU_PROJECT_DIR", raising=False)
    monkeypatch.setattr(sys, "argv", ["flows.unlearn", "--selection", "random"])
    monkeypatch.setattr(flows.unlearn, "unlearn", lambda **kw: pytest.fail("the flow started"))
    with pytest.raises(SystemExit) as exited:
        flows.unlearn.main()
    err = capsys.readouterr().err
    assert exited.value.code == 1 and err.count("\n") == 1, err
    assert "churn is missing" in err and "python -m iau_core.datasets" in err and "Traceback" not in err
