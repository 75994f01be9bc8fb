"""The IAU step (paper Eq. 8), its per-run step-size rule, the references, and the method registry."""

import copy
import math
from dataclasses import replace

import pytest
import torch

from iau_core import sharding as sharding_module  # retraining trains through sharding.train_fresh
from iau_core.recipe import model_builder, train_original
from iau_core.selection import select_forget_set
from iau_core.training import TrainReport, accuracy, per_sample_losses
from iau_core.unlearning import UnlearningTask, get_method, run_method
from iau_core.unlearning.gradients import choose_eta, iau_direction, iau_direction_and_line, loss_gradient, step
from iau_core.unlearning.iau import iau
from studies.eta_rule import choose_eta_by_full_scan

CPU = torch.device("cpu")


def make_task(model, forget, retain, bundle, params, eta, reduction="mean", **rule):
    unlearning = params.unlearning.model_copy(update={
        "eta": eta, "reduction": reduction,
        "eta_rule": params.unlearning.eta_rule.model_copy(update=rule)})
    return UnlearningTask(model=model, retain=retain, forget=forget, val=bundle.val,
                          build_model=model_builder(params, bundle), training=params.training,
                          unlearning=unlearning, device=CPU, seed=params.seed)


def forget_loss(model, forget):
    return per_sample_losses(model, forget, CPU).mean().item()


def test_eta_zero_is_identity(trained, digits_bundle, digits_params):
    model, forget, retain = trained
    unlearned = iau(make_task(model, forget, retain, digits_bundle, digits_params, eta=0.0)).model
    for a, b in zip(model.parameters(), unlearned.parameters(), strict=True):
        assert torch.equal(a, b)


def test_iau_raises_forget_loss_and_keeps_utility(trained, digits_bundle, digits_params):
    model, forget, retain = trained
    before = copy.deepcopy(model.state_dict())
    unlearned = iau(make_task(model, forget, retain, digits_bundle, digits_params, eta=0.05)).model
    assert forget_loss(unlearned, forget) > forget_loss(model, forget)
    # Bound: one step may cost at most 5 points of test accuracy on digits.
    assert accuracy(unlearned, digits_bundle.test, CPU) >= accuracy(model, digits_bundle.test, CPU) - 5.0
    for key, value in model.state_dict().items():  # the deployed model is left untouched
        assert torch.equal(value, before[key])


def test_iau_moves_forget_loss_toward_the_retrained_model(trained, digits_bundle, digits_params):
    model, forget, retain = trained
    task = make_task(model, forget, retain, digits_bundle, digits_params, eta=0.05)
    gold = get_method("retrain")(task).model
    unlearned = iau(task).model
    assert abs(forget_loss(unlearned, forget) - forget_loss(gold, forget)) < \
        abs(forget_loss(model, forget) - forget_loss(gold, forget))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_iau_is_eq8_exactly(trained, digits_bundle, digits_params, reduction):
    """sum: theta - eta * (sum grad on D_r - sum grad on D_f), Eq. 8 as written; mean: the same with means.
    Computed here over whole sets at once, against the batched implementation."""
    model, forget, retain = trained
    eta = 0.3 if reduction == "mean" else 0.3 / len(retain)
    unlearned = iau(make_task(model, forget, retain, digits_bundle, digits_params, eta, reduction)).model
    params = list(model.parameters())
    f = torch.nn.functional.cross_entropy
    loss_r = f(model(retain.x), retain.y, reduction=reduction)
    loss_f = f(model(forget.x), forget.y, reduction=reduction)
    g_r, g_f = torch.autograd.grad(loss_r, params), torch.autograd.grad(loss_f, params)
    for p, new, gr, gf in zip(params, unlearned.parameters(), g_r, g_f, strict=True):
        assert torch.allclose(new, p - eta * (gr - gf), atol=1e-6)


def test_sum_and_mean_differ_in_direction_not_only_scale(trained):
    """With means the forget term weighs |D_r| / |D_f| times more: the two steps point different ways."""
    model, forget, retain = trained
    flat = [torch.cat([g.flatten() for g in iau_direction(model, retain, forget, 64, r)]) for r in ("sum", "mean")]
    cosine = torch.nn.functional.cosine_similarity(flat[0], flat[1], dim=0).item()
    assert cosine < 0.99, cosine


