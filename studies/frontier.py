"""The forgetting frontier (issue 28): how much of retraining's movement each method can close, at what cost.

    .venv/bin/python -m studies.frontier                       # 5 seeds, both settings (long), then the report
    .venv/bin/python -m studies.frontier --seeds 1 3           # some seeds only (two processes can share the work)
    .venv/bin/python -m studies.frontier --render-only         # reports/frontier.{md,json,png} from the raw files

**An oracle study.** It reads retraining's numbers to show what each method *can* reach over a grid of its one
strength knob; the best point of a grid is chosen with the retrained model and the test set, so it never sets a
default. Only the points a rule chooses without them (the eta rule, and the self-check rule below) are marked
`oracle_free`.

The leaking setting (studies/leaking.yaml: an MLP that memorizes D = 4,000 Fashion-MNIST records; RMIA is the
headline attack), per seed: the deployed model, then for each forget set (`random_200`: a random 5%; `batch_1000`:
a random 1,000-record batch) retrain and retrain_alt (the noise floor), then every grid point of every method. Each
point records the headline attack's AUC on D_f against the held-out test records, the test and validation accuracy,
its compute, and the self-check: the loss attack's AUC on D_f against validation records of D_f's label mix.

- **Fraction of retraining's movement closed**, per seed: (AUC_original - AUC_method) / (AUC_original -
  AUC_retrain), then mean and 95% t-interval over seeds (paired: every method on the same seeds' models).
- **MU gap**: |test acc - retrain's|, within the floor when its mean is at most retrain_alt's.
- **Compute**: the process's CPU seconds (every thread; a busy neighbour inflates wall time, not CPU time) over
  retraining's on the same seed. An iterative method's epochs are observed in one run (UnlearningTask.observe): an
  epoch's point costs the CPU seconds up to its end, the observer's own excluded.
- **The self-check rule** (oracle-free, judged by another attack on other non-members): along a method's knob, the
  cheapest point whose validation accuracy fell at most 1 point and whose loss-attack AUC on D_f against
  validation records is within chance: <= 0.5 + 2 standard deviations of a same-distribution AUC at those sizes.
  It reads D_f, the validation set and the model only; the judge is RMIA, with reference models, on test records.

Raw numbers: reports/frontier/seed_<n>.json (one per seed, written as each setting finishes).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import yaml
from torch import nn

from iau_core.config.cli_args import add_params_arguments, params_from
from iau_core.data import load_bundle
from iau_core.recipe import LocalSteps, model_builder
from iau_core.selection import select_forget_set
from iau_core.sources import materialized_root
from iau_core.training import accuracy, resolve_device
from iau_core.unlearning import UnlearningTask, get_method
from iau_core.unlearning.gradients import choose_eta, iau_direction_and_line, step
from iau_core.unlearning.self_check import SelfCheck
from studies import PROJECT_ROOT

REPORTS = PROJECT_ROOT / "reports"
RAW = REPORTS / "frontier"
LEAKING = Path(__file__).with_name("leaking.yaml")
SETTINGS = {"random_200": 0.05, "batch_1000": 0.25}  # share of D = 4,000 drawn at random
HEADLINE = "rmia"
NO_STOP = {"stop_at_heldout_loss": False, "val_drop_budget": 100.0}  # the grid runs every epoch it names
STEP_SIZES = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3)  # IAU's step length ||eta * direction|| over ||theta||

# Each method's knob lines: (label, settings of its section, epochs observed). An iterative method's epochs are the
# points of one line; a line per learning rate. Values around each method's published default (its docstring).
EPOCH_LINES: dict[str, list[tuple[str, dict, int]]] = {
    "iau_adam": [(f"lr {lr:g}", {"lr": lr}, 5) for lr in (1e-4, 1e-3, 1e-2)],  # epochs = Adam steps
    "finetune": [(f"lr {lr:g}", {"lr": lr}, 10) for lr in (0.01, 0.05)],
    "neggrad": [(f"lr {lr:g}", {"lr": lr}, 5) for lr in (1e-4, 1e-3, 1e-2)],
    "neggrad_plus": [(f"lr {lr:g}", {"lr": lr}, 10) for lr in (0.01, 0.05)],
    "scrub": [(f"lr {lr:g}", {"lr": lr, "max_epochs": 10}, 10) for lr in (5e-4, 5e-3)],
    "salun": [(f"lr {lr:g}", {"lr": lr}, 10) for lr in (0.013, 0.05)],
    "l1_sparse": [("lr 0.01", {"lr": 0.01}, 10)],
    "imu": [(f"lr {lr:g}", {"lr": lr}, 5) for lr in (1e-4, 1e-2, 1.0)],
    "eu_k": [(f"k {k}", {"k": k}, 10) for k in (1, 2)],
    "cf_k": [(f"k {k}", {"k": k}, 10) for k in (1, 2)],
}


SCORED = ("rmia_auc", "lira_auc", "rmia_tpr_at_1pct_fpr", "test_acc", "val_acc", "self_check_auc")


class Scorer:
    """What one point records, on the same seed's records for every method."""

    def __init__(self, bundle, attacks, forget, device, seed: int) -> None:
        self.bundle, self.attacks, self.forget, self.device = bundle, attacks, forget, device
        self.check = SelfCheck.of(forget, bundle.val, 2.0, device, seed)  # the stop rule's own check, at z = 2
        self.self_check_limit = self.check.limit

    def __call__(self, model: nn.Module) -> dict[str, float]:
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            return {key: float("nan") for key in SCORED} | {"diverged": True}  # a step too large for the method
        try:
            judged = {a: self.attacks[a].roc(model, self.forget, self.bundle.test, self.device)
                      for a in ("rmia", "lira")}
        except ValueError:  # finite weights, but losses or logits overflowed
            return {key: float("nan") for key in SCORED} | {"diverged": True}
        return {"rmia_auc": judged["rmia"].auc, "lira_auc": judged["lira"].auc,
                "rmia_tpr_at_1pct_fpr": judged["rmia"].tpr_at_1pct_fpr,
                "test_acc": accuracy(model, self.bundle.test, self.device),
                "val_acc": accuracy(model, self.bundle.val, self.device),
                "self_check_auc": self.check.auc(model)}


