"""GR loss and the training loop."""

import torch
from conftest import training

from iau_core.experiment import model_builder
from iau_core.training import accuracy, gr_loss, per_sample_grad_norms, train_model


def fit(bundle, params, seed=0, **changes):
    model = model_builder(params, bundle)(seed)
    report = train_model(model, bundle.train, bundle.val, training(**changes), torch.device("cpu"), seed)
    return model, report


def test_gr_lowers_per_sample_gradient_norms(digits_bundle, digits_params):
    """Paper Fig. 3: the same data, init and seed; GR (alpha > 0) leaves smaller per-sample gradients."""
    cpu = torch.device("cpu")
    plain, _ = fit(digits_bundle, digits_params, gr_alpha=0.0, max_epochs=8, patience=8)
    restricted, _ = fit(digits_bundle, digits_params, gr_alpha=0.2, max_epochs=8, patience=8)
    plain_norm = per_sample_grad_norms(plain, digits_bundle.train, cpu).mean().item()
    gr_norm = per_sample_grad_norms(restricted, digits_bundle.train, cpu).mean().item()
    assert gr_norm < 0.8 * plain_norm, (gr_norm, plain_norm)
    assert accuracy(restricted, digits_bundle.test, cpu) > 80.0


def test_gr_alpha_zero_is_cross_entropy(digits_bundle, digits_params):
    model = model_builder(digits_params, digits_bundle)(0)
    x, y = digits_bundle.train.x[:16], digits_bundle.train.y[:16]
    plain = torch.nn.functional.cross_entropy(model(x), y)
    assert torch.allclose(gr_loss(model, x, y, 0.0), plain)
    assert gr_loss(model, x, y, 0.5) > plain


def test_training_learns_and_keeps_best_weights(digits_bundle, digits_params):
    model, report = fit(digits_bundle, digits_params, gr_alpha=0.005)
    assert report.best_epoch <= report.epochs_run
    assert accuracy(model, digits_bundle.val, torch.device("cpu")) == report.best_val_acc
    assert accuracy(model, digits_bundle.test, torch.device("cpu")) > 85.0


def test_training_is_reproducible(digits_bundle, digits_params):
    a, _ = fit(digits_bundle, digits_params, max_epochs=2, patience=2)
    b, _ = fit(digits_bundle, digits_params, max_epochs=2, patience=2)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_per_sample_grad_norms_match_one_by_one(digits_bundle, digits_params):
    model = model_builder(digits_params, digits_bundle)(0)
    split = digits_bundle.train.take(torch.arange(5))
    batched = per_sample_grad_norms(model, split, torch.device("cpu"), batch_size=2)
    for i in range(5):
        loss = torch.nn.functional.cross_entropy(model(split.x[i:i + 1]), split.y[i:i + 1])
        grads = torch.autograd.grad(loss, list(model.parameters()))
        expected = torch.sqrt(sum((g * g).sum() for g in grads))
        assert torch.isclose(batched[i], expected, rtol=1e-4)
