"""Each process that runs torch fixes its thread count at start, from params and its own affinity alone
(iau_core/runtime.py): real processes, torch's own thread count read back, real training compared bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from iau_core.runtime import THREADS_ENV, resolve_threads, usable_cores

REPO = Path(__file__).resolve().parents[1]

# Fixes its threads (threads: auto), waits until every peer has too (a file barrier), trains the default recipe's
# model briefly on the digits records given, and reports its thread count before and after training and a digest
# of the trained weights. It leaves only after every peer has trained, so the peers overlap throughout.
TRAINER = textwrap.dedent("""
    import hashlib, json, sys, time
    from pathlib import Path
    from iau_core.runtime import prepare_process
    import torch
    from iau_core.config import TrainingParams
    from iau_core.data import Split
    from iau_core.models import LeNet5
    from iau_core.training import train_model

    barrier, name, peers, data = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    first = prepare_process("auto")

    def wait(suffix):
        (barrier / f"{name}.{suffix}").touch()
        deadline = time.monotonic() + 240
        while len(list(barrier.glob(f"*.{suffix}"))) < peers:
            assert time.monotonic() < deadline, f"peers never reached {suffix}"
            time.sleep(0.02)

    saved = torch.load(data, weights_only=True)
    train, val = (Split(saved[k + "_x"], saved[k + "_y"], saved[k + "_ids"]) for k in ("train", "val"))
    torch.manual_seed(0)
    channels, height, width = saved["input_shape"]
    model = LeNet5(channels, 10, height, width)
    recipe = TrainingParams(lr=0.002, batch_size=64, max_epochs=1, patience=1, gr_alpha=0.005)
    wait("started")
    train_model(model, train, val, recipe, torch.device("cpu"), seed=0)
    after = torch.get_num_threads()
    weights = b"".join(t.detach().contiguous().numpy().tobytes() for t in model.state_dict().values())
    wait("trained")
    print(json.dumps({"first": first, "after": after, "digest": hashlib.sha256(weights).hexdigest()}))
""")


def caller_env(**env: str) -> dict[str, str]:
    """This environment without the thread and wait settings the suite runs under, plus `env`."""
    dropped = (THREADS_ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    return {**{k: v for k, v in os.environ.items() if k not in dropped}, **env}


def train_in_processes(tmp_path: Path, data: Path, count: int, run: str) -> list[dict]:
    barrier = tmp_path / run
    barrier.mkdir()
    processes = [subprocess.Popen([sys.executable, "-c", TRAINER, str(barrier), f"p{i}", str(count), str(data)],
                                  cwd=REPO, env=caller_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for i in range(count)]
    reports = []
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-2000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory, digits_bundle) -> Path:
    path = tmp_path_factory.mktemp("runtime") / "digits.pt"
    b = digits_bundle
    train = b.train.take(torch.arange(300))  # seconds of training: enough for every op of the recipe
    torch.save({"train_x": train.x, "train_y": train.y, "train_ids": train.ids, "val_x": b.val.x,
                "val_y": b.val.y, "val_ids": b.val.ids, "input_shape": list(b.input_shape)},
               path)
    return path


def test_two_runs_started_together_give_the_weights_of_one_run_alone(tmp_path, digits_file):
    """The same params and data give the same model whatever else runs: a peer's start changes neither the
    thread count (before or after training) nor one bit of the weights."""
    alone = train_in_processes(tmp_path, digits_file, 1, "alone")
    together = train_in_processes(tmp_path, digits_file, 2, "together")
    cores = usable_cores()
    for report in alone + together:
        assert (report["first"], report["after"]) == (cores, cores)
    assert {r["digest"] for r in together} == {alone[0]["digest"]}


def test_auto_is_this_process_usable_cores_and_a_number_is_kept(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert resolve_threads("auto") == usable_cores() == len(os.sched_getaffinity(0))
    assert resolve_threads(5) == 5


def test_auto_follows_the_affinity_not_the_machine():
    """Under taskset (a container's CPU limit reads the same way) auto takes the cores the process may use."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 usable cores to pin a process to fewer")
    code = "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); " \
           "from iau_core.runtime import prepare_process; import torch; print(prepare_process('auto'), " \
           "torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=caller_env(), capture_output=True, text=True,
                         check=True, timeout=300).stdout
    assert out.split() == ["1", "1"]


