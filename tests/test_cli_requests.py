"""`iau requests add|list|show|cancel` through Typer's runner, on a real project: params.yaml + the digits data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import DIGITS_SIZES
from typer.testing import CliRunner

from cli.main import app
from iau_core.config import DataParams, load_params
from iau_core.data import load_bundle
from ledger import Ledger, RequestError
from ops.intake import training_ids
from tests.ledger_calls import finish

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
LIMITS = {"max_file_bytes": 64 * 1024, "max_ids_per_call": 1000}  # small, so the tests stay fast
IAU = str(Path(sys.executable).parent / "iau")


@pytest.fixture(scope="module")
def project(tmp_path_factory, digits_root) -> Path:
    root = tmp_path_factory.mktemp("project")
    (root / "params.yaml").write_text(yaml.safe_dump({"data": {**DIGITS_SIZES, "root": str(digits_root)},
                                                      "requests": LIMITS}))
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
    known = training_ids(project, load_params(project / "params.yaml"))
    assert known == set(train) and len(train) == DIGITS_SIZES["train_size"]
    assert not known & set(val)


@pytest.mark.parametrize("args", [[], ["requests"], ["requests", "add"], ["requests", "list"], ["requests", "show"],
                                  ["requests", "cancel"]])
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
    assert f"notice: already pending, tier raised to high: {train[1]}" in done.stdout  # never silently kept
    plain = tmp_path / "ids.txt"
    plain.write_text(f"{train[3]}\r\n {train[4]} \n")  # Windows line ends and spaces around an id are fine
    assert iau("requests", "add", "-f", str(plain), "--reason", "stale").exit_code == 0
    records = {r["sample_id"]: r for r in listed(iau)}
    assert set(records) == set(train[:5])
    assert records[train[2]]["tier"] == "high" and records[train[1]]["reason"] == "gdpr art. 17"
    assert records[train[1]]["tier"] == "high"
    assert all(r["status"] == "pending" and r["batch_id"] is None and r["model_version"] is None
               for r in records.values())


@pytest.mark.parametrize(("content", "expected"), [
    (b"\xef\xbb\xbf{a}\n{b}\n", "line 1 starts with a UTF-8 byte-order mark"),
    (b"{a}\n\n{b}\n", "line 2: blank line"),
    (b"{a}\n{b}\n\n", "line 3: blank line"),
    (b"{a}\n12x\n{b}\n1.5\n", "2 bad input(s), nothing was written: line 2: not an integer; line 4: not an integer"),
    (b"{a}\n-7\n", "line 2: negative number (sample ids are >= 0)"),
    (b"sample_id,ticket\n{a},T-1\n-{b},T-2\n", "line 3: negative number"),
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
        (["--", "-3"], 2, "argument 1: negative number: '-3'"),
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
        finish(ledger, batch.id, "2", "dv1", "iau", {"val_acc_drop": 0.4, "attack_auc": 0.52, "passed": True},
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


def test_an_unreachable_ledger_fails_cleanly_without_showing_the_password(project):
    url = "postgresql://ops:hunter2@127.0.0.1:1/ledger"  # nothing listens on port 1
    for command in (["requests", "list"], ["nightly"], ["train"]):  # the flows: refused before Prefect starts
        done = runner.invoke(app, ["--ledger-url", url, "--project-root", str(project), *command])
        assert done.exit_code == 1, done.output
        assert "the ledger at postgresql://ops:***@127.0.0.1:1/ledger cannot be used" in done.stderr
        assert "hunter2" not in done.output and done.stderr.count("\n") == 1 and "Traceback" not in done.output


def test_the_module_runs_as_a_command():
    done = subprocess.run([sys.executable, "-m", "cli.main", "requests", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "add" in done.stdout and "show" in done.stdout


# ---- hostile input (issue 18): each refused in one line, at once, in bounded memory, with nothing written -----


def one_line_refusal(code: int, stderr: str, output: str, expected: str) -> None:
    message = stderr.strip()
    assert code == 2, output
    assert "\n" not in message and message.startswith("error: "), message
    assert len(message) < 600 and "Traceback" not in output
    assert expected in message, message


def ledger_state(iau) -> tuple:
    """What a refused call must leave as it was: every request and its history."""
    requests = listed(iau)
    return requests, [iau("requests", "show", str(r["sample_id"]), "--json").stdout for r in requests]


@pytest.fixture
def seeded(iau, roles):
    train, _ = roles
    assert iau("requests", "add", str(train[0]), "--reason", "seed").exit_code == 0
    return ledger_state(iau)


def test_hostile_files_are_refused_in_one_line_without_echoing_them(iau, roles, tmp_path, seeded):
    train, _ = roles
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n" * 30)
    big = tmp_path / "big.txt"
    big.write_text("1" * (LIMITS["max_file_bytes"] + 1))
    many = tmp_path / "many.txt"
    many.write_text("".join(f"{10**12 + i}\n" for i in range(LIMITS["max_ids_per_call"] + 1)))
    million = tmp_path / "million.txt"  # 10^6 unknown ids: refused by size before any is parsed or named
    million.write_text("".join(f"{10**12 + i}\n" for i in range(10**6)))
    huge = tmp_path / "huge.txt"
    huge.write_text(f"{train[1]}\n9223372036854775808\n{10**30}\n")
    binary = tmp_path / "binary"
    binary.write_bytes(b"1\x002\n")
    for path, expected in [
        (passwd, "30 bad input(s), nothing was written: line 1: not an integer"),
        (big, f"larger than the limit of {LIMITS['max_file_bytes']} bytes"),
        (many, f"more than the limit of {LIMITS['max_ids_per_call']} ids per call"),
        (million, f"larger than the limit of {LIMITS['max_file_bytes']} bytes"),
        (huge, "line 2: out of range (sample ids are at most 2^63-1"),
        (tmp_path, "is a directory"),
        (tmp_path / "absent", "cannot read it"),
        (binary, "line 1: not an integer"),
    ]:
        done = iau("requests", "add", "--file", str(path), "--reason", "hostile")
        one_line_refusal(done.exit_code, done.stderr, done.output, expected)
        assert "root:" not in done.output  # never the file's contents
    assert ledger_state(iau) == seeded


def test_a_fifo_and_dev_zero_are_refused_at_once(project, iau, tmp_path, seeded):
    """Through the installed command: a FIFO would block a reader forever, /dev/zero would fill memory."""
    fifo = tmp_path / "ids.fifo"
    os.mkfifo(fifo)
    for path, expected in [(fifo, "is a FIFO"), (Path("/dev/zero"), "is a character device")]:
        done = subprocess.run([IAU, "--ledger-url", iau.url, "--project-root", str(project), "requests", "add",
                               "--file", str(path), "--reason", "hostile"], capture_output=True, text=True,
                              timeout=60)
        one_line_refusal(done.returncode, done.stderr, done.stdout + done.stderr, expected)
    assert ledger_state(iau) == seeded


def test_ids_past_64_bits_and_too_many_ids_are_refused(iau, roles, seeded):
    train, _ = roles
    for args, expected in [
        (["9223372036854775808"], "argument 1: out of range: '9223372036854775808'"),
        ([str(10**30)], "argument 1: out of range"),
        (["1" * 5000], "argument 1: out of range: '111111111111111111111111...'"),
        ([str(train[1])] * (LIMITS["max_ids_per_call"] + 1), "more than the limit of 1000 ids per call"),
        ([f"x{i}" for i in range(500)], "500 bad input(s), nothing was written: argument 1: not an integer"),
    ]:
        done = iau("requests", "add", "--reason", "hostile", *args)
        one_line_refusal(done.exit_code, done.stderr, done.output, expected)
    for value in ("9223372036854775808", str(2**66)):
        done = iau("requests", "show", value)
        one_line_refusal(done.exit_code, done.stderr, done.output, "out of range")
    assert ledger_state(iau) == seeded


@pytest.mark.parametrize(("url", "expected"), [
    ("notaurl", "the ledger URL is not a database URL"),
    ("mysql://ops:s3cret@localhost/ledger", "the ledger URL mysql://ops:***@localhost/ledger uses 'mysql'"),
    ("sqlite:////proc/nope/x.db", "is in the folder /proc/nope, which does not exist"),
    ("sqlite://", "names no file"),
])
def test_a_bad_ledger_url_is_refused_in_one_line(project, url, expected):
    for command in (["requests", "list"], ["requests", "add", "1", "--reason", "x"], ["nightly"]):
        done = runner.invoke(app, ["--ledger-url", url, "--project-root", str(project), *command])
        one_line_refusal(done.exit_code, done.stderr, done.output, expected)
        assert "s3cret" not in done.output
    assert not Path("/proc/nope").exists()


def test_a_million_unknown_ids_make_a_short_refusal(tmp_path):
    """Past the CLI's limits (a caller of the ledger itself): the refusal names 20 ids and counts the rest."""
    with Ledger(f"sqlite:///{tmp_path / 'l.db'}") as ledger:
        with pytest.raises(RequestError) as caught:
            ledger.add_requests(range(10**12, 10**12 + 10**6), "gdpr", "normal", {1, 2})
        assert len(str(caught.value)) < 600 and "and 999980 more" in str(caught.value)
        assert ledger.list_requests() == []