def test_gradient_correction_keeps_retain_accuracy_at_the_same_forgetting(trained, digits_bundle):
    """IAU (Eq. 8) against plain gradient ascent on D_f (Eq. 5 alone): each step is scaled until D_f's mean loss
    has risen by the same amount; the step with gradient correction must keep D_r better. Measured on digits
    (600 records, 60 forgotten), at several rises."""
    model, forget, retain = trained
    ascent = [-g for g in loss_gradient(model, forget, 64, "sum")]
    corrected = iau_direction(model, retain, forget, 64, "sum")
    theta = [p.detach().clone() for p in model.parameters()]
    start = forget_loss(model, forget)

    def retain_acc_at(direction, rise):
        probe = copy.deepcopy(model)
        lo, hi = 0.0, 1.0
        while step(probe, theta, direction, hi) or forget_loss(probe, forget) < start + rise:
            hi *= 2
        for _ in range(40):  # bisect the step size that gives exactly this rise
            mid = (lo + hi) / 2
            step(probe, theta, direction, mid)
            lo, hi = (mid, hi) if forget_loss(probe, forget) < start + rise else (lo, mid)
        step(probe, theta, direction, hi)
        return accuracy(probe, retain, CPU)

    for rise in (0.5, 1.0, 2.0):
        assert retain_acc_at(corrected, rise) > retain_acc_at(ascent, rise), rise


def test_retrain_never_sees_a_forgotten_record(trained, digits_bundle, digits_params, monkeypatch):
    model, forget, retain = trained
    seen = []

    def spy(model, train, val, *args, **kwargs):
        seen.append((set(train.ids.tolist()), set(val.ids.tolist())))
        return TrainReport(0, 0, 0.0, 0.0, False)

    monkeypatch.setattr(sharding_module, "train_model", spy)
    task = make_task(model, forget, retain, digits_bundle, digits_params, eta=0.0)
    get_method("retrain")(task)
    get_method("retrain_alt")(task)
    forgotten = set(forget.ids.tolist())
    assert len(seen) == 2
    for train_ids, val_ids in seen:
        assert train_ids == set(retain.ids.tolist()) and not train_ids & forgotten and not val_ids & forgotten


def test_retrain_alt_is_another_seed(trained, digits_bundle, digits_params):
    model, forget, retain = trained
    task = make_task(model, forget, retain, digits_bundle, digits_params, eta=0.0)
    a, b = get_method("retrain")(task), get_method("retrain_alt")(task)
    assert a.choices["seed"] != b.choices["seed"]
    assert not all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True))


def test_eta_rule_stops_where_forget_loss_reaches_heldout_loss(trained, digits_bundle, digits_params):
    model, forget, retain = trained
    out = iau(make_task(model, forget, retain, digits_bundle, digits_params, "auto", "sum", val_drop_budget=100.0))
    c = out.choices
    assert c["eta_chosen"] > 0 and c["eta_rule.reason"] == "D_f's loss reached the validation loss"
    assert forget_loss(out.model, forget) == pytest.approx(c["eta_rule.forget_loss"], rel=1e-5)
    assert c["eta_rule.forget_loss"] >= c["eta_rule.target_loss"]
    # one growth step less would not have reached the target: the rule takes the first step that does
    smaller = copy.deepcopy(model)
    theta = [p.detach().clone() for p in model.parameters()]
    step(smaller, theta, iau_direction(model, retain, forget, 512, "sum"), c["eta_chosen"] / 2)
    assert forget_loss(smaller, forget) < c["eta_rule.target_loss"]


def test_eta_rule_respects_the_validation_budget(trained, digits_bundle, digits_params):
    model, forget, retain = trained
    for budget in (0.0, 1.0):
        out = iau(make_task(model, forget, retain, digits_bundle, digits_params, "auto", "sum",
                            val_drop_budget=budget, start=1e-2))
        drop = accuracy(model, digits_bundle.val, CPU) - accuracy(out.model, digits_bundle.val, CPU)
        assert drop <= budget + 1e-9 and out.choices["eta_rule.val_acc_drop"] <= budget + 1e-9
    assert out.choices["eta_rule.candidates"] >= 1


def test_eta_rule_takes_no_step_when_even_the_first_is_too_costly(trained, digits_bundle, digits_params):
    model, forget, retain = trained
    choice = choose_eta(copy.deepcopy(model), iau_direction(model, retain, forget, 512, "sum"), forget,
                        digits_bundle.val, digits_params.unlearning.eta_rule.model_copy(
                            update={"start": 10.0, "val_drop_budget": 0.0}), CPU)
    assert choice.eta == 0.0 and "budget" in choice.reason


