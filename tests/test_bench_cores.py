"""The bench times on the cores no neighbour keeps busy (benchmarks/cores.py): a busy loop shows as a taken core,
the count the user chose is kept, and at least one thread always remains."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks import cores
from iau_core.runtime import THREADS_ENV, usable_cores


def test_a_busy_loop_beside_the_bench_shows_as_a_whole_core():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        seen = cores.busy_cores_beside(1.0)
    finally:
        busy.kill()
        busy.wait()
    if seen is None:
        pytest.skip("no /proc/stat on this system")
    assert seen >= 0.8  # other load on the machine can only add to it
    assert seen <= usable_cores() + 0.05


@pytest.mark.parametrize(("busy", "usable", "threads"), [
    (0.0, 2, 2), (0.3, 2, 2), (0.6, 2, 1), (1.0, 2, 1), (5.0, 2, 1), (1.0, 16, 15), (2.4, 16, 14)])
def test_the_thread_count_is_the_cores_not_taken(monkeypatch, busy, usable, threads):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setattr(cores, "busy_cores_beside", lambda seconds: busy)
    monkeypatch.setattr(cores, "usable_cores", lambda: usable)
    choice = cores.bench_threads("auto")
    assert choice.threads == threads and choice.busy_cores == busy


def test_a_count_the_user_chose_is_kept(monkeypatch):
    monkeypatch.setattr(cores, "busy_cores_beside", lambda seconds: pytest.fail("the load must not be read"))
    monkeypatch.setenv(THREADS_ENV, "3")
    assert cores.bench_threads("auto").threads == 3
    monkeypatch.delenv(THREADS_ENV)
    assert cores.bench_threads(2).threads == 2


def test_an_unreadable_load_keeps_every_usable_core(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setattr(cores, "busy_cores_beside", lambda seconds: None)
    assert cores.bench_threads("auto").threads == usable_cores()
