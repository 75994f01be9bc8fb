"""The model section: one section per architecture, chosen by `name` (the one list of model names), each saying
which data it reads and whether it has batch norm."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from iau_core.config.base import Section
from iau_core.config.data import Modality


class ModelSection(Section):
    """What every model shares: which data it reads (`inputs`) and whether it has batch norm (whose batch
    statistics make a per-record gradient ill-defined in training mode)."""

    inputs: ClassVar[frozenset[Modality]] = frozenset({"image"})
    batch_norm: ClassVar[bool] = False

class LeNet5Params(ModelSection):
    name: Literal["lenet5"]

class ResNet18Params(ModelSection):
    """ResNet-18, CIFAR variant: 3x3 stem, stride 1, no max-pool (He et al. 2016 as used on 32x32 images)."""

    batch_norm: ClassVar[bool] = True
    name: Literal["resnet18"]

class Vgg19BnParams(ModelSection):
    """VGG-19 with batch norm, CIFAR variant: the 16 conv layers, then one linear classifier."""

    batch_norm: ClassVar[bool] = True
    name: Literal["vgg19_bn"]

class MlpParams(ModelSection):
    """Fully connected layers over the flattened input (a table's features or an image's pixels). The default
    is 3 layers (two hidden). Purchase100's model in the membership-inference literature (Nasr et al. 2018):
    hidden [1024, 512, 256, 128], tanh."""

    inputs: ClassVar[frozenset[Modality]] = frozenset({"image", "table"})
    name: Literal["mlp"]
    hidden: tuple[int, ...] = Field((512, 256), min_length=1, description="widths of the hidden layers")
    activation: Literal["relu", "tanh"] = "relu"

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, hidden: tuple[int, ...]) -> tuple[int, ...]:
        if any(w <= 0 for w in hidden):
            raise ValueError(f"hidden widths must be > 0, got {list(hidden)}")
        return hidden

ModelParams = Annotated[LeNet5Params | ResNet18Params | Vgg19BnParams | MlpParams, Field(discriminator="name")]