class Clock:
    """CPU seconds of this process since start, less what the observer spent scoring."""

    def __init__(self) -> None:
        self.start, self.excluded = time.process_time(), 0.0

    def now(self) -> float:
        return time.process_time() - self.start - self.excluded


def epoch_line(method: str, label: str, settings: dict, epochs: int, task: UnlearningTask,
               score: Scorer) -> list[dict]:
    """One run of `method` with its section changed by `settings`, scored after every epoch."""
    section = getattr(task.unlearning, method).model_copy(update={**settings, "epochs": epochs}
                                                           if method != "iau_adam" else {**settings, "steps": epochs})
    unlearning = task.unlearning.model_copy(update={method: section, "stop_rule": task.unlearning.stop_rule
                                                    .model_copy(update=NO_STOP)})
    points, clock = [], Clock()

    def observe(epoch: int, model: nn.Module) -> None:
        at, scored_from = clock.now(), time.process_time()
        points.append({"method": method, "line": label, "knob": epoch, "cpu_seconds": at, **score(model)})
        clock.excluded += time.process_time() - scored_from

    get_method(method)(replace(task, unlearning=unlearning, observe=observe))
    return points


def iau_line(reduction: str, task: UnlearningTask, score: Scorer) -> list[dict]:
    """Eq. 8's direction read once, then a step of each relative length, and the eta rule's own choice."""
    model = task.copy_model().eval()
    clock = Clock()
    direction, line = iau_direction_and_line(model, task.retain, task.forget, task.unlearning.batch_size, reduction)
    cost = clock.now()
    theta = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    theta_norm = math.sqrt(sum(float((t * t).sum()) for t in theta))
    d_norm = math.sqrt(sum(float((d * d).sum()) for d in direction))
    label = f"iau ({reduction})"
    points = []
    for size in STEP_SIZES:
        eta = size * theta_norm / d_norm
        step(model, theta, direction, eta)
        points.append({"method": "iau", "line": label, "knob": size, "eta": eta, "cpu_seconds": cost, **score(model)})
    step(model, theta, direction, 0.0)
    ruled = Clock()
    choice = choose_eta(model, direction, task.forget, task.val, task.unlearning.eta_rule, task.device, line=line)
    relative = choice.eta * d_norm / theta_norm
    points.append({"method": "iau", "line": f"{label}, eta rule", "knob": relative, "eta": choice.eta,
                   "cpu_seconds": cost + ruled.now(), "oracle_free": "eta rule", **score(model)})
    return points


