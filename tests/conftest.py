"""Shared fixtures: the real digits dataset, materialized once, in small roles that train in seconds."""

from __future__ import annotations

import os
from pathlib import Path

from iau_core.runtime import THREADS_ENV, prepare_process, quiet_offline_env, usable_cores

# Before torch loads OpenMP: waiting threads sleep, so the two xdist workers (and the CLI processes tests start) never
# spin against each other. Each worker takes a fixed share of the cores, decided here once and inherited by the
# processes it starts: a test's outcome never depends on what else runs (iau_core/runtime.py).
quiet_offline_env()
if "PYTEST_XDIST_WORKER" in os.environ:  # a worker (the controller runs no test and sets nothing its workers inherit)
    os.environ.setdefault(THREADS_ENV, str(max(1, usable_cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import pytest  # noqa: E402
import torch  # noqa: E402

from iau_core.config import DataParams, Params, TrainingParams, parse_params  # noqa: E402
from iau_core.data import DataBundle, load_bundle  # noqa: E402
from iau_core.sources import materialize  # noqa: E402

prepare_process("auto")  # offline settings, and this test process's thread count (IAU_THREADS above)

# `make test` runs the suite on two xdist workers (-n 2 --dist loadgroup). The files below run flows or the CLI in
# this checkout, or write its data/ and DVC cache: they form one unit of work, run in order on one worker, so no two
# of them use the repository at once. Every other file (its own data and project folders, in temporary folders) is
# a unit of its own, handed to whichever worker is free; each module's fixtures are built once.
CHECKOUT_FILES = {"test_flow", "test_dask", "test_cli", "test_bench", "test_runtime", "test_artifacts", "test_tracking",
                  "test_plots"}


def work_unit(nodeid: str) -> str:
    """The xdist unit a test belongs to: 'checkout' or its own file."""
    file = nodeid.split("::")[0]
    return "checkout" if Path(file).stem in CHECKOUT_FILES else file


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist (requirements.txt); ignored without it
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    # xdist 3.8's own loadgroup tags each test's nodeid, which pytest 9 no longer reads (every test became a unit
    # of its own and module fixtures were built once per worker); this scheduler groups by work_unit instead.
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ByWorkUnit(config, log)


DIGITS_SIZES = {"dataset": "digits", "train_size": 600, "val_size": 200, "test_size": 300, "shadow_pool_size": 600}


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("data")
    materialize("digits", root)
    return root


@pytest.fixture(scope="session")
def digits_params() -> Params:
    """Small, fast settings on digits; tests change single fields with model_copy(update=...)."""
    return parse_params({
        "device": "cpu",
        "data": DIGITS_SIZES,
        "training": {"lr": 0.002, "batch_size": 32, "max_epochs": 15, "patience": 4, "gr_alpha": 0.005},
        "selection": {"strategy": "random", "fraction": 0.1},
        "unlearning": {"methods": ["iau"], "eta": 0.05, "batch_size": 128},
        # holdout 0: 20% of these few shadow records (a few dozen) is too noisy a loss to stop the attack MLP on
        "mia": {"num_shadow": 2, "epochs": 30, "holdout": 0.0},
    })


@pytest.fixture(scope="session")
def digits_bundle(digits_root, digits_params) -> DataBundle:
    return load_bundle(DataParams(**DIGITS_SIZES), root=digits_root)


def training(**changes) -> TrainingParams:
    base = {"lr": 0.002, "batch_size": 32, "max_epochs": 15, "patience": 4, "gr_alpha": 0.0}
    return TrainingParams(**{**base, **changes})


@pytest.fixture(scope="session")
def trained(digits_bundle, digits_params):
    """(deployed model, D_f, D_r) on digits, trained once for every method test; tests must not change it."""
    from iau_core.recipe import train_original
    from iau_core.selection import select_forget_set

    model, _ = train_original(digits_params, digits_bundle, torch.device("cpu"))
    ids = select_forget_set(digits_bundle.train, digits_params.selection, seed=0)
    forget, retain = digits_bundle.train.partition(ids)
    return model, forget, retain
