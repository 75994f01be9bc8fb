"""Run one unlearning method (or a reference) on the base model and record it as a nested run."""

from __future__ import annotations

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from iau_core.experiment import unlearn_and_score
from iau_core.metrics import UNLEARN_SECONDS
from tasks import tracking
from tasks.context import RunContext
from tasks.training import ModelRef, load_attack, load_base_model


@task(name="unlearn", task_run_name="unlearn-{method}", cache_policy=NO_CACHE)
def unlearn_with(method: str, ctx: RunContext, base: ModelRef, attack_run_id: str, forget_ids: list[int],
                 parent_run_id: str) -> dict:
    """Returns {'method', 'run_id', 'seconds', 'scores'}; the nested run holds the same plus the model."""
    original = load_base_model(ctx, base)
    attack = load_attack(ctx, attack_run_id)
    tags = {"method": method, "base_model": base.uri, "data_version": ctx.data_version}
    with tracking.run(ctx.experiment_id, method, tags, parent_run_id) as run_id:
        bundle = ctx.bundle()
        outcome = unlearn_and_score(method, original, np.asarray(forget_ids), ctx.params, bundle, attack,
                                    ctx.device)
        tracking.log_metrics(run_id, {**outcome.scores, UNLEARN_SECONDS: outcome.seconds})
        tracking.log_model(run_id, outcome.model, bundle.test.x[:2])
    return {"method": method, "run_id": run_id, "seconds": outcome.seconds, "scores": outcome.scores}
