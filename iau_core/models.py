"""Models by name. Plain nn.Modules; training glue lives in training.py."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class LeNet5(nn.Module):
    """LeNet-5 (two conv + pool stages, three fully connected layers) as in the paper's code.

    conv1 pads by 2 so 28x28 inputs keep the classic 5x5x16 feature map. Inputs smaller than 16 px
    (digits, 8x8) would vanish through conv2, so conv2 pads there too; the head is sized by a dry run.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        conv2_pad = 0 if image_size >= 16 else 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5, padding=conv2_pad), nn.ReLU(), nn.MaxPool2d(2),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_channels, image_size, image_size)).numel()
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.classifier(self.features(x))


MODELS: dict[str, Callable[[int, int, int], nn.Module]] = {"lenet5": LeNet5}


def build_model(name: str, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """A freshly initialised model; seed torch before calling for reproducible weights."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name](in_channels, num_classes, image_size)
