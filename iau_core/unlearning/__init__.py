"""Unlearning methods, one module each, found by name. Every method is `fn(UnlearningTask) -> Unlearned`.

`retrain`, `retrain_alt` and `original` are references (gold model, noise floor, do-nothing); the rest are
compared against them.
"""

from iau_core.unlearning.base import MethodFn, MethodRun, Unlearned, UnlearningTask, timed
from iau_core.unlearning.iau import iau
from iau_core.unlearning.references import original, retrain, retrain_alt

REFERENCES: dict[str, MethodFn] = {"original": original, "retrain": retrain, "retrain_alt": retrain_alt}
METHODS: dict[str, MethodFn] = {"iau": iau}


def get_method(name: str) -> MethodFn:
    registry = {**REFERENCES, **METHODS}
    if name not in registry:
        raise ValueError(f"unknown unlearning method {name!r}; known: {sorted(registry)}")
    return registry[name]


__all__ = ["METHODS", "REFERENCES", "MethodFn", "MethodRun", "Unlearned", "UnlearningTask", "get_method", "timed"]
