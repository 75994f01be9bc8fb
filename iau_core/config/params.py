"""The whole of params.yaml: every section, the checks across sections, and reading, overriding and validating it.

A typo in a key or a bad value fails here, naming the key, before any data is loaded or a model trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from iau_core.config.attacks import AttacksParams, LiraParams, MiaParams, RmiaParams
from iau_core.config.base import KIND_SHORTHANDS, ParamsError, Section, describe, kind_shorthand
from iau_core.config.data import MIN_ROLE_SIZE, DataParams
from iau_core.config.models import LeNet5Params, ModelParams
from iau_core.config.nightly import NightlyParams
from iau_core.config.requests import RequestsParams
from iau_core.config.selection import SelectionParams
from iau_core.config.training import TrainingParams
from iau_core.config.unlearning import UnlearningParams


class TrackingParams(Section):
    experiment: str = "iau-unlearning"
    registered_model: str = Field("iau-base-model", description="every experiment's base model")
    deployed_model: str = Field("iau-deployed-model", description="the production lineage: `iau train` and each "
                                "nightly batch register here, and the `champion` alias names the deployed version")

class DaskParams(Section):
    """Where `execution: dask` runs (flows/unlearn.py, task_runner). IAU_DASK_ADDRESS overrides `address`."""

    address: str | None = Field(None, description="scheduler address of an existing cluster (tcp://host:8786); "
                                "null starts a LocalCluster on this machine for the flow's lifetime")
    workers: Literal["auto"] | int = Field("auto", description="LocalCluster workers, each one process with one "
                                           "thread and one torch thread; auto = one per core")

    @field_validator("workers")
    @classmethod
    def _positive_workers(cls, workers: str | int) -> str | int:
        if workers != "auto" and workers < 1:
            raise ValueError(f"dask.workers must be auto or a positive integer, got {workers}")
        return workers


class Params(Section):
    """The whole of params.yaml."""

    seeds: tuple[int, ...] = Field((0,), description="each seed repeats the comparison: model initialisation, "
                                   "shuffling and the forget set; results are reported as mean ± std")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Literal["auto"] | int = Field("auto", description="torch compute threads per process, fixed when it "
                                           "starts: auto takes the cores this process may use (its CPU affinity), "
                                           "never a share of other processes; IAU_THREADS overrides it "
                                           "(iau_core/runtime.py)")
    execution: Literal["local", "dask"] = Field("local", description="local: the flow's tasks run one after "
                                                "another in its process; dask: the (method, seed) pairs and the "
                                                "reference models fan out over a Dask cluster (IAU_EXECUTION "
                                                "overrides it)")
    dask: DaskParams = DaskParams()
    data: DataParams = DataParams()
    model: ModelParams = Field(default_factory=lambda: LeNet5Params(name="lenet5"))
    training: TrainingParams = TrainingParams()
    selection: SelectionParams = SelectionParams()
    unlearning: UnlearningParams = UnlearningParams()
    mia: MiaParams = MiaParams()
    lira: LiraParams = LiraParams()
    rmia: RmiaParams = RmiaParams()
    attacks: AttacksParams = AttacksParams()
    tracking: TrackingParams = TrackingParams()
    nightly: NightlyParams = NightlyParams()
    requests: RequestsParams = RequestsParams()

    @model_validator(mode="before")
    @classmethod
    def _one_seed_shorthand(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("seeds"), int):  # `seeds: 3` stands for `seeds: [3]`
            data = {**data, "seeds": (data["seeds"],)}
        return data

    @field_validator("threads")
    @classmethod
    def _positive_threads(cls, threads: str | int) -> str | int:
        if threads != "auto" and threads < 1:
            raise ValueError(f"threads must be auto or a positive integer, got {threads}")
        return threads

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: tuple[int, ...]) -> tuple[int, ...]:
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be a non-empty list of distinct integers, got {list(seeds)}")
        return seeds

    @model_validator(mode="after")
    def _model_and_recipe_fit_the_data(self) -> Params:
        """Checks across sections, each naming both keys: a model reads the dataset's kind of input, image
        augmentation needs images, GR's per-record reading and its finite difference need a model without
        batch norm, and a validation budget is at least one validation record."""
        dataset, model, training = self.data.dataset, self.model, self.training
        if dataset.modality not in model.inputs:
            raise ValueError(f"model.name {model.name!r} reads {sorted(model.inputs)} inputs but data.dataset "
                             f"{dataset.kind!r} is a {dataset.modality}; for a table use model.name: mlp")
        if training.augment is not None and dataset.modality != "image":
            raise ValueError(f"training.augment crops and flips images but data.dataset {dataset.kind!r} is a "
                             f"{dataset.modality}; set training.augment: null")
        if model.batch_norm and training.gr_reading == "per_sample" and training.gr_alpha > 0:
            raise ValueError(f"training.gr_reading 'per_sample' needs each record's own gradient, which batch "
                             f"norm in training mode does not have; model.name {model.name!r} has batch norm: "
                             "use gr_reading: batch")
        if model.batch_norm and training.gr_hvp == "finite_difference" and training.gr_alpha > 0:
            raise ValueError(f"training.gr_hvp 'finite_difference' cannot hold the switches of model.name "
                             f"{model.name!r} (batch norm; its blocks call torch.relu): use gr_hvp: auto or "
                             "double_backward")
        for key, budget in (("eta_rule", self.unlearning.eta_rule.val_drop_budget),
                            ("stop_rule", self.unlearning.stop_rule.val_drop_budget)):
            if self.data.shares:  # val holds at least MIN_ROLE_SIZE records (checked once they are drawn)
                if 0 < budget < 100 / MIN_ROLE_SIZE:
                    raise ValueError(f"unlearning.{key}.val_drop_budget {budget} points may be less than one "
                                     f"validation record when data.val_size is a share; give val_size as a count")
                continue
            if 0 < budget * self.data.val_size / 100 < 1:  # a budget no single record can spend means nothing
                raise ValueError(f"unlearning.{key}.val_drop_budget {budget} points of data.val_size "
                                 f"{self.data.val_size} is less than one validation record; raise val_size to at "
                                 f"least {int(-(-100 // budget))} or the budget")
        return self

    @property
    def seed(self) -> int:
        """The seed of this repeat (the first one when several are listed; see for_seed)."""
        return self.seeds[0]

    def for_seed(self, seed: int) -> Params:
        """These params for one repeat: everything seeded by `seed` changes, the data roles do not."""
        return self.model_copy(update={"seeds": (seed,)})

def parse_params(raw: dict) -> Params:
    """Validate a plain dict (e.g. loaded YAML) into Params, turning pydantic's report into one clear error."""
    if not isinstance(raw, dict):
        raise ParamsError(f"params must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(describe(exc)) from None

MAX_PARAMS_BYTES = 1 << 20  # a params file is a few kilobytes; anything near a megabyte is not one
MAX_YAML_NODES = 100_000  # values after expanding aliases: an alias bomb stops here, in milliseconds
MAX_OVERRIDE_CHARS = 1_000  # one --set value; a 5,000-digit number is a mistake, not a parameter


def load_params(path: str | Path = "params.yaml", overrides: dict | None = None) -> Params:
    """Read params.yaml and apply nested overrides ({'selection': {'strategy': 'random'}}). Every way the file can
    be wrong (missing, empty, too large, not UTF-8, bad YAML, an alias bomb, not a mapping, a bad key) is one
    ParamsError, raised before anything else is read or written."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    if path.stat().st_size > MAX_PARAMS_BYTES:
        raise ParamsError(f"{path}: {path.stat().st_size:,} bytes, not a params file (at most {MAX_PARAMS_BYTES:,})")
    raw = read_yaml(path.read_bytes(), str(path))
    if raw is None:  # an empty file would silently mean "every default": refused, so a truncated file is noticed
        raise ParamsError(f"{path} is empty: write the sections to change (or `{{}}` for every default)")
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: params must be a mapping of sections, got a YAML {type(raw).__name__}")
    return parse_params(deep_merge(raw, overrides or {}))


def read_yaml(data: bytes | str, where: str) -> object:
    """YAML text as plain values, or a one-line ParamsError (never the file's bytes, which may be anything)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParamsError(f"{where}: not UTF-8 text (byte {exc.start}); params must be a YAML text file") from None
    if "\x00" in data:
        raise ParamsError(f"{where}: holds a NUL byte; params must be a YAML text file")
    try:
        value = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ParamsError(f"{where}: not valid YAML{at}: {problem}") from None
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        raise ParamsError(f"{where}: {str(exc).splitlines()[0][:120]}") from None
    if expanded_size(value) > MAX_YAML_NODES:  # aliases share nodes, so loading was cheap; expanding would not be
        raise ParamsError(f"{where}: expands to more than {MAX_YAML_NODES:,} values (YAML aliases); refused")
    return value


def expanded_size(value: object, limit: int = MAX_YAML_NODES) -> int:
    """How many values `value` holds once aliases are expanded, counting stops just past `limit`."""
    count, stack = 0, [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return count


def parse_overrides(items: list[str]) -> dict:
    """['selection.strategy=random', 'training.lr=0.01'] -> nested dict, values parsed as YAML scalars. A key
    given both as a value and as a section (`a=1 --set a.b=2`), a bad YAML value or an over-long one is a
    ParamsError naming the --set."""
    nested: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParamsError(f"--set expects KEY=VALUE, got {shown(item)}")
        if len(value) > MAX_OVERRIDE_CHARS:
            raise ParamsError(f"--set {shown(key)}: the value has {len(value):,} characters (at most "
                              f"{MAX_OVERRIDE_CHARS:,})")
        *parents, leaf = key.split(".")
        if not all(parents) or not leaf:
            raise ParamsError(f"--set {shown(key)}: empty key part")
        node = nested
        for depth, part in enumerate(parents):
            if part in KIND_SHORTHANDS and isinstance(node.get(part), str):  # `x=cifar10`, then `x.download=true`
                node[part] = kind_shorthand(node[part])
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ParamsError(f"--set {shown(key)}: {'.'.join(parents[:depth + 1])} was set to a value by an "
                                  "earlier --set, it cannot also be a section")
        parsed = read_yaml(value, f"--set {shown(key)}")
        if isinstance(node.get(leaf), dict) and not isinstance(parsed, dict):
            raise ParamsError(f"--set {shown(key)}: an earlier --set set keys inside it; give one or the other")
        node[leaf] = parsed
    return nested


def shown(text: str) -> str:
    """A piece of a command line, quoted and bounded, for an error message."""
    return repr(text if len(text) <= 60 else text[:57] + "...")

def deep_merge(base: dict, override: dict) -> dict:
    """Return base with override's leaves written over it (neither input is modified)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and key in KIND_SHORTHANDS and isinstance(merged.get(key), str):
            merged[key] = kind_shorthand(merged[key])  # `dataset: cifar10` and an override of one of its keys
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged

def schema() -> dict:
    """The whole shape of params.yaml as JSON schema (shown by `python -m iau_core --schema`)."""
    return Params.model_json_schema()
