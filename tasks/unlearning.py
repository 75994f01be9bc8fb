"""Run one unlearning method (or a reference) on the base model and record it as a nested run.

The nested run stays open (RUNNING) after this task: the gaps to the gold model and the noise-floor verdicts
are written onto it once every method of every seed has run, and only then is it finished (flows/unlearn.py), at
the end time this task recorded, so the UI's Duration is the method's own work.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from iau_core.metrics import UNLEARN_SECONDS
from iau_core.recipe import unlearn_and_score
from iau_core.runtime import prepare_process
from iau_core.unlearning import MethodResult
from stores import tracking
from stores.artifacts import ModelRef, load_attacks, load_base_model
from stores.project import RunContext


@task(name="unlearn", task_run_name="unlearn-{method}-seed{ctx.params.seed}", cache_policy=NO_CACHE)
def unlearn_with(method: str, ctx: RunContext, base: ModelRef, attack_run_id: str, forget_ids: list[int],
                 forget_sha256: str, parent_run_id: str, run_name: str) -> MethodResult:
    prepare_process(ctx.params.threads)  # execution: dask runs this in a worker process (IAU_THREADS=1 there)
    tracking.use_store(ctx.repo_root)
    log = get_run_logger()
    original = load_base_model(ctx, base)
    attacks = load_attacks(ctx, attack_run_id)
    tags = {"method": method, "seed": str(ctx.params.seed), "base_model": base.uri,
            "data_version": ctx.data_version, "forget_set_sha256": forget_sha256,
            "process": f"{os.uname().nodename}/{os.getpid()}"}  # where it ran: the flow's, or a Dask worker's
    run_id = tracking.start_run(ctx.experiment_id, run_name, tags, parent_run_id, repo_root=ctx.repo_root)
    bundle = ctx.bundle()
    result = unlearn_and_score(method, original, np.asarray(forget_ids), ctx.params, bundle, attacks, ctx.device,
                                lambda line: log.info("%s: %s", method, line))
    tracking.log_params(run_id, {k: str(v) for k, v in result.choices.items()})
    tracking.log_data_version(run_id, ctx.params.data.dataset.name, ctx.data_version, "data.dvc")
    tracking.log_metrics(run_id, {**result.scores.values, UNLEARN_SECONDS: result.seconds})
    # The LoggedModel is named after the method (the Models column and tab list 16 of them per comparison).
    model_name = method if run_name == method else f"{method}-seed{ctx.params.seed}"
    tracking.log_model(run_id, result.model, bundle.test.x[:2], name=model_name)
    tracking.work_done(run_id)  # the run's Duration is this method's work: unlearning, scoring, recording
    log.info("%s (seed %s): %.3fs, %s", method, ctx.params.seed, result.seconds,
             ", ".join(f"{k} {v:.3f}" for k, v in result.scores.values.items()))
    return replace(result, model=None, run_id=run_id)  # the model is on its run; the comparison needs the rest