def test_gradient_accumulation_does_not_depend_on_batch_size(trained):
    model, forget, _ = trained
    for reduction in ("sum", "mean"):
        small = loss_gradient(model, forget, 7, reduction)
        whole = loss_gradient(model, forget, len(forget), reduction)
        for a, b in zip(small, whole, strict=True):
            assert torch.allclose(a, b, atol=1e-5)


def test_timed_run_and_registry(trained, digits_bundle, digits_params):
    model, forget, retain = trained
    run = run_method("iau", make_task(model, forget, retain, digits_bundle, digits_params, eta=0.1))
    assert run.seconds > 0 and run.choices["eta_chosen"] == 0.1
    with pytest.raises(ValueError, match="known"):
        get_method("does-not-exist")


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_cached_summed_gradient_gives_the_same_step(trained, digits_bundle, digits_params, reduction):
    """A nightly batch steps from D's cached summed gradient (sum_D - sum_Df) instead of a pass over D_r: the
    result must be the uncached step, within float tolerance, and the cache must not even need D_r."""
    from iau_core.unlearning.gradients import summed_gradient

    model, forget, retain = trained
    eta = 0.3 if reduction == "mean" else 0.3 / len(retain)
    task = make_task(model, forget, retain, digits_bundle, digits_params, eta, reduction)
    uncached = iau(task).model
    cache = summed_gradient(model, digits_bundle.train, batch_size=97)
    assert cache.count == len(digits_bundle.train)
    empty = retain.take(torch.arange(0))  # the cached path never reads D_r
    cached = iau(replace(task, summed_gradient=cache, retain=empty)).model
    for a, b in zip(uncached.parameters(), cached.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    moved = sum((a - p).abs().sum().item() for a, p in zip(uncached.parameters(), model.parameters(), strict=True))
    assert moved > 0  # the comparison is between two real steps, not two copies of the original


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_capped_eta_rule_chooses_what_the_full_scan_chose(digits_bundle, digits_params, seed):
    """Both rules on digits, for several models, selections and reductions: the capped rule reads the validation
    set at most 3 times and, at the default budget, lands within one growth step of the full scan (measured: the
    same eta in all 12 such cases, where the full scan made 2-18 passes). Both of its paths occur over the seeds
    (step within budget; step over budget and the search below it).

    At budget 0 one case differs (seed 2, outliers): the full scan stopped where one validation record (0.5
    points) flipped and later flipped back; the capped rule took the step that reaches the target at a cost of
    0 points, confirmed by a full pass. The exception is asserted as exactly that (docs/science.md)."""
    params = digits_params.for_seed(seed)
    model, _ = train_original(params, digits_bundle, CPU)
    rule = digits_params.unlearning.eta_rule
    reads: list[tuple[int, int]] = []  # D_f reads: (the strided scan, from the tangent line's prediction)
    for strategy in ("random", "outliers"):
        selection = params.selection.model_copy(update={"strategy": strategy})
        forget, retain = digits_bundle.train.partition(select_forget_set(digits_bundle.train, selection, seed))
        for reduction, budget in (("mean", 1.0), ("sum", 1.0), ("mean", 0.0)):
            direction, line = iau_direction_and_line(model, retain, forget, 512, reduction)
            case = rule.model_copy(update={"val_drop_budget": budget})
            old, old_passes = choose_eta_by_full_scan(copy.deepcopy(model), direction, forget, digits_bundle.val,
                                                      case, CPU)
            stepped = copy.deepcopy(model)
            new = choose_eta(stepped, direction, forget, digits_bundle.val, case, CPU)
            # Starting D_f's scan where the tangent line predicts changes how many reads it takes, not the choice.
            lined = choose_eta(copy.deepcopy(model), direction, forget, digits_bundle.val, case, CPU, line=line)
            assert lined == replace(new, candidates=lined.candidates), (lined, new)
            reads.append((new.candidates, lined.candidates))
            assert new.validation_passes <= 3
            drop = accuracy(model, digits_bundle.val, CPU) - accuracy(stepped, digits_bundle.val, CPU)
            assert drop <= budget + 1e-4 and abs(drop - new.val_acc_drop) < 1e-4
            if new.eta == old:
                continue
            if budget == rule.val_drop_budget:
                assert old > 0 and new.eta > 0, (old, new)
                assert abs(math.log(new.eta / old, rule.growth)) <= 1 + 1e-9, (old, new, old_passes)
            else:  # the transient above: a larger step, within budget, that reaches the target
                assert new.eta > old and new.reason == "D_f's loss reached the validation loss", (old, new)
    assert sum(lined for _, lined in reads) < sum(strided for strided, _ in reads), reads


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 7, 8, 9, 29, 30])
def test_the_strided_scan_finds_the_first_crossing_of_a_linear_scan(count):
    """_first_reaching reads every SCAN_STRIDE-th candidate, then bisects: for a loss that grows with eta it
    returns what reading every candidate returns (the first at or above the target; the last when none is), in
    fewer reads."""
    from iau_core.unlearning.gradients import _first_reaching

    for crossing in range(count + 1):  # crossing == count: no candidate reaches the target
        losses = [0.0 if k < crossing else 1.0 for k in range(count)]
        read: list[int] = []
        found = _first_reaching(lambda k: read.append(k) or losses[k], 0.5, count)  # noqa: B023
        assert found == min(crossing, count - 1), (count, crossing)
        assert len(set(read)) <= max(count // 4 + 3, 1) + 1


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 30])
def test_the_scan_from_a_predicted_start_finds_the_same_first_crossing(count):
    """From any start (the tangent line's prediction, right or wrong, even outside the grid) the scan returns the
    first candidate at or above the target, as reading every candidate does; 2 reads when the start is the
    crossing or the candidate before it, and a few more (steps 1, 1, 2, 4, ...) the further off it is."""
    from iau_core.unlearning.gradients import _first_reaching

    for crossing in range(count + 1):
        losses = [0.0 if k < crossing else 1.0 for k in range(count)]
        for start in range(-2, count + 2):
            read: list[int] = []
            found = _first_reaching(lambda k: read.append(k) or losses[k], 0.5, count, start)  # noqa: B023
            assert found == min(crossing, count - 1), (count, crossing, start)
            off = abs(min(max(start, 0), count - 1) - crossing)
            assert len(set(read)) <= 2 + 2 * math.ceil(math.log2(off + 1)), (count, crossing, start, read)
            if start in (crossing, crossing - 1) and 0 < crossing < count:
                assert len(set(read)) <= 2, (count, crossing, start, read)


