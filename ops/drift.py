"""The drift counters' arithmetic: what the champion has been through since its last full training, after a batch.

The ledger stores the counters it is given (ledger.Ledger.finish_batch); the rule lives here, beside the batch that
applies it, and iau_core.deletion.escalation_reason reads the counters back to decide when a batch must retrain.
"""

from __future__ import annotations

from iau_core.config import GOLD
from iau_core.config.unlearning import EXACT_METHODS
from ledger import ChampionView, DriftCounters


def counters_after(parent: ChampionView | None, method: str, forgotten: int, kept: bool) -> DriftCounters:
    """The serving model's counters once a batch that forgot `forgotten` records finishes:
    - the champion kept unchanged (its step changed nothing): the records count as forgotten without a retrain;
    - an exact method (retrained on what was left, or `sisa`, whose shards retrained are, by construction, what
      retraining would give): the counters restart, D now the training size minus everything forgotten;
    - an approximate method (iau, finetune, ...): one more batch, `forgotten` more records since the retrain.
    Without a recorded champion there is nothing to count from: the ledger refuses such a batch anyway."""
    if parent is None:
        return DriftCounters(0, 0, 0)
    if kept:
        return DriftCounters(parent.iau_batches_since_retrain, parent.forgotten_since_retrain + forgotten,
                             parent.train_size_at_retrain)
    if method == GOLD or method in EXACT_METHODS:  # iau_core.deletion.is_exact, without importing torch
        return DriftCounters(0, 0, parent.train_size_at_retrain - parent.forgotten_since_retrain - forgotten)
    return DriftCounters(parent.iau_batches_since_retrain + 1, parent.forgotten_since_retrain + forgotten,
                         parent.train_size_at_retrain)
