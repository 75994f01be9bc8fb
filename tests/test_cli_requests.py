"""`iau requests add|list|show` through Typer's runner, on a real project: params.yaml + the digits data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import DIGITS_SIZES
from typer.testing import CliRunner

from cli.ids import training_ids
from cli.main import app
from iau_core.config import DataParams
from iau_core.data import load_bundle
from ledger import Ledger

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory, digits_root) -> Path:
    root = tmp_path_factory.mktemp("project")
    (root / "params.yaml").write_text(yaml.safe_dump({"data": {**DIGITS_SIZES, "root": str(digits_root)}}))
    return root


@pytest.fixture(scope="module")
def roles(digits_root):
    """(ids of D, ids of the validation set: real records the model never trained on)."""
    bundle = load_bundle(DataParams(**DIGITS_SIZES), digits_root)
    return sorted(bundle.train.ids.tolist()), sorted(bundle.val.ids.tolist())


@pytest.fixture
def iau(project, tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"

    def invoke(*args: str):
        return runner.invoke(app, ["--ledger-url", url, "--project-root", str(project), *args])

    invoke.url = url
    return invoke


def listed(iau) -> list[dict]:
    done = iau("requests", "list", "--json")
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def test_training_ids_are_the_ids_of_d(project, roles):
    train, val = roles
    assert training_ids(project) == set(train) and len(train) == DIGITS_SIZES["train_size"]
    assert not training_ids(project) & set(val)


@pytest.mark.parametrize("args", [[], ["requests"], ["requests", "add"], ["requests", "list"], ["requests", "show"]])
def test_every_command_has_help(args):
    done = runner.invoke(app, [*args, "--help"])
    assert done.exit_code == 0 and "Usage" in done.stdout
    if args[-1:] == ["add"]:
        assert "--reason" in done.stdout and "--file" in done.stdout and "--tier" in done.stdout


def test_add_by_argument_and_by_file_then_re_add_is_a_notice(iau, roles, tmp_path):
    train, _ = roles
    done = iau("requests", "add", str(train[0]), str(train[1]), "--reason", "gdpr art. 17")
    assert done.exit_code == 0, done.output
    assert f"queued 2 deletion request(s), tier normal: {train[0]}, {train[1]}" in done.stdout
    csv_file = tmp_path / "ids.csv"
    csv_file.write_text(f"ticket,sample_id\nT-1,{train[2]}\nT-2,{train[1]}\n")
    done = iau("requests", "add", "--file", str(csv_file), "--reason", "poisoned", "--tier", "high")
    assert done.exit_code == 0, done.output
    assert f"queued 1 deletion request(s), tier high: {train[2]}" in done.stdout
    assert f"notice: already pending, left as they were: {train[1]}" in done.stdout
    plain = tmp_path / "ids.txt"
    plain.write_text(f"{train[3]}\r\n {train[4]} \n")  # Windows line ends and spaces around an id are fine
    assert iau("requests", "add", "-f", str(plain), "--reason", "stale").exit_code == 0
    records = {r["sample_id"]: r for r in listed(iau)}
    assert set(records) == set(train[:5])
    assert records[train[2]]["tier"] == "high" and records[train[1]]["reason"] == "gdpr art. 17"
    assert all(r["status"] == "pending" and r["batch_id"] is None and r["model_version"] is None
               for r in records.values())


@pytest.mark.parametrize(("content", "expected"), [
    (b"\xef\xbb\xbf{a}\n{b}\n", "line 1 starts with a UTF-8 byte-order mark"),
    (b"{a}\n\n{b}\n", "line 2: blank line"),
    (b"{a}\n{b}\n\n", "line 3: blank line"),
    (b"{a}\n12x\n{b}\n1.5\n", "line 2: not an integer: '12x'\n  line 4: not an integer: '1.5'"),
    (b"{a}\n-7\n", "line 2: negative number -7"),
    (b"sample_id,ticket\n{a},T-1\n-{b},T-2\n", "line 3: negative number -{b}"),
    (b"sample_id,ticket\n{a}\n", "line 2: 1 fields, the header has 2"),
    (b"id,ticket\n{a},T-1\n", "without a 'sample_id' column"),
    (b"", "the file is empty"),
])
def test_a_malformed_file_is_refused_naming_the_line_and_nothing_is_written(iau, roles, tmp_path, content,
                                                                             expected):
    train, _ = roles
    a, b = (str(i).encode() for i in train[:2])
    path = tmp_path / "ids.csv"
    path.write_bytes(content.replace(b"{a}", a).replace(b"{b}", b))
    done = iau("requests", "add", str(train[5]), "--file", str(path), "--reason", "gdpr")
    assert done.exit_code == 2, done.output
    assert expected.format(a=train[0], b=train[1]) in done.stderr
    assert listed(iau) == []


def test_unknown_ids_refuse_the_whole_call(iau, roles):
    train, val = roles
    done = iau("requests", "add", str(train[0]), str(val[0]), "999999", "--reason", "gdpr")
    assert done.exit_code == 2
    assert f"not in the current training data: {val[0]}, 999999" in done.stderr
    assert "nothing was written" in done.stderr
    assert listed(iau) == []


def test_bad_arguments_are_refused(iau, roles):
    train, _ = roles
    for args, code, expected in [
        (["--", "-3"], 2, "argument 1: negative number -3"),
        (["12a"], 2, "argument 1: not an integer: '12a'"),
        ([str(train[0]), "--tier", "urgent"], 2, "tier 'urgent' is not one of normal, high"),
        ([str(train[0]), "--reason", " "], 2, "the reason is empty"),
        ([], 2, "no sample ids"),
    ]:
        reason = [] if "--reason" in args else ["--reason", "gdpr"]
        done = iau("requests", "add", *reason, *args)
        assert done.exit_code == code and expected in done.stderr, (args, done.output)
    done = iau("requests", "add", str(train[0]))  # --reason is required
    assert done.exit_code == 2 and "--reason" in done.output
    assert listed(iau) == []


def test_forgotten_ids_are_refused_and_show_prints_the_history_with_the_gate(iau, roles):
    train, _ = roles
    assert iau("requests", "add", str(train[0]), str(train[1]), "--reason", "gdpr").exit_code == 0
    with Ledger(iau.url) as ledger:  # what the nightly batch does
        ledger.record_champion("1", data_version="dv0", train_size=len(train))
        batch = ledger.open_batch("1", "dv0")
        ledger.finish_batch(batch.id, "2", "dv1", "iau", {"val_acc_drop": 0.4, "attack_auc": 0.52, "passed": True},
                            "run-9")
    done = iau("requests", "add", str(train[2]), str(train[0]), "--reason", "again")
    assert done.exit_code == 2
    assert f"already forgotten: {train[0]} (model version 2, batch 1)" in done.stderr
    assert [r["sample_id"] for r in listed(iau)] == train[:2]  # train[2] was not queued

    done = iau("requests", "show", str(train[0]))
    assert done.exit_code == 0, done.output
    out = done.stdout
    assert f"sample_id {train[0]}: done (tier normal)" in out
    assert "first excluded by model version 2, data version dv1" in out
    for line in ("requested", "claimed", "gate", "done"):
        assert f"  {line} " in out
    assert "val_acc_drop=0.4, attack_auc=0.52, passed=True" in out
    history = out[out.index("history:"):out.index("receipt:")].splitlines()[1:]
    assert [line.split()[1] for line in history] == ["requested", "claimed", "gate", "done"]
    receipt = out[out.index("receipt:"):]  # the proof of forgetting ends the output
    assert "model version: 2 (the first that excludes the record; batch 1)" in receipt
    assert "data version:  dv1" in receipt and "earlier weights: not purged yet" in receipt

    shown = json.loads(iau("requests", "show", str(train[0]), "--json").stdout)
    assert shown["request"]["model_version"] == "2"
    assert [e["kind"] for e in shown["events"]] == ["requested", "claimed", "gate", "done"]

    missing = iau("requests", "show", str(train[3]))
    assert missing.exit_code == 2 and f"no deletion request for sample_id {train[3]}" in missing.stderr


def test_list_table_filter_and_json(iau, roles):
    train, _ = roles
    assert iau("requests", "list").stdout.strip() == "no deletion requests"
    iau("requests", "add", str(train[0]), "--reason", "gdpr")
    iau("requests", "add", str(train[1]), "--reason", "poisoned record", "--tier", "high")
    with Ledger(iau.url) as ledger:
        ledger.open_batch("1", "dv0")
    iau("requests", "add", str(train[2]), "--reason", "late")
    table = iau("requests", "list").stdout.splitlines()
    assert table[0].split() == ["sample_id", "status", "tier", "requested_at", "batch_id", "model_version",
                                "data_version", "reason"]
    assert table[2].split()[:3] == [str(train[1]), "processing", "high"] and table[2].endswith("poisoned record")
    pending = json.loads(iau("requests", "list", "--status", "pending", "--json").stdout)
    assert [r["sample_id"] for r in pending] == [train[2]]
    record = pending[0]
    assert {"sample_id", "status", "reason", "tier", "requested_at", "batch_id", "model_version",
            "data_version"} <= set(record)
    assert record["requested_at"].endswith("+00:00")
    bad = iau("requests", "list", "--status", "waiting")
    assert bad.exit_code == 2 and "not one of pending, processing, done, escalated" in bad.stderr


def test_an_unreachable_ledger_fails_cleanly_without_showing_the_password():
    url = "postgresql://ops:hunter2@127.0.0.1:1/ledger"  # nothing listens on port 1
    done = runner.invoke(app, ["--ledger-url", url, "requests", "list"])
    assert done.exit_code == 1
    assert "the ledger at postgresql://ops:***@127.0.0.1:1/ledger cannot be used" in done.stderr
    assert "hunter2" not in done.output


def test_the_module_runs_as_a_command():
    done = subprocess.run([sys.executable, "-m", "cli.main", "requests", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "add" in done.stdout and "show" in done.stdout
