"""Choose the forget set and leave its manifest on the parent run (the audit trail of what was forgotten)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from iau_core.selection import forget_set_sha256, select_forget_set
from tasks import tracking
from tasks.context import RunContext


@task(name="select-forget-set", cache_policy=NO_CACHE)
def forget_set(ctx: RunContext, parent_run_id: str) -> list[int]:
    ids = select_forget_set(ctx.bundle().train, ctx.params.selection)
    tracking.log_text(parent_run_id, "sample_id\n" + "\n".join(str(int(i)) for i in ids) + "\n",
                      "forget_set.csv")
    tracking.set_tags(parent_run_id, {"forget_set_sha256": forget_set_sha256(ids)})
    tracking.log_metrics(parent_run_id, {"forget_set_size": len(ids), "train_size": len(ctx.bundle().train)})
    return [int(i) for i in ids]
