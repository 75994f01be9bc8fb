"""Train K models of one architecture at once: their parameters stacked along a new first dimension
(torch.func.stack_module_state), every step one vmapped gradient (functional_call), one optimizer over the stacked
tensors. Adam and SGD (momentum, weight decay, Nesterov) act elementwise, so one optimizer over stacked
parameters is K independent optimizers.

The recipe is train_model's (iau_core/training.py, its GR math in iau_core/gr.py): the same GR loss and reading,
Hessian-vector product, lr schedule, augmentation, and early stopping that keeps each model's best epoch. Model i
draws its batches from its own generator seeded with seeds[i], as train_model would, so with the same initial
weights the K models are the ones train_model gives one after another, up to float rounding. A model whose patience
runs out leaves the stack (its optimizer state with it), as it would have stopped alone.

Models with buffers (batch norm) or dropout cannot be trained this way: `can_train_together` says so and the
caller trains them one by one.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, grad_and_value, stack_module_state, vmap

from iau_core.config import TrainingParams
from iau_core.data import Split
from iau_core.evaluation import batches
from iau_core.gr import FD_RELATIVE_STEP, FrozenKinks, floored_sqrt, resolve_hvp
from iau_core.training import Progress, TrainReport, augment_batch, lr_factor, recipe_optimizer_over, synchronize

Params = dict[str, torch.Tensor]


def can_train_together(model: nn.Module) -> bool:
    """No buffers (batch norm's running statistics) and no dropout: vmap would share or redraw them."""
    return not any(True for _ in model.buffers()) and not any(isinstance(m, nn.modules.dropout._DropoutNd)
                                                            for m in model.modules())


def gr_gradient_fn(base: nn.Module, params: TrainingParams) -> Callable[[Params, torch.Tensor, torch.Tensor], Params]:
    """One model's gradient of the GR loss (paper Eq. 7, training.gr_reading and gr_hvp) as a pure function of
    its parameters, for vmap over models; the functional twin of gr.gr_backward."""
    alpha, reading = params.gr_alpha, params.gr_reading
    hvp = resolve_hvp(base, reading, params.gr_hvp)

    def ce(p: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(base, p, (x,)), y)

    def ce_one(p: Params, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return ce(p, xi.unsqueeze(0), yi.unsqueeze(0))

    def radius(p: Params) -> torch.Tensor:
        return FD_RELATIVE_STEP * (1.0 + torch.stack([t.pow(2).sum() for t in p.values()]).sum().sqrt())

    def gr_batch(p: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        g, loss = grad_and_value(ce)(p, x, y)
        return loss + alpha * floored_sqrt(sum((t * t).sum() for t in g.values()))

    def gr_per_sample(p: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        g = vmap(grad(ce_one), in_dims=(None, 0, 0))(p, x, y)
        return ce(p, x, y) + alpha * floored_sqrt(sum(t.flatten(1).pow(2).sum(1) for t in g.values())).mean()

    kinks = FrozenKinks(base)  # the finite difference replays the switches of the first pass (gr.py)
    kinks.mode = "off"

    def record(p: Params, x: torch.Tensor) -> list[torch.Tensor]:
        kinks.mode = "record"
        functional_call(base, p, (x,))
        kinks.mode = "off"
        return kinks.per_record()

    def fd_batch(p: Params, x: torch.Tensor, y: torch.Tensor) -> Params:
        patterns = record(p, x)
        g = grad(ce)(p, x, y)
        r = radius(p)
        step = r / floored_sqrt(sum((t * t).sum() for t in g.values()))
        kinks.use(patterns)
        shifted = grad(ce)({k: p[k] + step * g[k] for k in p}, x, y)
        kinks.mode = "off"
        return {k: g[k] + alpha * (shifted[k] - g[k]) / r for k in p}

    def shifted_one(p: Params, xi: torch.Tensor, yi: torch.Tensor, patterns: list[torch.Tensor]) -> Params:
        kinks.use(patterns, leading=1)
        return grad(ce_one)(p, xi, yi)

    def fd_per_sample(p: Params, x: torch.Tensor, y: torch.Tensor) -> Params:
        patterns = record(p, x)
        g = vmap(grad(ce_one), in_dims=(None, 0, 0))(p, x, y)
        r = radius(p)
        steps = r / floored_sqrt(sum(t.flatten(1).pow(2).sum(1) for t in g.values()))
        shifted = vmap(shifted_one, in_dims=(0, 0, 0, 0))(
            {k: p[k] + steps.view(-1, *[1] * p[k].dim()) * g[k] for k in p}, x, y, patterns)
        kinks.mode = "off"
        return {k: (g[k] + alpha * (shifted[k] - g[k]) / r).mean(0) for k in p}

    if alpha == 0:
        return grad(ce)
    if hvp == "finite_difference":
        return fd_per_sample if reading == "per_sample" else fd_batch
    return grad(gr_per_sample if reading == "per_sample" else gr_batch)


def train_models_together(models: list[nn.Module], trains: list[Split], vals: list[Split], params: TrainingParams,
                          device: torch.device, seeds: list[int], progress: Progress | None = None
                          ) -> list[TrainReport]:
    """Train `models` in place, model i on trains[i] with early stopping on vals[i] and shuffling seeded by
    seeds[i]; each keeps its best epoch's weights. The trains must have one size, and the vals one size."""
    if len({len(t) for t in trains}) != 1 or len({len(v) for v in vals}) != 1:
        raise ValueError("models trained together need training sets of one size and validation sets of one size")
    if not all(can_train_together(m) for m in models):
        raise ValueError("models with buffers (batch norm) or dropout cannot be trained together; train them one "
                         "by one")
    start = time.perf_counter()
    base = copy.deepcopy(models[0]).to("meta")
    stacked, _ = stack_module_state([m.to(device) for m in models])  # leaves, (K, *shape) each
    optimizer = recipe_optimizer_over(list(stacked.values()), params)
    gradient = vmap(gr_gradient_fn(base, params))
    xs = torch.stack([t.x for t in trains]).to(device)
    ys = torch.stack([t.y for t in trains]).to(device)
    val_x, val_y = torch.stack([v.x for v in vals]).to(device), torch.stack([v.y for v in vals]).to(device)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    augment_generators = [torch.Generator().manual_seed(s + 1) for s in seeds]
    active = list(range(len(models)))  # the original index of each stacked slot
    best_acc, best_epoch = [-1.0] * len(models), [0] * len(models)
    best_state: list[Params | None] = [None] * len(models)
    epochs_run = [0] * len(models)
    for epoch in range(1, params.max_epochs + 1):
        for group in optimizer.param_groups:
            group["lr"] = params.lr * lr_factor(params, epoch - 1)
        orders = [list(batches(len(trains[0]), params.batch_size, generators[i])) for i in active]
        rows = torch.tensor(active, device=device)[:, None]
        for step in range(len(orders[0])):
            idx = torch.stack([o[step] for o in orders]).to(device)  # (K, B)
            x = xs[rows, idx]
            if params.augment is not None:
                x = torch.stack([augment_batch(xi, params.augment, augment_generators[i])
                                 for xi, i in zip(x, active, strict=True)])
            grads = gradient({k: v.detach() for k, v in stacked.items()}, x, ys[rows, idx])
            for name, p in stacked.items():
                p.grad = grads[name]
            optimizer.step()
        accs = _accuracies(base, stacked, val_x[rows[:, 0]], val_y[rows[:, 0]])
        stopped = []
        for slot, i in enumerate(active):
            epochs_run[i] = epoch
            if accs[slot] > best_acc[i]:
                best_acc[i], best_epoch[i] = accs[slot], epoch
                best_state[i] = {k: v[slot].detach().clone() for k, v in stacked.items()}
            if epoch - best_epoch[i] >= params.patience:
                stopped.append(slot)
        if progress:
            progress(f"epoch {epoch}/{params.max_epochs}: {len(active)} models training, val acc "
                     f"{min(accs):.2f}-{max(accs):.2f}%, {time.perf_counter() - start:.0f}s")
        if stopped:
            keep = [slot for slot in range(len(active)) if slot not in stopped]
            active = [active[slot] for slot in keep]
            if not active:
                break
            stacked, optimizer = _keep_slots(stacked, optimizer, keep, params)
    for model, state in zip(models, best_state, strict=True):
        model.load_state_dict(state)
    synchronize(device)
    seconds = time.perf_counter() - start
    return [TrainReport(epochs_run[i], best_epoch[i], best_acc[i], seconds, epochs_run[i] < params.max_epochs)
            for i in range(len(models))]


@torch.no_grad()
def _accuracies(base: nn.Module, stacked: Params, x: torch.Tensor, y: torch.Tensor,
                batch_size: int = 1024) -> list[float]:
    """(K,) validation accuracy (0-100) of each stacked model on its own records x[k], y[k]."""
    forward = vmap(lambda p, xi: functional_call(base, p, (xi,)))
    params = {k: v.detach() for k, v in stacked.items()}
    right = torch.zeros(x.shape[0], device=x.device)
    for idx in batches(x.shape[1], batch_size):
        idx = idx.to(x.device)
        right += (forward(params, x[:, idx]).argmax(-1) == y[:, idx]).float().sum(1)
    return (100.0 * right / max(1, x.shape[1])).tolist() if x.shape[1] else [math.nan] * x.shape[0]


def _keep_slots(stacked: Params, optimizer: torch.optim.Optimizer, keep: list[int],
                params: TrainingParams) -> tuple[Params, torch.optim.Optimizer]:
    """The stack and its optimizer state cut down to the slots in `keep` (stopped models leave)."""
    rows = torch.tensor(keep, device=next(iter(stacked.values())).device)
    kept = {k: v.detach()[rows].clone().requires_grad_(True) for k, v in stacked.items()}
    new = recipe_optimizer_over(list(kept.values()), params)
    new.param_groups[0]["lr"] = optimizer.param_groups[0]["lr"]
    for old_p, new_p in zip(stacked.values(), kept.values(), strict=True):
        new.state[new_p] = {k: v[rows].clone() if torch.is_tensor(v) and v.shape == old_p.shape else
                            (v.clone() if torch.is_tensor(v) else v) for k, v in optimizer.state[old_p].items()}
    return kept, new