def test_the_tangent_line_is_d_f_loss_and_its_derivative_along_the_step(trained, digits_bundle):
    """ForgetLine from the gradient pass equals D_f's mean loss at eta = 0 and the finite-difference slope of
    that loss along theta - eta * direction: the eta rule's prediction rests on the right line."""
    model, forget, retain = trained
    for reduction in ("sum", "mean"):
        direction, line = iau_direction_and_line(model, retain, forget, 512, reduction)
        theta = [p.detach().clone() for p in model.parameters()]
        stepped = copy.deepcopy(model)
        h = 1e-3 / max(abs(line.slope), 1e-6)
        losses = []
        for eta in (-h, 0.0, h):
            step(stepped, theta, direction, eta)
            losses.append(per_sample_losses(stepped, forget, CPU).mean().item())
        assert abs(losses[1] - line.loss) < 1e-5
        assert abs((losses[2] - losses[0]) / (2 * h) - line.slope) < 2e-2 * abs(line.slope), (losses, line)
        assert line.slope > 0  # the step ascends D_f's loss


def test_cached_validation_logits_give_the_same_step_with_one_validation_pass_less(trained, digits_bundle,
                                                                                     digits_params):
    from iau_core.unlearning.gradients import summed_gradient

    model, forget, retain = trained
    task = make_task(model, forget, retain, digits_bundle, digits_params, "auto", "mean")
    plain = iau(replace(task, summed_gradient=summed_gradient(model, digits_bundle.train, 97)))
    cache = summed_gradient(model, digits_bundle.train, 97, digits_bundle.val)
    cached = iau(replace(task, summed_gradient=cache))
    assert cached.choices["eta_chosen"] == plain.choices["eta_chosen"] > 0
    assert cached.choices["eta_rule.validation_passes"] == plain.choices["eta_rule.validation_passes"] - 1
    other_val = digits_bundle.val.take(torch.arange(len(digits_bundle.val) - 1))
    assert cache.val_logits_for(other_val) is None  # logits of another validation set are never used
