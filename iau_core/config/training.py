"""The training recipe: one for the original, the retrained gold models and the attacker's reference models."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from iau_core.config.base import Section, kind_shorthand

GrReading = Literal["batch", "per_sample"]
GrHvp = Literal["auto", "double_backward", "finite_difference"]

class AdamParams(Section):
    kind: Literal["adam"]
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty (torch.optim.Adam's, not AdamW's)")

class SgdParams(Section):
    kind: Literal["sgd"]
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    nesterov: bool = False

OptimizerParams = Annotated[AdamParams | SgdParams, Field(discriminator="kind")]

class ConstantLr(Section):
    kind: Literal["constant"]

class CosineLr(Section):
    """lr * (1 + cos(pi * epoch / max_epochs)) / 2, stepped once per epoch, down to 0 at max_epochs."""

    kind: Literal["cosine"]

class StepLr(Section):
    """lr * gamma^(epoch // every): the classic staircase."""

    kind: Literal["step"]
    every: int = Field(30, gt=0, description="epochs between decays")
    gamma: float = Field(0.1, gt=0, le=1)

LrSchedule = Annotated[ConstantLr | CosineLr | StepLr, Field(discriminator="kind")]

class Augment(Section):
    """Random crop (after zero-padding by crop_padding) and horizontal flip of training batches, for CIFAR-like
    images. Used by the training loop only: the gradients of unlearning and the attacks' scores always see the
    records as they are."""

    crop_padding: int = Field(4, ge=0)
    flip: bool = True

class TrainingParams(Section):
    """One recipe for the original, the retrained gold model and the shadow models (paper VI-A.6)."""

    optimizer: OptimizerParams = Field(default_factory=lambda: AdamParams(kind="adam"),
                                       description="adam | sgd, or a section {kind: sgd, momentum: 0.9, ...}")
    lr: float = Field(1e-3, gt=0)
    lr_schedule: LrSchedule = Field(default_factory=lambda: ConstantLr(kind="constant"),
                                    description="constant | cosine | {kind: step, every, gamma}")
    augment: Augment | None = Field(None, description="images only; none: batches as they are")
    batch_size: int = Field(64, gt=0)
    max_epochs: int = Field(20, gt=0)
    patience: int = Field(5, gt=0, description="epochs without validation-accuracy gain before stopping")
    keep: Literal["best", "last"] = Field("best", description="which weights training ends with: best (the "
                                          "best validation epoch's) or last (the final epoch's: a model that "
                                          "memorizes, as the leaking setting of studies/leaking.yaml needs)")
    gr_alpha: float = Field(0.005, ge=0, description="GR loss weight (paper Eq. 7); 0 = plain cross-entropy")
    gr_reading: GrReading = Field("batch", description="batch: norm of the batch-mean loss gradient (the paper's "
                                  "public code); per_sample: batch mean of each record's gradient norm (Eq. 7 "
                                  "as written)")
    gr_hvp: GrHvp = Field("double_backward", description="how GR's gradient gets its Hessian-vector product: "
                          "finite_difference (a second gradient pass at theta + r * direction, about 2x a plain "
                          "step) | double_backward (exact, through the graph of the gradient, about 2.4x) | auto "
                          "(finite_difference for the batch reading on a model without batch norm, "
                          "double_backward otherwise)")

    shards: int = Field(1, gt=0, le=256, description="SISA shards S: disjoint parts of D, drawn from each record's "
                        "id, one model each, their probabilities averaged (iau_core/sharding.py); 1 = one model")
    slices: int = Field(1, gt=0, le=64, description="SISA slices R per shard: each shard trains slice after slice "
                        "(slice k on slices 1..k) with a checkpoint after each, so a deletion retrains from the "
                        "checkpoint before its slice; 1 = no slicing")

    @field_validator("optimizer", "lr_schedule", mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        return kind_shorthand(value)
