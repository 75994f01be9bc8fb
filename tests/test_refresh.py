"""The nightly cache's refresh (iau_core.unlearning.refresh): the cache minus D_f plus a sampled correction for the
model's move, checked against the exact pass over the new D, its fallbacks to that pass, and the counter that
travels with the cache through MLflow (stores/champion.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from iau_core.config import GradientRefreshParams
from iau_core.recipe import model_builder
from iau_core.unlearning import UnlearningTask
from iau_core.unlearning.gradients import SummedGradient, summed_gradient
from iau_core.unlearning.iau import iau
from iau_core.unlearning.refresh import refresh_summed_gradient
from stores.champion import cached_summed_gradient, store_summed_gradient
from stores.project import RunContext
from tests.champion_runs import champion_on, new_runs, sqlite_store

CPU = torch.device("cpu")
BS = 128
LOOSE = {"full_every": 100, "max_drift": 1e6}  # no fallback: the estimate itself is checked


def flat(cache: SummedGradient) -> torch.Tensor:
    return torch.cat([g.flatten() for g in cache.grads])


def relative_error(approx: SummedGradient, exact: SummedGradient) -> float:
    return ((flat(approx) - flat(exact)).norm() / flat(exact).norm()).item()


@pytest.fixture(scope="module")
def batch(trained, digits_bundle, digits_params):
    """(champion, its exact cache over D, the IAU-stepped model, D_f, D_r, the exact cache at the step over D_r)."""
    model, forget, retain = trained
    task = UnlearningTask(model=model, retain=retain, forget=forget, val=digits_bundle.val,
                          build_model=model_builder(digits_params, digits_bundle), training=digits_params.training,
                          unlearning=digits_params.unlearning.model_copy(update={"eta": "auto"}), device=CPU,
                          seed=0)  # the eta rule's step, as a batch takes it
    stepped = iau(task).model.eval()
    moved = sum((a - b).abs().sum().item() for a, b in zip(stepped.parameters(), model.parameters(), strict=True))
    assert moved > 0
    return (model, summed_gradient(model, digits_bundle.train, BS, digits_bundle.val), stepped, forget, retain,
            summed_gradient(stepped, retain, BS, digits_bundle.val))


def refresh(batch, val, new=None, previous=None, **settings):
    model, cache, stepped, forget, retain, _ = batch
    return refresh_summed_gradient(previous or cache, model, stepped if new is None else new, forget, retain, val,
                                   GradientRefreshParams(**settings), BS, seed=3)


def test_an_unchanged_model_is_refreshed_exactly_from_the_cache_minus_d_f(batch, digits_bundle):
    """A kept champion (the step changed nothing): the correction is zero, so the cache minus D_f's gradient is the
    exact gradient over the new D, with no drift added."""
    model, _, _, _, retain, _ = batch
    cache, record = refresh(batch, digits_bundle.val, new=model, mode="difference", sample=64, **LOOSE)
    exact = summed_gradient(model, retain, BS, digits_bundle.val)
    assert record.mode == "difference" and not record.fell_back and record.records_read < len(retain)
    assert relative_error(cache, exact) < 1e-5 and cache.drift == 0.0 and cache.batches_since_exact == 1
    assert cache.count == exact.count and cache.ids_sha256 == exact.ids_sha256
    assert torch.allclose(cache.val_logits, exact.val_logits)


@pytest.mark.parametrize("mode", ["difference", "first_order"])
def test_the_sampled_correction_follows_the_model_move(batch, digits_bundle, mode):
    """After a real step the cache minus D_f alone is off; the correction read on almost all of D brings it close
    (difference: exactly the whole sum up to the one record left out; first_order: up to the Taylor remainder), and
    on a quarter of D it is still closer than no correction."""
    model, cache, stepped, forget, retain, exact = batch
    subtract_only = SummedGradient([c - f for c, f in zip(cache.grads, summed_gradient(model, forget, BS).grads,
                                                          strict=True)], len(retain), exact.ids_sha256)
    stale = relative_error(subtract_only, exact)
    whole, _ = refresh(batch, digits_bundle.val, mode=mode, sample=len(retain) - 1, **LOOSE)
    quarter, record = refresh(batch, digits_bundle.val, mode=mode, sample=len(retain) // 4, **LOOSE)
    assert stale > 0.05, stale  # the test needs a move the correction has to follow
    assert relative_error(whole, exact) < (0.02 if mode == "difference" else 0.5 * stale), (mode, stale)
    assert relative_error(quarter, exact) < stale
    assert record.mode == mode and 0 < record.drift < 1


def test_the_estimated_drift_is_the_size_of_the_error(batch, digits_bundle):
    """The drift is the correction's standard error from the sample's groups: over several samples its typical size
    is that of the real error (the fallback bound means something), within a factor of 3."""
    errors, drifts = [], []
    model, cache, stepped, forget, retain, exact = batch
    for seed in range(6):
        refreshed, record = refresh_summed_gradient(cache, model, stepped, forget, retain, digits_bundle.val,
                                                    GradientRefreshParams(mode="difference", sample=96, **LOOSE),
                                                    BS, seed=seed)
        errors.append(relative_error(refreshed, exact))
        drifts.append(record.drift)
    ratio = (sum(e * e for e in errors) / sum(d * d for d in drifts)) ** 0.5
    assert 1 / 3 < ratio < 3, (errors, drifts)


@pytest.mark.parametrize("case", ["mode exact", "no previous", "full_every", "drift", "other D"])
def test_the_exact_pass_runs_when_the_approximation_may_not(batch, digits_bundle, case):
    model, cache, stepped, forget, retain, exact = batch
    settings = {"mode": "difference", "sample": 64, **LOOSE}
    previous = cache
    if case == "mode exact":
        settings["mode"] = "exact"
    elif case == "full_every":
        settings["full_every"] = 3
        previous = SummedGradient(cache.grads, cache.count, cache.ids_sha256, batches_since_exact=2)
    elif case == "drift":
        settings["max_drift"] = 1e-6
    elif case == "other D":
        previous = summed_gradient(model, retain, BS)  # over D_r: not the D this batch started from
    refreshed, record = refresh_summed_gradient(None if case == "no previous" else previous, model, stepped,
                                                forget, retain, digits_bundle.val,
                                                GradientRefreshParams(**settings), BS)
    assert record.mode == "exact" and record.fell_back == (case != "mode exact") and record.records_read == len(retain)
    assert refreshed.batches_since_exact == 0 and refreshed.drift == 0.0
    assert relative_error(refreshed, exact) < 1e-6
    words = {"mode exact": "mode exact", "no previous": "no previous", "full_every": "full_every", "drift": "drift",
             "other D": "another D"}
    assert words[case] in record.reason, record.reason


def test_a_model_far_from_the_old_one_falls_back_by_itself(batch, digits_bundle, digits_params):
    """A retrain rung won (here: a fresh initialisation): the sample's groups disagree, the drift is past the bound,
    and the exact pass runs without the caller saying which method won."""
    far = model_builder(digits_params, digits_bundle)(5).eval()
    cache, record = refresh(batch, digits_bundle.val, new=far, mode="difference", sample=64, full_every=5,
                            max_drift=0.25)
    assert record.mode == "exact" and record.fell_back and "drift" in record.reason, record
    assert relative_error(cache, summed_gradient(far, batch[4], BS)) < 1e-6


@pytest.fixture
def store(tmp_path: Path):
    with sqlite_store(tmp_path) as folder:
        yield folder


def test_the_batch_counter_travels_with_the_stored_cache(store, batch, digits_bundle, digits_params):
    """Through MLflow as the nightly flow stores it: the champion's exact cache, then a batch's refresh from it
    (approximate, counter 1, drift stored and tagged), then, full_every reached, the exact pass again."""
    model, _, stepped, forget, retain, exact = batch
    experiment, runs = new_runs(store, "refresh", 3)
    settings = {"mode": "difference", "sample": 64, "full_every": 2, "max_drift": 1e6}
    params = digits_params.model_copy(update={"nightly": digits_params.nightly.model_copy(
        update={"gradient_refresh": GradientRefreshParams(**settings)})})
    ctx = RunContext(params, "dv0", experiment)
    first = store_summed_gradient(runs[0], model, digits_bundle.train, digits_bundle.val, ctx)
    champion = champion_on(runs[0], model)
    second = store_summed_gradient(runs[1], stepped, retain, digits_bundle.val, ctx, champion, digits_bundle.train)
    assert (first.mode, second.mode) == ("exact", "difference")
    successor = champion_on(runs[1], stepped, version="2")
    loaded = cached_summed_gradient(successor, retain, CPU)
    assert loaded is not None and loaded.batches_since_exact == 1 and loaded.drift == second.drift > 0
    assert relative_error(loaded, exact) < 1.0
    assert MlflowClient().get_run(runs[1]).data.tags["gradient_refresh.mode"] == "difference"
    rest = retain.take(torch.arange(10, len(retain)))  # the next batch forgets 10 more: full_every 2 reached
    third = store_summed_gradient(runs[2], stepped, rest, digits_bundle.val, ctx, successor, retain)
    assert third.mode == "exact" and "full_every" in third.reason and third.batches_since_exact == 0


@pytest.mark.parametrize(("setting", "value"), [("mode", "fast"), ("sample", 8), ("full_every", 0),
                                                ("max_drift", 0.0), ("max_drift", -1.0), ("samples", 10)])
def test_bad_refresh_settings_fail_naming_the_key(setting, value):
    from iau_core.config import ParamsError, parse_params

    with pytest.raises(ParamsError, match=f"nightly.gradient_refresh.{setting}"):
        parse_params({"nightly": {"gradient_refresh": {setting: value}}})


def test_the_exact_pass_stays_available_in_params():
    from iau_core.config import parse_params

    assert parse_params({"nightly": {"gradient_refresh": {"mode": "exact"}}}).nightly.gradient_refresh.mode == "exact"
