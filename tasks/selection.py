"""Choose the forget set (its manifest, reporting.tables.manifest, is the audit trail of what was forgotten)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from iau_core.selection import forget_set_sha256, select_forget_set
from stores.project import RunContext


@task(name="select-forget-set", task_run_name="select-forget-set-seed{ctx.params.seed}", cache_policy=NO_CACHE)
def forget_set(ctx: RunContext) -> tuple[list[int], str]:
    """(sorted sample ids of D_f for this repeat's seed, their sha256)."""
    ids = select_forget_set(ctx.bundle().train, ctx.params.selection, ctx.params.seed)
    return [int(i) for i in ids], forget_set_sha256(ids)

