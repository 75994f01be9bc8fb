"""The attacker's reference models trained together (torch.func over stacked parameters) against one by one."""

import pytest
import torch
from conftest import training

from iau_core.attacks.references import train_reference_model, train_reference_models
from iau_core.ensemble_training import can_train_together
from iau_core.recipe import model_builder

CPU = torch.device("cpu")


@pytest.mark.parametrize("changes", [
    {"gr_alpha": 0.05, "gr_reading": "batch", "gr_hvp": "double_backward"},
    {"gr_alpha": 0.05, "gr_reading": "per_sample", "gr_hvp": "finite_difference", "optimizer": "sgd"},
    {"gr_alpha": 0.05, "gr_reading": "batch", "gr_hvp": "auto", "optimizer": "sgd"},  # params.yaml: finite difference
], ids=["adam-gr-batch", "sgd-gr-per-sample-fd", "sgd-gr-batch-auto"])
def test_together_gives_the_one_by_one_models(digits_bundle, digits_params, changes):
    """Same initial weights, same batches, same recipe: each model trained in the ensemble equals the one
    train_reference_model gives alone within float tolerance, and stops at the same epoch. Patience 2 over 8
    epochs, so early stopping (and models leaving the stack) happens.

    The tolerance is what each optimizer can hold on any CPU's kernels. SGD carries the two paths' rounding
    (about 1e-8) unchanged. Adam does not: a weight whose gradient is at rounding level gets steps of about lr in
    a direction the rounding picks, so the two paths drift apart by up to a few such steps (1e-5 on an AVX2
    machine, 6e-4 on an AVX-512 one). A wrong batch, seed or GR term moves every tensor by 150-200% of its norm
    (another seed's model, measured), so a 1% bound on each tensor's relative difference still catches it."""
    pool = digits_bundle.shadow_pool.take(torch.arange(240))
    recipe = training(max_epochs=8, patience=2, lr=0.005, **changes)
    build = model_builder(digits_params, digits_bundle)
    lines = []
    together = train_reference_models(pool, build, recipe, 3, CPU, 0, progress=lines.append, mode="ensemble")
    assert "3 models training" in lines[0] and ("2 models" in lines[-1] or "1 models" in lines[-1] or
                                                 len(lines) < 8), lines  # some stopped early
    for i, ref in enumerate(together):
        alone = train_reference_model(pool, build, recipe, i, 3, CPU, 0)
        assert torch.equal(ref.members.ids, alone.members.ids) and torch.equal(ref.nonmembers.ids,
                                                                                alone.nonmembers.ids)
        for (name, a), b in zip(ref.model.named_parameters(), alone.model.parameters(), strict=True):
            if recipe.optimizer == "sgd":
                assert torch.allclose(a, b, rtol=1e-3, atol=1e-4), (i, name, (a - b).abs().max().item())
            else:
                relative = ((a - b).norm() / b.norm()).item()
                assert relative < 1e-2, (i, name, relative)
        with torch.no_grad():
            same = (ref.model(ref.nonmembers.x).argmax(1) == alone.model(ref.nonmembers.x).argmax(1)).float()
        assert same.mean().item() >= 0.99, (i, same.mean().item())  # a record on the boundary may flip


def test_models_with_batch_norm_or_dropout_are_trained_one_by_one(digits_bundle, digits_params):
    """The ensemble mode falls back for a model vmap cannot train (batch norm's running statistics): the models
    are exactly the one-by-one ones."""
    assert can_train_together(model_builder(digits_params, digits_bundle)(0))  # LeNet5: no buffers, no dropout
    assert not can_train_together(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5)))

    def build(seed):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.BatchNorm1d(16),
                                   torch.nn.ReLU(), torch.nn.Linear(16, 10))

    assert not can_train_together(build(0))
    pool = digits_bundle.shadow_pool.take(torch.arange(200))
    recipe = training(max_epochs=2, patience=2)
    together = train_reference_models(pool, build, recipe, 2, CPU, 0, mode="ensemble")
    alone = train_reference_models(pool, build, recipe, 2, CPU, 0, mode="sequential")
    for a, b in zip(together, alone, strict=True):
        for (name, ta), tb in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
            assert torch.equal(ta, tb), name
