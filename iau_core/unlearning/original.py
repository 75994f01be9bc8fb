"""Doing nothing: the deployed model, scored like a method so every table shows what unlearning buys."""

from __future__ import annotations

from iau_core.unlearning.base import Unlearned, UnlearningTask


def original(task: UnlearningTask) -> Unlearned:
    return Unlearned(task.copy_model(), {"seed": task.seed, "step": "none: the deployed model as it is"})
