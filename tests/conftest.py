"""Shared fixtures: the real digits dataset, materialized once, in small roles that train in seconds."""

from __future__ import annotations

import pytest
import torch

from iau_core.config import DataParams, Params, TrainingParams, parse_params
from iau_core.data import DataBundle, load_bundle
from iau_core.runtime import prepare_process
from iau_core.sources import materialize

prepare_process("auto")  # offline settings, and this test process's share of the cores

# `make test` runs the suite on two xdist workers (-n 2 --dist loadgroup), one per group below. The files that work
# in project folders of their own (sandbox/projects.py) make one group; everything else, which reads and writes this
# checkout's data/ and its DVC cache, the other. So no two tests use one DVC repository at once, each module's
# fixtures are built once, and the two halves (about 20 minutes each on 2 cores) overlap.
OWN_PROJECT_FILES = {"test_nightly", "test_deployments", "test_own_data", "test_mlflow_server", "test_install",
                     "test_cli_project", "test_cli_requests"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.xdist_group("own-projects" if item.path.stem in OWN_PROJECT_FILES else "checkout"))


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