def measure_seed(params, bundle, steps: LocalSteps, seed: int, device, save, log=print) -> dict:
    """Every point of every method on one seed, both settings."""
    run = params.for_seed(seed)
    original = steps.base_model(run, "deployed")
    attacks = steps.attacks()
    out: dict = {"seed": seed, "settings": {}}
    for setting, share in SETTINGS.items():
        selection = run.selection.model_copy(update={"strategy": "random", "fraction": share})
        forget_ids = select_forget_set(bundle.train, selection, seed)
        forget, retain = bundle.train.partition(forget_ids)
        task = UnlearningTask(model=original, retain=retain.to(device), forget=forget.to(device),
                              val=bundle.val.to(device), build_model=model_builder(run, bundle),
                              training=run.training, unlearning=run.unlearning, device=device, seed=seed)
        score = Scorer(bundle, attacks, forget, device, seed)
        points = [{"method": "original", "line": "original", "knob": 0, "cpu_seconds": 0.0, **score(original)}]
        for reference in ("retrain", "retrain_alt"):
            clock = Clock()
            model = get_method(reference)(task).model
            points.append({"method": reference, "line": reference, "knob": 0, "cpu_seconds": clock.now(),
                           **score(model)})
            log(f"seed {seed} {setting}: {reference} {clock.now():.0f} CPU s, {HEADLINE} "
                f"{points[-1][f'{HEADLINE}_auc']:.3f}")
        for reduction in ("sum", "mean"):
            points += iau_line(reduction, task, score)
        for method, lines in EPOCH_LINES.items():
            for label, settings, epochs in lines:
                start = time.perf_counter()
                points += epoch_line(method, label, settings, epochs, task, score)
                log(f"seed {seed} {setting}: {method} {label} ({time.perf_counter() - start:.0f}s wall)")
        out["settings"][setting] = {"forget": len(forget), "self_check_limit": score.self_check_limit,
                                    "points": points}
        save(out)  # a run cut short keeps every finished setting
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    add_params_arguments(parser, params_file=False)
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    if not args.render_only:
        params = params_from(parser, args, PROJECT_ROOT / "params.yaml", base=yaml.safe_load(LEAKING.read_text()))
        device = resolve_device(params.device)
        bundle = load_bundle(params.data, materialized_root(params.data, PROJECT_ROOT))
        steps = LocalSteps(params, bundle, device)
        RAW.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        for seed in args.seeds:

            def save(raw: dict, seed: int = seed) -> None:
                raw |= {"wall_seconds_so_far": time.perf_counter() - started, "torch_threads": torch.get_num_threads(),
                        "measured_on": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv[1:])}
                (RAW / f"seed_{seed}.json").write_text(json.dumps(raw, indent=1))

            measure_seed(params, bundle, steps, seed, device, save)
    from studies.frontier_report import render

    render(RAW, REPORTS)


if __name__ == "__main__":
    main()
