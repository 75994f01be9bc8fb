"""Bad input, as a careless or hostile operator types it (issue 30): every case is refused in one line (at most
3), exit 2 unless a store is named unreachable (1), no traceback, nothing written to the project, and no secret or
raw control character echoed. In-process calls (Typer's runner, the entry points' main) keep the table fast."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import DIGITS_SIZES
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()
BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcde", "bcdef", strict=True))
BAD_PARAMS = {
    "bad YAML": "data: [1\n",
    "a YAML list": "- data\n- model\n",
    "binary": b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00",
    "an alias bomb": BOMB,
    "empty": "",
    "a NUL byte": "data:\x00 {}\n",
    "an integer past Python's digit limit": "seeds: [" + "9" * 5000 + "]\n",
    "an unknown key": "dta: {}\n",
}
BAD_SETS = {
    "an unclosed list": ["training.lr=[1"],
    "a value and then a section": ["training=1", "training.lr=2"],
    "a 5,000-digit integer": ["training.max_epochs=" + "9" * 5000],
    "an infinite gate budget": ["nightly.gate.max_val_acc_drop=.inf"],
    "NaN": ["training.lr=.nan"],
    "no value": ["training.lr"],
    "an empty key part": ["training..lr=1"],
}
SECRET = "s3cret-Pa55"


@pytest.fixture
def project(tmp_path, digits_root) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump({"data": {**DIGITS_SIZES, "root": str(digits_root)}}))
    (root / "data.dvc").write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  path: data\n")
    return root


@pytest.fixture(scope="module")
def d_ids(digits_root) -> list[int]:
    from iau_core.config import DataParams
    from iau_core.data import load_bundle

    return sorted(load_bundle(DataParams(**DIGITS_SIZES), digits_root).train.ids.tolist())[:2]


def files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))}


def iau(project: Path, *args: str, url: str | None = None):
    """`iau --project <project> --ledger-url sqlite:///<project>/ledger.db ARGS`, in-process."""
    result = runner.invoke(app, ["--project", str(project), "--ledger-url",
                                 url or f"sqlite:///{project / 'ledger.db'}", *args])
    return result


def assert_one_line_refusal(result, code: int = 2, *expected: str) -> None:
    out = result.output
    assert result.exit_code == code, out
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert 1 <= out.count("\n") <= 3 and out.startswith("error: "), out
    assert "Traceback" not in out and "\x1b" not in out and "╭" not in out, out
    for text in expected:
        assert text in out, (text, out)


@pytest.mark.parametrize("content", BAD_PARAMS.values(), ids=BAD_PARAMS.keys())
@pytest.mark.parametrize("command", [["requests", "add", "1", "--reason", "r"], ["doctor"], ["nightly"]],
                         ids=["requests add", "doctor", "nightly"])
def test_a_bad_params_file_is_refused_before_anything_opens(project, content, command):
    path = project / "params.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = files(project)
    result = iau(project, *command)
    assert_one_line_refusal(result, 2, str(path) if content != BAD_PARAMS["an unknown key"] else "dta")
    assert files(project) == before  # no ledger.db, no mlflow.db, no lock


def test_an_alias_bomb_is_refused_at_once(project):
    import time

    (project / "params.yaml").write_text(BOMB + "g: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n")
    start = time.monotonic()
    assert_one_line_refusal(iau(project, "doctor"), 2, "expands to more than")
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("overrides", BAD_SETS.values(), ids=BAD_SETS.keys())
def test_a_bad_set_is_refused_by_iau_nightly(project, overrides):
    before = files(project)
    args = [arg for item in overrides for arg in ("--set", item)]
    assert_one_line_refusal(iau(project, "nightly", *args), 2)
    assert files(project) == before


@pytest.mark.parametrize("overrides", BAD_SETS.values(), ids=BAD_SETS.keys())
def test_a_bad_set_is_refused_by_the_unlearn_flow_command(project, overrides, monkeypatch, capsys):
    """`python -m flows.unlearn --set ...`: its main, in this process (the refusal comes before any flow run)."""
    import flows.unlearn

    monkeypatch.chdir(project)
    monkeypatch.delenv("IAU_PROJECT_DIR", raising=False)
    monkeypatch.setattr(sys, "argv", ["flows.unlearn", *[a for item in overrides for a in ("--set", item)]])
    before = files(project)
    with pytest.raises(SystemExit) as exited:
        flows.unlearn.main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and 1 <= err.count("\n") <= 3 and "Traceback" not in err, err
    assert files(project) == before


@pytest.mark.parametrize(("args", "expected"), [
    (["requests", "add", "-5", "--reason", "r"], "a negative number is never a sample id"),
    (["requests", "show", "abc"], "iau requests show"),
    (["requests", "add", "5"], "Missing option '--reason'"),
    (["requests", "add", "5", "--reason", "   "], "the reason is empty"),
    (["requests", "add", "--reason", "r"], "no sample ids"),
    (["requests", "add", "--reason", "r", "--", "-5"], "negative number"),
    (["requests", "add", "99999999999999999999", "--reason", "r"], "argument 1"),
    (["requests", "cancel", "--reason", "r", "--", "-1"], "negative number"),
    (["requests", "list", "--status"], "--status"),
    (["data", "ids", "--role", "everything"], "unknown role"),
    (["nosuchcommand"], "No such command"),
], ids=["negative id without --", "text id for show", "no --reason", "blank reason", "no ids", "negative id",
        "past 64 bits", "cancel a negative id", "option without its value", "unknown role", "unknown command"])
def test_usage_mistakes_are_one_line(project, args, expected):
    before = files(project)
    assert_one_line_refusal(iau(project, *args), 2, expected)
    assert files(project) == before


def test_a_reason_that_is_not_utf8_is_refused_without_echoing_it(project, d_ids):
    result = iau(project, "requests", "add", str(d_ids[0]), "--reason", "gdpr \udcff\udcfe")
    assert_one_line_refusal(result, 2, "not UTF-8")
    assert not (project / "ledger.db").exists()


def test_purge_outside_a_project_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IAU_PROJECT_DIR", raising=False)
    result = runner.invoke(app, ["purge"])
    assert_one_line_refusal(result, 2, "params.yaml")
    assert list(tmp_path.iterdir()) == []


def test_a_password_in_the_url_query_is_never_printed(project):
    url = f"postgresql://u@127.0.0.1:1/iau?password={SECRET}"
    result = iau(project, "requests", "list", url=url)
    assert_one_line_refusal(result, 1, "password=***")
    assert SECRET not in result.output


def test_escape_codes_in_paths_are_escaped(project, tmp_path):
    evil = tmp_path / "\x1b[2Jclear\x07"
    assert_one_line_refusal(iau(project, "requests", "add", "--file", str(evil), "--reason", "r"), 2, "\\x1b[2J")
    result = runner.invoke(app, ["--project", str(evil), "requests", "add", "1", "--reason", "r"])
    assert_one_line_refusal(result, 2, "\\x1b[2J", "\\x07")


@pytest.mark.parametrize(("ids", "expected"), [
    ([-3, 1, 2, 3], "must be >= 0"),
    (["a7", "b3", "c1", "d2"], "give each record a stable integer id"),
    ([2**64 - 1, 1, 2, 3], "below 2^63"),
], ids=["negative", "text", "past 63 bits"])
def test_a_table_with_ids_no_request_could_name_is_refused_at_materialize(tmp_path, capsys, ids, expected):
    """`python -m iau_core.datasets`: the ids a deletion could never name stop the data being built at all."""
    from iau_core.datasets.__main__ import main

    rows = 400
    column = [f"r{i}" for i in range(rows)] if isinstance(ids[0], str) else list(range(rows))
    column[:len(ids)] = ids
    table = pd.DataFrame({"id": column, "label": np.arange(rows) % 2, "x": np.linspace(0, 1, rows)})
    table.to_parquet(tmp_path / "t.parquet", index=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "data": {"dataset": {"kind": "table", "name": "t", "path": "t.parquet", "sample_id_column": "id",
                             "label_column": "label"}}, "model": {"name": "mlp"}}))
    assert main(["--params", str(tmp_path / "params.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "data").exists()
