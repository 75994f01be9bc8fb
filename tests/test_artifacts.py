"""stores.artifacts: a run's artifact is downloaded once per process, and every caller gets a module of its own."""

from __future__ import annotations

import mlflow.artifacts
import numpy as np
import pytest
import torch

from iau_core.attacks import ATTACK_NAMES, AttackMLP
from iau_core.recipe import model_builder
from stores import artifacts
from stores.artifacts import LIRA_FILE, ModelRef, attack_file
from stores.project import RunContext


@pytest.fixture
def ctx(monkeypatch, digits_params, digits_bundle) -> RunContext:
    monkeypatch.setattr(RunContext, "bundle", lambda self: digits_bundle)
    artifacts.clear()
    yield RunContext(digits_params, "test-version", "0")
    artifacts.clear()


def test_a_state_dict_is_downloaded_once_and_each_model_is_fresh(ctx, monkeypatch, digits_params, digits_bundle):
    weights = model_builder(digits_params, digits_bundle)(0).state_dict()
    downloads = []
    monkeypatch.setattr(artifacts.tracking, "load_state_dict", lambda run_id: downloads.append(run_id) or weights)
    first = artifacts.load_base_model(ctx, ModelRef("run-a", ""))
    second = artifacts.load_base_model(ctx, ModelRef("run-a", ""))
    assert downloads == ["run-a"]
    assert first is not second
    with torch.no_grad():  # a method that changes its model in place leaves the next method's untouched
        next(first.parameters()).add_(1.0)
    assert torch.equal(next(second.parameters()), weights[next(iter(weights))])
    assert torch.equal(artifacts.load_base_model(ctx, ModelRef("run-a", "")).state_dict()[next(iter(weights))],
                       weights[next(iter(weights))])
    artifacts.load_base_model(ctx, ModelRef("run-b", ""))
    assert downloads == ["run-a", "run-b"]


def test_the_attacks_are_downloaded_once_and_built_fresh(ctx, monkeypatch, digits_bundle, tmp_path):
    mlp = AttackMLP(2 * digits_bundle.num_classes, ctx.params.mia.hidden, ctx.params.mia.dropout)
    pool_ids = np.sort(digits_bundle.shadow_pool.ids.numpy())[:4]
    stored = {LIRA_FILE: {"ids": np.arange(5), "mean": np.linspace(0, 1, 5), "std": np.ones(5)},
              attack_file("rmia"): {"ids": np.arange(5), "p_out": np.full(5, 0.5), "population_ids": pool_ids,
                                    "population_p_out": np.full(4, 0.4)}}
    downloads = []

    def download(run_id, artifact_path, dst_path):
        downloads.append((run_id, artifact_path))
        path = f"{dst_path}/{artifact_path}"
        np.savez(path, **stored[artifact_path])
        return path

    monkeypatch.setattr(artifacts.tracking, "load_state_dict", lambda run_id: downloads.append((run_id, "sd"))
                        or mlp.state_dict())
    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", download)
    first, second = artifacts.load_attacks(ctx, "attack-run"), artifacts.load_attacks(ctx, "attack-run")
    assert sorted(downloads) == [("attack-run", LIRA_FILE), ("attack-run", attack_file("rmia")), ("attack-run", "sd")]
    assert list(first) == list(ATTACK_NAMES)
    assert first.shadow.attack is not second.shadow.attack
    first.lira.mean[:] = 7.0  # a caller's change stays its own
    first.rmia.p_out[:] = 7.0
    assert np.array_equal(second.lira.mean, stored[LIRA_FILE]["mean"])
    assert np.array_equal(artifacts.load_attacks(ctx, "attack-run").lira.mean, stored[LIRA_FILE]["mean"])
    assert np.array_equal(second.rmia.p_out, np.full(5, 0.5))
    assert np.array_equal(np.sort(second.rmia.population.ids.numpy()), pool_ids)  # z's inputs found by id
