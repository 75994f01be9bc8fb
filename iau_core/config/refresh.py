"""How a nightly batch refreshes the cached summed gradient over D for the next batch (iau_core.unlearning.refresh,
reports/refresh.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from iau_core.config.base import Section

# exact: a full gradient pass over the new D at the new model. difference: the cache minus D_f's gradient, plus
# the change of the gradient from the old to the new model measured on a random sample of the new D and scaled up
# to |D| (two sample passes, no Taylor truncation). first_order: the same change as H(theta) (theta' - theta),
# the Hessian-vector product on the sample.
RefreshMode = Literal["exact", "difference", "first_order"]


class GradientRefreshParams(Section):
    """The summed gradient a batch leaves for the next one: approximated from the previous cache where its
    estimated error stays within `max_drift`, else (and every `full_every` batches) recomputed over all of D."""

    mode: RefreshMode = Field("difference", description="exact (a full pass over D every batch) | difference | "
                              "first_order (a sample of D; reports/refresh.md compares them)")
    # at least 2 records in each of the refresh's 8 groups: their spread is the drift estimate
    sample: int = Field(2048, ge=16, description="records of the new D the approximate modes read (at the old and "
                        "new model, or for the Hessian-vector product)")
    full_every: int = Field(5, ge=1, description="batches at most between two exact passes (1: every batch)")
    max_drift: float = Field(0.25, gt=0, description="largest estimated relative error (sampling standard error "
                             "over the gradient's norm, accumulated since the last exact pass) an approximate "
                             "refresh may have; past it the exact pass runs instead")
