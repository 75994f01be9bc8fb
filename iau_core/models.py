"""Models by name, built from one record's input shape. Plain nn.Modules; training glue lives in training.py.

The names and each model's options live in config.py (ModelParams); this registry says which class builds each.
Shapes: images (C, H, W), tables (F,). `model_builder` is the one factory of a run's fresh models: one network, or
with training.shards > 1 the SISA ensemble of one network per shard (ShardEnsemble; iau_core/sharding.py trains it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from iau_core.config import LeNet5Params, MlpParams, ModelSection, Params, ResNet18Params, Vgg19BnParams

if TYPE_CHECKING:
    from iau_core.data import DataBundle


class LeNet5(nn.Module):
    """LeNet-5 (two conv + pool stages, three fully connected layers) as in the paper's code.

    conv1 pads by 2 so 28x28 inputs keep the classic 5x5x16 feature map. Inputs smaller than 16 px
    (digits, 8x8) would vanish through conv2, so conv2 pads there too; the head is sized by a dry run.
    """

    def __init__(self, in_channels: int, num_classes: int, height: int, width: int | None = None) -> None:
        super().__init__()
        width = height if width is None else width
        conv2_pad = 0 if min(height, width) >= 16 else 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5, padding=conv2_pad), nn.ReLU(), nn.MaxPool2d(2),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_channels, height, width)).numel()
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(planes),
            nn.ReLU(),
            nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(planes),
        )
        self.shortcut = nn.Identity() if stride == 1 and in_planes == planes else nn.Sequential(
            nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for small images (the CIFAR variant): a 3x3 stride-1 stem without max-pool keeps 32x32 inputs
    at full resolution into stage 1; four stages of two BasicBlocks (64, 128, 256, 512 channels, strides
    1, 2, 2, 2); global average pooling; one linear layer."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False),
                                  nn.BatchNorm2d(64), nn.ReLU())
        stages, in_planes = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages += [BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1)]
            in_planes = planes
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.head(self.stages(self.stem(x)))


VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                512, 512, 512, 512, "M")


class Vgg19Bn(nn.Module):
    """VGG-19 with batch norm, CIFAR variant: 16 3x3 conv layers in five blocks, each followed by a 2x2
    max-pool, then one linear classifier on the 512 channels (32x32 inputs end at 1x1). A pool that would take
    the map below 1x1 (small inputs, e.g. 8x8 digits) is left out; global average pooling closes the stack."""

    def __init__(self, in_channels: int, num_classes: int, size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for item in VGG19_LAYOUT:
            if item == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            layers += [nn.Conv2d(in_channels, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU()]
            in_channels = item
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.classifier(self.features(x))


class Mlp(nn.Module):
    """Linear layers over the flattened input with the chosen activation between them."""

    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, ...], activation: str) -> None:
        super().__init__()
        act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(in_features, width), act()]
            in_features = width
        layers.append(nn.Linear(in_features, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F) or (B, C, H, W) -> (B, num_classes)
        return self.net(x)


def _image(shape: tuple[int, ...], params: ModelSection) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ValueError(f"model.name {params.name!r} needs images (C, H, W), got inputs of shape {shape}")
    return shape


def _lenet5(params: LeNet5Params, shape: tuple[int, ...], num_classes: int) -> nn.Module:
    channels, height, width = _image(shape, params)
    return LeNet5(channels, num_classes, height, width)


def _resnet18(params: ResNet18Params, shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return ResNet18(_image(shape, params)[0], num_classes)


def _vgg19_bn(params: Vgg19BnParams, shape: tuple[int, ...], num_classes: int) -> nn.Module:
    channels, height, width = _image(shape, params)
    return Vgg19Bn(channels, num_classes, min(height, width))


def _mlp(params: MlpParams, shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return Mlp(int(torch.Size(shape).numel()), num_classes, params.hidden, params.activation)


MODELS: dict[type[ModelSection], Callable[..., nn.Module]] = {
    LeNet5Params: _lenet5,
    ResNet18Params: _resnet18,
    Vgg19BnParams: _vgg19_bn,
    MlpParams: _mlp,
}


def build_model(params: ModelSection, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A freshly initialised model for records of `input_shape`; seed torch before calling for reproducible
    weights."""
    return MODELS[type(params)](params, tuple(input_shape), num_classes)


class ShardEnsemble(nn.Module):
    """SISA's aggregate (Bourtoule et al. 2021): one network per shard, their softmax probabilities averaged. The
    forward returns log(mean probability) as its logits, so softmax, argmax, cross-entropy and every attack read it
    as any classifier's output (softmax(log p) = p). Its state_dict is the members' (members.<s>.<name>): tensors
    only, loadable with torch.load(weights_only=True)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, ...) -> (B, num_classes) log-probabilities
        log_probs = torch.stack([F.log_softmax(member(x), dim=1) for member in self.members])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))


# A shard's model is initialised (and its slices shuffled) from the run's seed plus this times the shard index:
# shard 0 keeps the run's seed (S = 1 is today's model), and the strides stay clear of the seed offsets the
# methods add (retrain_alt's 10,000).
SHARD_SEED_STRIDE = 1_000_000


def shard_seed(seed: int, shard: int) -> int:
    return seed + SHARD_SEED_STRIDE * shard


def member_builder(params: Params, bundle: DataBundle) -> Callable[[int], nn.Module]:
    """A factory of one freshly initialised network (a shard's, or the attacker's reference model); the seed fixes
    the initial weights."""

    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build_model(params.model, bundle.input_shape, bundle.num_classes)

    return build


def model_builder(params: Params, bundle: DataBundle) -> Callable[[int], nn.Module]:
    """A factory of the run's freshly initialised model from a seed: one network (training.shards = 1, exactly
    member_builder), or a ShardEnsemble whose shard s starts from shard_seed(seed, s). A registered model's
    state_dict loads into what it builds."""
    build_member = member_builder(params, bundle)
    shards = params.training.shards
    if shards == 1:
        return build_member

    def build(seed: int) -> nn.Module:
        return ShardEnsemble([build_member(shard_seed(seed, s)) for s in range(shards)])

    return build