def test_control_characters_in_a_reason_are_stored_as_given_but_printed_escaped(iau, roles):
    train, _ = roles
    reason = "gdpr\x1b]0;owned\x07\rFAKE|col\nnext\u202e"
    assert iau("requests", "add", str(train[0]), "--reason", reason).exit_code == 0
    assert listed(iau)[0]["reason"] == reason  # stored as given (JSON escapes it by itself)
    for args in (["requests", "list"], ["requests", "show", str(train[0])]):
        out = iau(*args).stdout
        assert not {"\x1b", "\x07", "\r", "\u202e"} & set(out), args
        assert "gdpr\\x1b]0;owned\\x07\\rFAKE|col\\nnext\\u202e" in out


def test_the_audit_table_keeps_a_reason_in_its_cell():
    from reporting.tables import audit_report

    audit = {"batch_id": 1, "outcome": "promoted", "method": "iau", "parent_model_version": "m/1",
             "model_version": "m/2", "parent_data_version": "a", "data_version": "b", "mlflow_run_id": "r",
             "prefect_flow_run_id": "f", "gates": {}, "steps": {},
             "requests": [{"sample_id": 7, "tier": "high", "reason": "a | b\nc\x1b[31m", "requested_at": "t"}]}
    rows = [line for line in audit_report(audit).splitlines() if line.startswith("| 7 ")]
    assert rows == ["| 7 | high | a \\| b\\nc\\x1b[31m | t |"]


