"""Typed, validated configuration: params.yaml is read once, at the edge, into frozen sections.

A typo in a key or a bad value fails here, naming the key, before any data is loaded or a model trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class Section(BaseModel):
    """Base for every section: unknown keys are errors, values are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataParams(Section):
    """Which dataset and how many records play each role (see METRICS.md, 'Data roles')."""

    dataset: Literal["fashion_mnist", "digits"] = "fashion_mnist"
    root: str = "data"
    train_size: int = Field(8000, gt=0, description="|D|: the deployed model's training set")
    val_size: int = Field(2000, gt=0, description="early stopping only")
    test_size: int = Field(2000, gt=0, description="utility (test_acc) and MIA non-members")
    shadow_pool_size: int = Field(16000, gt=0, description="attacker-only data, disjoint from D, val, test")


class ModelParams(Section):
    name: Literal["lenet5"] = "lenet5"


class TrainingParams(Section):
    """One recipe for the original, the retrained gold model and the shadow models (paper VI-A.6)."""

    optimizer: Literal["adam"] = "adam"
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, gt=0)
    max_epochs: int = Field(20, gt=0)
    patience: int = Field(5, gt=0, description="epochs without validation-accuracy gain before stopping")
    gr_alpha: float = Field(0.005, ge=0, description="GR loss weight (paper Eq. 7); 0 = plain cross-entropy")


Strategy = Literal["random", "outliers"]


class SelectionParams(Section):
    """How the forget set D_f is chosen from D."""

    strategy: Strategy = "outliers"
    fraction: float = Field(0.05, gt=0, lt=1, description="random: share of D to forget")
    contamination: float = Field(0.01, gt=0, lt=0.5, description="outliers: IsolationForest contamination")
    seed: int = 0


class UnlearningParams(Section):
    """The unlearning step and the methods compared against retraining."""

    methods: tuple[str, ...] = ("iau",)
    eta: float = Field(0.02, ge=0, description="IAU step size (paper Eq. 8, mean-reduced gradients). params.yaml "
                       "may give one per selection strategy ({outliers: 0.02, random: 0.15}); the strategy of the "
                       "run picks it")
    batch_size: int = Field(512, gt=0, description="gradient accumulation batch; memory, not the math")

    @model_validator(mode="before")
    @classmethod
    def _methods_as_tuple(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("methods"), list):
            data = {**data, "methods": tuple(data["methods"])}
        return data

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: tuple[str, ...]) -> tuple[str, ...]:
        from iau_core.unlearning import METHODS  # late: the registry imports torch code that imports config

        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise ValueError(f"unknown unlearning method(s) {unknown}; known: {sorted(METHODS)} "
                             "(retrain and original always run as references)")
        return methods


class MiaParams(Section):
    """The paper's shadow-model attack (Shokri et al.), as METRICS.md defines it."""

    num_shadow: int = Field(3, gt=0)
    hidden: tuple[int, ...] = (256, 128)
    dropout: float = Field(0.5, ge=0, lt=1)
    lr: float = Field(1e-3, gt=0)
    epochs: int = Field(50, gt=0)
    batch_size: int = Field(256, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _hidden_as_tuple(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("hidden"), list):
            data = {**data, "hidden": tuple(data["hidden"])}
        return data


class TrackingParams(Section):
    experiment: str = "iau-unlearning"
    registered_model: str = "iau-base-model"


class Params(Section):
    """The whole of params.yaml."""

    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    training: TrainingParams = TrainingParams()
    selection: SelectionParams = SelectionParams()
    unlearning: UnlearningParams = UnlearningParams()
    mia: MiaParams = MiaParams()
    tracking: TrackingParams = TrackingParams()

    @model_validator(mode="before")
    @classmethod
    def _eta_for_the_selection(cls, data: object) -> object:
        """A forget set of outliers pulls harder than a random one, so eta may be given per strategy; the
        strategy of this run picks its eta, and the rest of the code sees one number."""
        if not isinstance(data, dict):
            return data
        unlearning, selection = data.get("unlearning"), data.get("selection") or {}
        if not (isinstance(unlearning, dict) and isinstance(unlearning.get("eta"), dict)):
            return data
        etas = unlearning["eta"]
        strategies = get_args(Strategy)
        strategy = selection.get("strategy", SelectionParams().strategy) if isinstance(selection, dict) else None
        if strategy not in strategies:  # the field check names selection.strategy; don't bury it under eta
            return {**data, "unlearning": {**unlearning, "eta": UnlearningParams().eta}}
        unknown = sorted(set(etas) - set(strategies))
        if unknown:
            raise ValueError(f"unlearning.eta: unknown selection strategy {unknown}; known: {list(strategies)}")
        if strategy not in etas:
            raise ValueError(f"unlearning.eta gives no step size for selection strategy {strategy!r} "
                             f"(it has {sorted(etas)}); add one or give a single number")
        return {**data, "unlearning": {**unlearning, "eta": etas[strategy]}}


class ParamsError(ValueError):
    """params.yaml (or an override) is invalid; the message names each bad key and why."""


def parse_params(raw: dict) -> Params:
    """Validate a plain dict (e.g. loaded YAML) into Params, turning pydantic's report into one clear error."""
    if not isinstance(raw, dict):
        raise ParamsError(f"params must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            if err["loc"]:
                lines.append(f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})")
            else:  # a check across sections: its message names the keys, the input is the whole file
                lines.append(f"  {err['msg'].removeprefix('Value error, ')}")
        raise ParamsError("invalid params:\n" + "\n".join(lines)) from None


def load_params(path: str | Path = "params.yaml", overrides: dict | None = None) -> Params:
    """Read params.yaml and apply nested overrides ({'selection': {'strategy': 'random'}})."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    return parse_params(deep_merge(raw, overrides or {}))


def deep_merge(base: dict, override: dict) -> dict:
    """Return base with override's leaves written over it (neither input is modified)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def schema() -> dict:
    """The whole shape of params.yaml as JSON schema (shown by `python -m iau_core --schema`)."""
    return Params.model_json_schema()
