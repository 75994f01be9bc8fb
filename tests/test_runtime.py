"""Each process that runs torch takes its share of the cores (iau_core/runtime.py): real processes, a temporary
registry of pid files, torch's own thread count read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from iau_core.runtime import usable_cores

REPO = Path(__file__).resolve().parents[1]

# Registers with prepare_process("auto"), waits until every peer has registered (a file barrier), re-takes its
# share as an epoch boundary would, and reports torch's thread count; it leaves only after every peer reported.
PEER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from iau_core.runtime import prepare_process, rebalance_threads
    import torch

    barrier, name, peers = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    first = prepare_process("auto")

    def wait(suffix):
        (barrier / f"{name}.{suffix}").touch()
        deadline = time.monotonic() + 120
        while len(list(barrier.glob(f"*.{suffix}"))) < peers:
            assert time.monotonic() < deadline, f"peers never reached {suffix}"
            time.sleep(0.05)

    wait("registered")
    shared = rebalance_threads()
    report = {"first": first, "shared": shared, "torch": torch.get_num_threads(),
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    wait("measured")
    print(json.dumps(report))
""")


def start_peers(tmp_path: Path, count: int, env: dict[str, str]) -> list[dict]:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    clean = {k: v for k, v in os.environ.items()
             if k not in ("IAU_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    clean.update({"IAU_THREAD_REGISTRY": str(tmp_path / "registry"), **env})
    processes = [subprocess.Popen([sys.executable, "-c", PEER, str(barrier), f"p{i}", str(count)], cwd=REPO,
                                  env=clean, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(count)]
    reports = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def test_two_processes_started_together_share_the_cores(tmp_path):
    cores = usable_cores()
    reports = start_peers(tmp_path, 2, {})
    for report in reports:
        assert report["shared"] == report["torch"] == max(1, cores // 2)
        assert report["first"] in {cores, max(1, cores // 2)}  # alone for a moment, or already two
        assert report["omp_wait_policy"] in (None, "PASSIVE")  # PASSIVE if it saw the other one registered
    assert not list((tmp_path / "registry").glob("*.pid"))  # each removed its pid file at exit


def wait_policy_at_start(registry: Path, **env: str) -> str | None:
    """OMP_WAIT_POLICY as a fresh process sees it once iau_core is imported (torch not yet loaded)."""
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    clean.update({"IAU_THREAD_REGISTRY": str(registry), **env})
    out = subprocess.run([sys.executable, "-c", "import os, iau_core; print(os.environ.get('OMP_WAIT_POLICY'))"],
                         cwd=REPO, env=clean, capture_output=True, text=True, check=True, timeout=120).stdout
    return None if out.strip() == "None" else out.strip()


def test_openmp_sleeps_only_when_started_beside_a_peer(tmp_path):
    """Alone, OpenMP keeps its spinning default (faster); started while a live process is registered, its waiting
    threads sleep (oversubscribed spinning collapses); a value the user set is never replaced."""
    registry = tmp_path / "registry"
    registry.mkdir()
    assert wait_policy_at_start(registry) is None
    (registry / "999999999.pid").touch()  # a process that has ended: not a peer
    assert wait_policy_at_start(registry) is None
    (registry / f"{os.getpid()}.pid").touch()  # this test process: alive
    assert wait_policy_at_start(registry) == "PASSIVE"
    assert wait_policy_at_start(registry, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"


def test_iau_threads_overrides_the_share(tmp_path):
    reports = start_peers(tmp_path, 2, {"IAU_THREADS": "3"})
    assert [(r["first"], r["shared"], r["torch"]) for r in reports] == [(3, 3, 3)] * 2


def test_a_dead_peer_leaves_the_whole_machine_and_a_live_one_halves_it(tmp_path, monkeypatch):
    """The registry read directly: a pid file of a process that has ended is removed, a live one counts."""
    from iau_core.runtime import thread_share

    registry = tmp_path / "registry"
    registry.mkdir()
    monkeypatch.setenv("IAU_THREAD_REGISTRY", str(registry))
    monkeypatch.delenv("IAU_THREADS", raising=False)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (registry / f"{ended.stdout.strip()}.pid").touch()
    (registry / f"{os.getpid()}.pid").touch()
    assert thread_share("auto") == usable_cores()
    assert not (registry / f"{ended.stdout.strip()}.pid").exists()
    (registry / f"{os.getppid()}.pid").touch()  # the process that started pytest: alive
    assert thread_share("auto") == max(1, usable_cores() // 2)
    assert thread_share(5) == 5  # a fixed `threads:` ignores the peers


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
    assert done.stdout.split() == ["90", "False", "true", "1"]
