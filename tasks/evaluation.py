"""The attack's own strength, and the comparison table that ranks every method against retraining."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from iau_core.experiment import attack_strength
from iau_core.metrics import ATTACK_STRENGTH, AVG_RANK, MU_GAP, SPEEDUP, UE_GAP, compare
from tasks import tracking
from tasks.context import RunContext
from tasks.training import ModelRef, load_attack, load_base_model


@task(name="attack-strength", cache_policy=NO_CACHE)
def measure_attack_strength(ctx: RunContext, base: ModelRef, attack_run_id: str, parent_run_id: str) -> float:
    """How well the attack tells the original's members from non-members: the yardstick for ue_gap."""
    strength = attack_strength(load_attack(ctx, attack_run_id), load_base_model(ctx, base), ctx.bundle(),
                               ctx.device, ctx.params.seed)
    tracking.log_metrics(parent_run_id, {ATTACK_STRENGTH: strength})
    return strength


@task(name="compare-methods", cache_policy=NO_CACHE)
def compare_methods(outcomes: list[dict], parent_run_id: str) -> pd.DataFrame:
    """Gaps to the gold model go onto each method's run; the whole table onto the parent run."""
    table = compare({o["method"]: o["scores"] for o in outcomes}, {o["method"]: o["seconds"] for o in outcomes})
    for outcome in outcomes:
        row = table.loc[outcome["method"]]
        tracking.log_metrics(outcome["run_id"], {k: row[k] for k in (MU_GAP, UE_GAP, SPEEDUP, AVG_RANK)})
    tracking.log_text(parent_run_id, table.to_csv(float_format="%.4f"), "comparison.csv")
    tracking.log_text(parent_run_id, table.round(3).to_string() + "\n", "comparison.txt")
    return table
