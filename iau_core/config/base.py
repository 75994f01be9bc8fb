"""What every params section shares: strict, frozen, unknown keys refused, YAML lists held as tuples; and the one
error type that names each bad key."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

KIND_SHORTHANDS = frozenset({"dataset", "optimizer", "lr_schedule"})  # sections a bare kind name may stand for


class Section(BaseModel):
    """Base for every section: unknown keys are errors, values are immutable once validated, and a YAML list
    becomes the tuple a frozen section holds (strict mode converts neither way by itself). This is the one place
    lists turn into tuples. No number may be infinite or NaN: `.inf` as a gate's budget would accept anything."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _lists_as_tuples(cls, data: object) -> object:
        if isinstance(data, dict):
            return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return data


def kind_shorthand(data: object, key: str = "kind") -> object:
    """`dataset: cifar10` stands for `dataset: {kind: cifar10}`: a kind with every default."""
    return {key: data} if isinstance(data, str) else data


class ParamsError(ValueError):
    """params.yaml (or an override) is invalid; the message names each bad key and why."""


def describe(exc: ValidationError, prefix: str = "") -> str:
    """pydantic's report as one line per bad key, each naming the key (with `prefix`) and the value given."""
    lines = []
    for err in exc.errors():
        where = prefix + ".".join(str(p) for p in err["loc"])
        if err["loc"] and isinstance(err.get("input"), dict):  # a check across a section's keys: the message names
            lines.append(f"  {where}: {err['msg'].removeprefix('Value error, ')}")  # them; the section is noise
        elif err["loc"]:
            lines.append(f"  {where}: {err['msg']} (got {err.get('input')!r})")
        else:  # a check across sections: its message names the keys, the input is the whole file
            lines.append(f"  {err['msg'].removeprefix('Value error, ')}")
    return "invalid params:\n" + "\n".join(lines)