def test_a_higher_tier_on_re_add_raises_the_tier_with_a_notice(iau, roles):
    train, _ = roles
    assert iau("requests", "add", str(train[0]), "--reason", "gdpr").exit_code == 0
    done = iau("requests", "add", str(train[0]), str(train[1]), "--reason", "poisoned", "--tier", "high")
    assert done.exit_code == 0, done.output
    assert f"notice: already pending, tier raised to high: {train[0]}" in done.stdout
    lower = iau("requests", "add", str(train[0]), "--reason", "again", "--tier", "normal")
    assert f"notice: already pending, left as they were: {train[0]}" in lower.stdout  # never lowered
    records = {r["sample_id"]: r for r in listed(iau)}
    assert records[train[0]]["tier"] == "high" and records[train[0]]["reason"] == "gdpr"
    shown = json.loads(iau("requests", "show", str(train[0]), "--json").stdout)
    assert [e["kind"] for e in shown["events"]] == ["requested", "tier-raised"]


def test_cancel_withdraws_pending_requests_in_one_line_or_refuses_in_one(iau, roles):
    train, _ = roles
    assert iau("requests", "add", str(train[0]), str(train[1]), "--reason", "gdpr").exit_code == 0
    done = iau("requests", "cancel", str(train[0]), "--reason", "asked by mistake")
    assert done.exit_code == 0 and done.stdout.strip() == f"cancelled 1 deletion request(s): {train[0]}"
    assert {r["sample_id"]: r["status"] for r in listed(iau)} == {train[0]: "cancelled", train[1]: "pending"}
    shown = iau("requests", "show", str(train[0])).stdout
    assert "cancelled" in shown and "asked by mistake" in shown
    for args, message in ((["99999999", "--reason", "x"], "no deletion request for 99999999"),
                          ([str(train[0]), "--reason", "x"], "not pending, so not cancellable"),
                          ([str(train[1])], "--reason")):
        refused = iau("requests", "cancel", *args)
        assert refused.exit_code == 2 and message in refused.output, refused.output
    assert {r["sample_id"]: r["status"] for r in listed(iau)}[train[1]] == "pending"
