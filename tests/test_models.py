"""Models by name, built from an input shape, checked against the data's kind; the training recipes (optimizer,
learning-rate schedule, augmentation) that the same training loop runs for all of them."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import training
from torch import nn

from iau_core.config import Augment, ParamsError, parse_params
from iau_core.data import Split
from iau_core.models import Mlp, ResNet18, Vgg19Bn, build_model
from iau_core.training import accuracy, augment_batch, lr_factor, recipe_optimizer, train_model

CPU = torch.device("cpu")


def model(spec: dict):
    return parse_params({"model": spec, "data": {"dataset": "digits_table" if spec["name"] == "mlp" else "digits"}
                         }).model


def tiny_cifar(n: int = 32, seed: int = 0) -> Split:
    """CIFAR-shaped records whose class shows in the mean colour of the image, so a few steps can learn it."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=gen)
    x = torch.rand(n, 3, 32, 32, generator=gen) * 0.5 + (y.float() / 8)[:, None, None, None]
    return Split(x, y, torch.arange(n))


def test_resnet18_is_the_cifar_variant():
    net = build_model(model({"name": "resnet18"}), (3, 32, 32), 10)
    assert isinstance(net, ResNet18)
    stem = net.stem[0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(11.17e6, rel=0.01)  # ResNet-18's 11.2M
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_vgg19_bn_has_16_conv_layers_with_batch_norm():
    net = build_model(model({"name": "vgg19_bn"}), (3, 32, 32), 100)
    assert isinstance(net, Vgg19Bn)
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 16
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 16
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    assert build_model(model({"name": "vgg19_bn"}), (1, 8, 8), 10)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_mlp_widths_come_from_params():
    purchase = build_model(model({"name": "mlp", "hidden": [1024, 512, 256, 128], "activation": "tanh"}), (600,), 100)
    linear = [m for m in purchase.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(600, 1024), (1024, 512), (512, 256), (256, 128),
                                                                 (128, 100)]
    assert any(isinstance(m, nn.Tanh) for m in purchase.modules())
    default = build_model(model({"name": "mlp"}), (64,), 10)
    assert isinstance(default, Mlp) and sum(isinstance(m, nn.Linear) for m in default.modules()) == 3


def test_lenet5_keeps_its_weights_for_square_images():
    """The shape-based builder gives the seed's LeNet5 exactly as before: cached models stay comparable."""
    torch.manual_seed(0)
    net = build_model(model({"name": "lenet5"}), (1, 28, 28), 10)
    assert net.classifier[1].in_features == 16 * 5 * 5
    torch.manual_seed(0)
    again = build_model(model({"name": "lenet5"}), (1, 28, 28), 10)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True))


@pytest.mark.parametrize(("raw", "named"), [
    ({"data": {"dataset": "digits_table"}, "model": {"name": "lenet5"}}, "model.name 'lenet5' reads ['image']"),
    ({"data": {"dataset": "purchase100"}, "model": {"name": "resnet18"}}, "data.dataset 'purchase100' is a table"),
    ({"data": {"dataset": "digits_table"}, "model": {"name": "mlp"}, "training": {"augment": {}}},
     "training.augment crops and flips images but data.dataset 'digits_table'"),
    ({"data": {"dataset": "cifar10"}, "model": {"name": "vgg19_bn"}, "training": {"gr_reading": "per_sample"}},
     "model.name 'vgg19_bn' has batch norm"),
    ({"data": {"dataset": "cifar10"}, "model": {"name": "resnet18"}, "training": {"gr_hvp": "finite_difference"}},
     "training.gr_hvp 'finite_difference' cannot hold the switches of model.name 'resnet18'"),
    ({"model": {"name": "resnet50"}}, "model: Input tag 'resnet50'"),
    ({"model": {"name": "mlp", "hidden": []}}, "model.mlp.hidden"),
    ({"training": {"optimizer": {"kind": "sgd", "momentum": 1.5}}}, "training.optimizer.sgd.momentum"),
    ({"training": {"optimizer": {"kind": "adam", "momentum": 0.9}}}, "training.optimizer.adam.momentum"),
    ({"training": {"lr_schedule": {"kind": "step", "gamma": 2}}}, "training.lr_schedule.step.gamma"),
])
def test_models_and_recipes_that_do_not_fit_are_refused_naming_both(raw, named):
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert named in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "vgg19_bn"])
def test_batch_norm_models_train_a_few_steps_on_cifar_shapes(name):
    """The one training loop (GR loss, SGD with momentum and weight decay, cosine schedule, crop and flip) runs
    them: every weight stays finite, the batch-norm statistics move, and the loss on the records it trained on
    falls (read with batch statistics: after two steps the running ones are not settled yet)."""
    data = tiny_cifar(8)
    recipe = training(optimizer={"kind": "sgd", "momentum": 0.9, "weight_decay": 5e-4}, lr=0.003,
                      lr_schedule="cosine", augment={"crop_padding": 4, "flip": True}, batch_size=8, max_epochs=2,
                      patience=2, gr_alpha=0.05)
    torch.manual_seed(0)
    net = build_model(model({"name": name}), (3, 32, 32), 4)
    initial = copy.deepcopy(net.state_dict())
    before = nn.functional.cross_entropy(net.train()(data.x), data.y).item()
    net.load_state_dict(initial)  # that forward pass moved the running statistics
    report = train_model(net, data, data, recipe, CPU, seed=0)
    after = nn.functional.cross_entropy(net.train()(data.x), data.y).item()
    assert report.epochs_run == 2 and after < before
    assert all(torch.isfinite(v).all() for v in net.state_dict().values())
    moved = [k for k, v in net.state_dict().items() if k.endswith("running_mean") and not torch.equal(v, initial[k])]
    assert moved


