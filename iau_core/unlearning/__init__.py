"""Unlearning methods, one module each, found by name. Every method is `fn(UnlearningTask) -> nn.Module`.

`retrain` and `original` are references (gold model and do-nothing); the rest are compared against them.
"""

from iau_core.unlearning.base import MethodFn, MethodRun, UnlearningTask, timed
from iau_core.unlearning.iau import iau
from iau_core.unlearning.references import original, retrain

REFERENCES: dict[str, MethodFn] = {"retrain": retrain, "original": original}
METHODS: dict[str, MethodFn] = {"iau": iau}


def get_method(name: str) -> MethodFn:
    registry = {**REFERENCES, **METHODS}
    if name not in registry:
        raise ValueError(f"unknown unlearning method {name!r}; known: {sorted(registry)}")
    return registry[name]


__all__ = ["METHODS", "REFERENCES", "MethodFn", "MethodRun", "UnlearningTask", "get_method", "timed"]
