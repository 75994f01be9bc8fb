"""Unlearning methods, one module each, found by name: the method <name> is the function <name> in
iau_core/unlearning/<name>.py, with the signature `fn(UnlearningTask) -> Unlearned`.

The names are listed once, torch-free, in iau_core/config/unlearning.py: REFERENCE_METHODS (`original`, `retrain`,
`retrain_alt`: do-nothing, gold model, noise floor) and METHOD_NAMES (the compared methods, `sisa` among them: the
exact deletion of a sharded model, EXACT_METHODS). Config validates
against them without importing any implementation; this module finds the code by the same name.
"""

from importlib import import_module

from iau_core.config import METHOD_NAMES, REFERENCE_METHODS
from iau_core.unlearning.base import MethodFn, MethodResult, Unlearned, UnlearningTask, timed

ALL_METHODS: tuple[str, ...] = (*REFERENCE_METHODS, *METHOD_NAMES)


def get_method(name: str) -> MethodFn:
    if name not in ALL_METHODS:
        raise ValueError(f"unknown unlearning method {name!r}; known: {sorted(ALL_METHODS)}")
    return getattr(import_module(f"{__name__}.{name}"), name)


def run_method(name: str, task: UnlearningTask) -> MethodResult:
    """The method `name` on `task`, timed (base.timed)."""
    return timed(name, get_method(name), task)


__all__ = ["ALL_METHODS", "MethodFn", "MethodResult", "Unlearned", "UnlearningTask", "get_method", "run_method",
           "timed"]
