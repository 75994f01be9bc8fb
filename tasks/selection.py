"""Choose the forget set and leave its manifest on the parent run (the audit trail of what was forgotten)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from iau_core.selection import forget_set_sha256, select_forget_set
from tasks.context import RunContext


@task(name="select-forget-set", task_run_name="select-forget-set-seed{ctx.params.seed}", cache_policy=NO_CACHE)
def forget_set(ctx: RunContext) -> tuple[list[int], str]:
    """(sorted sample ids of D_f for this repeat's seed, their sha256)."""
    ids = select_forget_set(ctx.bundle().train, ctx.params.selection, ctx.params.seed)
    return [int(i) for i in ids], forget_set_sha256(ids)


def manifest(forget_sets: dict[int, list[int]]) -> str:
    """The forget-set manifest: one line per (seed, sample_id)."""
    lines = ["seed,sample_id"] + [f"{seed},{i}" for seed, ids in forget_sets.items() for i in ids]
    return "\n".join(lines) + "\n"
