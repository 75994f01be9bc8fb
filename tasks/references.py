"""One reference model of the attacker per task: how `execution: dask` trains them side by side, one per worker
(flows/unlearn.py submits them; tasks/training.py's reference_attack fits the attacks on their weights)."""

from __future__ import annotations

import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from iau_core.attacks.references import train_reference_model
from iau_core.recipe import member_builder, reference_count
from iau_core.runtime import prepare_process
from stores.project import RunContext


@task(name="reference-model", task_run_name="reference-model-{index}", cache_policy=NO_CACHE)
def reference_model(ctx: RunContext, index: int) -> dict[str, torch.Tensor]:
    """Train reference model `index` on its half of the shadow pool; returns its weights (on the CPU), the small
    part: the flow rebuilds its data halves from the index rather than shipping them back."""
    prepare_process(ctx.params.threads)  # maybe a fresh worker process: its share of the cores (IAU_THREADS=1)
    log = get_run_logger()
    attacker = ctx.params.for_seed(ctx.params.data.split_seed)  # the attacker's models follow the data split only
    bundle = ctx.bundle()
    trained = train_reference_model(bundle.shadow_pool, member_builder(attacker, bundle), attacker.training, index,
                                    reference_count(attacker), ctx.device, attacker.data.split_seed, log.info)
    return {name: value.detach().cpu() for name, value in trained.model.state_dict().items()}
