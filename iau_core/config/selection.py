"""How the forget set is chosen. `Strategy` is the one list of strategy names; iau_core/selection.py implements
each as `select_<name>`."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from iau_core.config.base import Section

Strategy = Literal["random", "outliers", "class", "ids"]
STRATEGY_NAMES: tuple[str, ...] = get_args(Strategy)


class SelectionParams(Section):
    """How the forget set D_f is chosen from D."""

    strategy: Strategy = "outliers"
    fraction: float = Field(0.05, gt=0, lt=1, description="random: share of D to forget")
    contamination: float = Field(0.01, gt=0, lt=0.5, description="outliers: IsolationForest contamination")
    label: int | None = Field(None, ge=0, description="class: forget every record of D with this label")
    ids: tuple[int, ...] | None = Field(None, min_length=1, description="ids: the sample ids to forget")
    ids_file: str | None = Field(None, description="ids: a file of sample ids (one per line, or a CSV with a "
                                 "sample_id column), relative to the working directory")

    @model_validator(mode="after")
    def _what_the_strategy_needs(self) -> SelectionParams:
        if self.strategy == "class" and self.label is None:
            raise ValueError("strategy class needs `label` (the class to forget)")
        if self.strategy == "ids" and (self.ids is None) == (self.ids_file is None):
            raise ValueError("strategy ids needs exactly one of `ids` (a list) and `ids_file`")
        return self
