"""D's summed gradient cached on the champion's run (stores/champion.py) is only an optimisation: a damaged or
missing file is ignored with a warning and the batch computes the gradient afresh, instead of failing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from torch import nn

from iau_core.unlearning.gradients import summed_gradient
from stores.champion import GRADIENT_FILE, cached_summed_gradient
from tests.champion_runs import champion_on, new_runs, sqlite_store

CPU = torch.device("cpu")


@pytest.fixture
def store(tmp_path: Path):
    with sqlite_store(tmp_path) as folder:
        yield folder


@pytest.fixture
def champion_with_cache(store: Path, digits_bundle):
    """A champion whose run holds a valid gradient file; returns (champion, the file in the artifact store)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(digits_bundle.train.x[0].numel(), 10))
    _, [run_id] = new_runs(store, "cache")
    cache = summed_gradient(model, digits_bundle.train, 128)
    local = store / GRADIENT_FILE
    torch.save({"grads": cache.grads, "count": cache.count, "ids_sha256": cache.ids_sha256}, local)
    MlflowClient().log_artifact(run_id, str(local))
    stored = next((store / "artifacts").rglob(GRADIENT_FILE))
    return champion_on(run_id, model), stored


def test_a_valid_cache_is_used(champion_with_cache, digits_bundle):
    champion, _ = champion_with_cache
    cache = cached_summed_gradient(champion, digits_bundle.train, CPU)
    assert cache is not None and cache.count == len(digits_bundle.train)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "wrong-shapes", "missing"])
def test_a_damaged_or_missing_cache_is_ignored_with_a_warning(champion_with_cache, digits_bundle, caplog, damage):
    champion, stored = champion_with_cache
    whole = stored.read_bytes()
    if damage == "truncated":
        stored.write_bytes(whole[: len(whole) // 2])
    elif damage == "garbage":
        stored.write_bytes(b"not a tensor file")
    elif damage == "empty":
        stored.write_bytes(b"")
    elif damage == "wrong-shapes":
        torch.save({"grads": [torch.zeros(3)], "count": len(digits_bundle.train), "ids_sha256": "x"}, stored)
    else:
        stored.unlink()
    with caplog.at_level(logging.WARNING, logger="stores.champion"):
        assert cached_summed_gradient(champion, digits_bundle.train, CPU) is None  # never raises
    if damage != "missing":  # a missing cache is normal (e.g. a killed cache step): no warning
        assert "damaged" in caplog.text and GRADIENT_FILE in caplog.text


def test_the_eta_rule_reads_the_validation_set_a_fixed_number_of_times(trained, digits_bundle, digits_params,
                                                                       monkeypatch):
    """The eta rule's full validation passes do not depend on the model or the batch: 1 with the validation logits
    cached with the gradient, 2 without, on both of its paths (within budget; over budget, searched below on the
    records that step changed). Its choice is the rule's with the confirming pass it had before (confirm=True)
    wherever that pass found no other record changed, which was every case here."""
    import copy

    from iau_core.unlearning import gradients
    from iau_core.unlearning.gradients import choose_eta, iau_direction_and_line

    model, forget, retain = trained
    val = digits_bundle.val
    full_reads = []
    real = gradients.predict_logits

    def counted(m, split, device, *rest):  # what the rule reads, not what it reports
        full_reads.append(len(split) == len(val))
        return real(m, split, device, *rest)

    monkeypatch.setattr(gradients, "predict_logits", counted)
    cached_logits = real(model, val, CPU)
    reasons = set()
    for reduction in ("sum", "mean"):
        direction, line = iau_direction_and_line(model, retain, forget, 128, reduction)
        for budget, start in ((100.0, 1e-4), (1.0, 1e-4), (0.5, 1e-3), (0.0, 1e-4), (0.0, 1e-2)):
            rule = digits_params.unlearning.eta_rule.model_copy(update={"val_drop_budget": budget, "start": start})
            choices = {}
            for name, logits, confirm in (("cached", cached_logits, False), ("read", None, False),
                                          ("confirmed", cached_logits, True)):
                full_reads.clear()
                choices[name] = choose_eta(copy.deepcopy(model), direction, forget, val, rule, CPU, logits, line,
                                           confirm=confirm)
                choices[name + " reads"] = sum(full_reads)
            case = (reduction, budget, start, choices["confirmed"])
            assert choices["cached reads"] == choices["cached"].validation_passes == 1, case
            assert choices["read reads"] == choices["read"].validation_passes == 2, case
            assert "the step below the confirmed one" not in choices["confirmed"].reason, case  # no record found
            assert choices["cached"] == choices["confirmed"].__class__(**{
                **choices["confirmed"].__dict__, "validation_passes": 1}), case
            assert choices["cached"].eta == choices["read"].eta, case
            over = "budget" in choices["cached"].reason
            reasons.add("reached" if not over else "budget, a step kept" if choices["cached"].eta > 0 else
                        "budget, no step")
            if over and choices["cached"].eta > 0:
                assert choices["confirmed reads"] == 2, case  # the pass the fixed rule saves
    assert {"reached", "budget, a step kept"} <= reasons, reasons  # both paths were exercised
