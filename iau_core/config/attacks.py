"""The attacker: the paper's shadow-model attack and offline LiRA, on the same reference models."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from iau_core.config.base import Section


class MiaParams(Section):
    """The paper's shadow-model attack (Shokri et al.), as docs/metrics.md defines it."""

    num_shadow: int = Field(3, gt=0)
    hidden: tuple[int, ...] = (256, 128)
    dropout: float = Field(0.5, ge=0, lt=1)
    lr: float = Field(1e-3, gt=0)
    epochs: int = Field(50, gt=0)
    batch_size: int = Field(256, gt=0)


class LiraParams(Section):
    """Offline LiRA (Carlini et al. 2022): reference models trained like the victim on the shadow pool, which
    never saw D, give each record's confidence distribution when it is *not* a member."""

    num_reference: int = Field(4, gt=0, description="reference models; the shadow attack uses the first "
                               "mia.num_shadow of the same models")
    reference_training: Literal["sequential", "ensemble"] = Field(
        "sequential", description="sequential: the reference models one after another; ensemble: all at once, "
        "stacked with torch.func (the same models; batch-norm or dropout models still go one by one). "
        "Measured slower than sequential on one CPU thread (docs/science.md, 'Attacks')")
    per_example_variance: bool = Field(False, description="fit each record's own variance (needs many "
                                       "references); false pools one variance over all records, as Carlini et "
                                       "al. advise below ~64 models")