@pytest.mark.parametrize("setting", ["auto", 4])
def test_iau_threads_overrides_params(monkeypatch, setting):
    monkeypatch.setenv(THREADS_ENV, "3")
    assert resolve_threads(setting) == 3
    for bad in ("0", "two"):
        monkeypatch.setenv(THREADS_ENV, bad)
        with pytest.raises(ValueError, match=THREADS_ENV):
            resolve_threads(setting)


def test_iau_threads_reaches_torch_in_a_fresh_process():
    code = "from iau_core.runtime import prepare_process; import torch; print(prepare_process(7), " \
           "torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=caller_env(**{THREADS_ENV: "1"}),
                         capture_output=True, text=True, check=True, timeout=300).stdout
    assert out.split() == ["1", "1"]


def openmp_spin_count(before_torch: str, **env: str) -> str:
    """The spin count libgomp (torch's OpenMP) read when torch loaded in a fresh process that first ran
    `before_torch`: 0 = waiting threads sleep; 300000 is libgomp's default spinning."""
    code = f"{before_torch}\nimport torch"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=caller_env(OMP_DISPLAY_ENV="verbose", **env),
                          capture_output=True, text=True, check=True, timeout=300)
    found = [line.split("=")[1].strip().strip("'") for line in done.stderr.splitlines() if "GOMP_SPINCOUNT" in line]
    if not found:
        pytest.skip("torch's OpenMP is not libgomp: it does not display its spin count")
    return found[0]


@pytest.mark.parametrize("entry", ["from iau_core.runtime import prepare_process; prepare_process('auto')",
                                   "import flows  # an entry point that imports torch later"])
def test_openmp_threads_sleep_in_every_run_whatever_runs_beside_it(entry):
    """What OpenMP itself read, not just the environment: waiting threads sleep (a spinning pair collapses), set
    before torch loads, with or without a neighbour."""
    assert openmp_spin_count(entry) == "0"


def test_a_wait_the_user_chose_is_kept():
    prepare = "from iau_core.runtime import prepare_process; prepare_process('auto')"
    assert openmp_spin_count(prepare, OMP_WAIT_POLICY="ACTIVE") == "30000000000"
    assert openmp_spin_count(prepare, GOMP_SPINCOUNT="10000") == "10000"


def test_the_thread_count_is_recorded_with_the_run(digits_params):
    """Every MLflow run that logs params logs this process's torch thread count beside them."""
    from stores.tracking import flatten

    logged = flatten(digits_params)
    assert logged["torch_threads"] == str(torch.get_num_threads())
    assert logged["threads"] == "auto"


def clean_env() -> dict[str, str]:
    """A user's shell outside the Makefile: none of the offline settings, none of ours."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "IAU_THREADS": "1"}


def test_outside_the_makefile_materializing_prints_no_noise(tmp_path):
    (tmp_path / "params.yaml").write_text("data:\n  dataset: digits\n")
    done = subprocess.run([sys.executable, "-m", "iau_core.datasets"], cwd=tmp_path, env=clean_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == ""  # no telemetry errors, no progress bars
    assert "1797 records" in done.stdout


def test_a_flow_module_gets_the_settings_before_prefect_reads_them(tmp_path):
    """Prefect reads its settings once, when imported: `python -m flows.unlearn` must have set them by then."""
    code = ("import flows.unlearn, os; from prefect.settings import get_current_settings as s; "
            "print(s().server.ephemeral.startup_timeout_seconds, s().server.analytics_enabled, "
            "os.environ['MLFLOW_DISABLE_TELEMETRY'], os.environ['DVC_NO_ANALYTICS'])")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=clean_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["180", "False", "true", "1"]
