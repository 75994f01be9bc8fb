"""The summed gradient a nightly batch leaves for the next one, without a full pass over D every batch.

After a batch the cached sum_D grad loss(theta) is stale twice over: D lost D_f, and the model moved from theta
to theta'. The exact refresh is one pass over the new D at theta' (gradients.summed_gradient), 4.25 s at
|D| = 60,000 against a 0.15 s step. The approximate refreshes keep the cache and correct it:

    sum_{D'} grad(theta') = [sum_D grad(theta) - sum_{D_f} grad(theta)]        exact: the cache minus D_f
                          + sum_{D'} [grad(theta') - grad(theta)]               estimated on a sample S of D'

`difference` estimates the second line as |D'| / |S| * sum_S [grad_i(theta') - grad_i(theta)] (two passes over
S, unbiased, no Taylor truncation); `first_order` as |D'| / |S| * sum_S H_i(theta) (theta' - theta), the
Hessian-vector product (double backward) on S. Both leave D_f's part exact and read |S| + |D_f| records, not |D|.
reports/refresh.md (studies/refresh.py) measured both against the exact pass: `difference` is the default, as
`first_order`'s Taylor error is not in its drift estimate.

Bounded staleness: S is read in GROUPS groups; the spread of their estimates gives the correction's standard
error, over the new gradient's norm a relative error, accumulated in quadrature since the last exact pass (the
samples are independent). Past `max_drift`, every `full_every` batches, without a previous cache or when the
previous cache does not match (D or shapes), the exact pass runs instead. A model far from the old one (a
retrain rung won) has a large spread and falls back by itself. The gate judges every batch regardless.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from iau_core.config import GradientRefreshParams
from iau_core.data import Split
from iau_core.training import batches, predict_logits
from iau_core.unlearning.gradients import SummedGradient, ids_sha256, summed_gradient, summed_loss_and_gradient

GROUPS = 8  # sample groups whose spread gives the correction's standard error (7 degrees of freedom)


@dataclass(frozen=True)
class RefreshRecord:
    """What a refresh did, for the batch's record (MLflow params, the study's table)."""

    mode: str  # what ran: exact | difference | first_order
    reason: str  # why that mode ran
    seconds: float
    drift: float  # estimated relative error of the refreshed gradient, accumulated since the last exact pass
    fell_back: bool  # an approximate mode was configured but the exact pass ran
    batches_since_exact: int  # stored with the cache: 0 after an exact pass
    records_read: int  # gradient records read (the exact pass: |D'|)

    def as_params(self) -> dict[str, str | float | int | bool]:
        return {f"gradient_refresh.{k}": v for k, v in asdict(self).items()}


def refresh_summed_gradient(previous: SummedGradient | None, old_model: nn.Module, new_model: nn.Module,
                            forget: Split, train: Split, val: Split, settings: GradientRefreshParams,
                            batch_size: int, seed: int = 0) -> tuple[SummedGradient, RefreshRecord]:
    """The new model's summed gradient over the new D (`train`, which no longer holds `forget`) and its
    validation logits, from `previous` (the old model's over the old D = train + forget) where settings allow.
    `seed` draws the sample (the batch id: reproducible, a different sample each batch)."""
    start = time.perf_counter()
    with _eval(old_model), _eval(new_model):
        stale = _why_exact(previous, old_model, forget, train, settings)
        if stale is None:
            cache, drift = _approximate(previous, old_model, new_model, forget, train, val, settings, batch_size,
                                        seed)
            if drift <= settings.max_drift:
                return cache, RefreshRecord(settings.mode, f"estimated drift {drift:.3g} <= {settings.max_drift}",
                                            time.perf_counter() - start, drift, False, cache.batches_since_exact,
                                            settings.sample + len(forget))
            stale = f"estimated drift {drift:.3g} > max_drift {settings.max_drift}"
        cache = summed_gradient(new_model, train, batch_size, val)
    return cache, RefreshRecord("exact", stale, time.perf_counter() - start, 0.0, settings.mode != "exact", 0,
                                len(train))


def _why_exact(previous: SummedGradient | None, old_model: nn.Module, forget: Split, train: Split,
               settings: GradientRefreshParams) -> str | None:
    """Why the exact pass must run (None: an approximate refresh may)."""
    if settings.mode == "exact":
        return "mode exact"
    if previous is None:
        return "no previous cache"
    if previous.batches_since_exact + 1 >= settings.full_every:
        return f"full_every {settings.full_every} reached"
    if settings.sample >= len(train):
        return f"the sample ({settings.sample}) is not smaller than D ({len(train)})"
    if previous.count != len(train) + len(forget) or previous.ids_sha256 != _union_sha256(train, forget):
        return "the previous cache was computed over another D"
    if [tuple(g.shape) for g in previous.grads] != [tuple(p.shape) for p in _params(old_model)]:
        return "the previous cache does not match the model's parameters"
    return None


def _approximate(previous: SummedGradient, old_model: nn.Module, new_model: nn.Module, forget: Split,
                 train: Split, val: Split, settings: GradientRefreshParams, batch_size: int,
                 seed: int) -> tuple[SummedGradient, float]:
    """(the corrected cache, its accumulated estimated relative error)."""
    device = next(old_model.parameters()).device
    _, forget_sum = summed_loss_and_gradient(old_model, forget, batch_size)
    kept = [c.to(device) - f for c, f in zip(previous.grads, forget_sum, strict=True)]
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randperm(len(train), generator=generator)[:settings.sample]
    moved = [n.detach() - o.detach() for n, o in zip(_params(new_model), _params(old_model), strict=True)]
    estimates = []  # each group's estimate of sum_{D'} [grad(theta') - grad(theta)]
    for group in sample.tensor_split(GROUPS):
        part = train.take(group.to(train.ids.device))
        if settings.mode == "difference":
            change = [n - o for n, o in zip(summed_loss_and_gradient(new_model, part, batch_size)[1],
                                            summed_loss_and_gradient(old_model, part, batch_size)[1], strict=True)]
        else:
            change = hessian_vector_sum(old_model, part, moved, batch_size)
        estimates.append([c * (len(train) / len(group)) for c in change])
    weights = [len(g) / len(sample) for g in sample.tensor_split(GROUPS)]
    correction = [sum(w * e[i] for w, e in zip(weights, estimates, strict=True)) for i in range(len(kept))]
    grads = [k + c for k, c in zip(kept, correction, strict=True)]
    spread = sum(sum(((e[i] - correction[i]) ** 2).sum().item() for i in range(len(kept))) for e in estimates)
    standard_error = math.sqrt(spread / (GROUPS * (GROUPS - 1)))
    norm = math.sqrt(sum((g ** 2).sum().item() for g in grads))
    drift = math.hypot(previous.drift, standard_error / norm if norm > 0 else math.inf)
    logits = predict_logits(new_model, val, device)
    return SummedGradient(grads, len(train), ids_sha256(train), logits, ids_sha256(val),
                          previous.batches_since_exact + 1, drift), drift


def hessian_vector_sum(model: nn.Module, split: Split, vector: list[torch.Tensor],
                       batch_size: int) -> list[torch.Tensor]:
    """sum over `split` of H_i(theta) @ vector, H_i the Hessian of record i's cross-entropy (double backward)."""
    params = _params(model)
    total = [torch.zeros_like(p) for p in params]
    for idx in batches(len(split), batch_size):
        idx = idx.to(split.x.device)
        loss = F.cross_entropy(model(split.x[idx]), split.y[idx], reduction="sum")
        grads = torch.autograd.grad(loss, params, create_graph=True)
        inner = torch.stack([(g * v).sum() for g, v in zip(grads, vector, strict=True)]).sum()
        for acc, h in zip(total, torch.autograd.grad(inner, params), strict=True):
            acc.add_(h)
    return total


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def _union_sha256(train: Split, forget: Split) -> str:
    from iau_core.selection import forget_set_sha256  # late: selection pulls in scikit-learn

    return forget_set_sha256(torch.cat([train.ids, forget.ids]).cpu().numpy())


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    """The model as deployed (no dropout noise, frozen norm statistics), its mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