def test_default_recipe_trains_exactly_as_before():
    """Adam, a constant rate and no augmentation leave make run's training unchanged: the loop gives bit for bit
    the weights of the loop as it was before recipes existed (Adam, no schedule, no augmentation)."""
    from iau_core.training import batches, gr_loss

    data, recipe = tiny_cifar(24), training(batch_size=8, max_epochs=2, patience=2, gr_alpha=0.05)
    torch.manual_seed(0)
    net = build_model(model({"name": "lenet5"}), (3, 32, 32), 4)
    train_model(net, data, data, recipe, CPU, seed=1)

    torch.manual_seed(0)
    plain = build_model(model({"name": "lenet5"}), (3, 32, 32), 4)
    optimizer, generator = torch.optim.Adam(plain.parameters(), lr=recipe.lr), torch.Generator().manual_seed(1)
    best = None
    for _ in range(2):
        plain.train()
        for idx in batches(len(data), 8, generator):
            loss = gr_loss(plain, data.x[idx], data.y[idx], 0.05)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        acc = accuracy(plain, data, CPU)
        if best is None or acc > best[0]:
            best = (acc, copy.deepcopy(plain.state_dict()))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), best[1].values(), strict=True))


def test_optimizers_and_schedules():
    net = nn.Linear(3, 2)
    sgd = recipe_optimizer(net, training(optimizer={"kind": "sgd", "momentum": 0.8, "weight_decay": 1e-3,
                                                  "nesterov": True}))
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["momentum"] == 0.8 and sgd.defaults["weight_decay"] == 1e-3 and sgd.defaults["nesterov"]
    adam = recipe_optimizer(net, training(optimizer="adam"))
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["weight_decay"] == 0
    cosine = training(lr_schedule="cosine", max_epochs=10)
    assert lr_factor(cosine, 0) == 1 and lr_factor(cosine, 5) == pytest.approx(0.5) and lr_factor(cosine, 9) < 0.03
    step = training(lr_schedule={"kind": "step", "every": 3, "gamma": 0.1})
    assert [lr_factor(step, e) for e in (0, 2, 3, 6)] == pytest.approx([1, 1, 0.1, 0.01])
    assert lr_factor(training(), 7) == 1


def test_augmentation_crops_and_flips_each_image_on_its_own():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4) + 1  # no zeros: padding shows
    flipped = augment_batch(x, Augment(crop_padding=0, flip=True), torch.Generator().manual_seed(0))
    for original, out in zip(x, flipped, strict=True):
        assert torch.equal(out, original) or torch.equal(out, original.flip(2))
    gen = torch.Generator().manual_seed(3)
    many = torch.cat([x[:1]] * 64)
    cropped = augment_batch(many, Augment(crop_padding=2, flip=False), gen)
    assert cropped.shape == many.shape
    shifted = [not torch.equal(c, many[0]) for c in cropped]
    assert 0 < sum(shifted) < 64  # offsets are drawn per image
    for c in cropped:  # every crop is the image moved by at most 2 pixels, zeros where it left the frame
        nonzero = c[c != 0]
        assert set(nonzero.tolist()) <= set(many[0].flatten().tolist())
