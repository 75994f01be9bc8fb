"""bench.json -> the printed table and docs/performance.md (generated; every missed target named with its
reason). Pure: reads the result dict only."""

from __future__ import annotations

import math

from benchmarks.figures import KEYS

FULL_HEADLINE = "headline_full"  # bench.json: the headline figures at |D| = 60,000 (--full --only headline)
HEADLINE_KEYS = ("speedup_vs_retrain", "iau_vs_limit", "eta_rule_passes")


def _num(value, places: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{places}g}" if abs(value) < 1 else f"{value:.{places}f}"
    return str(value)


def table(result: dict, keys: tuple[str, ...] = KEYS, label: str = "figure") -> str:
    """The figures against their targets, as a terminal table (`keys`: which; `label`: the first column's head)."""
    width = max(26, len(label))
    lines = [f"{label:<{width}} {'value':>12} {'target':>10}  met"]
    for key in keys:
        fig = result[key]
        met = "yes" if fig["met"] else "NO"
        lines.append(f"{key:<{width}} {_num(fig['value']):>12} {fig['target']:>10}  {met}"
                     + ("" if fig["status"] == "measured" else f"  ({fig['status']})"))
    return "\n".join(lines)


def headline_table(headline: dict) -> str:
    """The headline figures of one size, as a terminal table."""
    size = headline["speedup_vs_retrain"]["train_size"]
    return table(headline, HEADLINE_KEYS, f"figure at |D| = {size:,}")


def _figure_row(key: str, fig: dict) -> str:
    """A figure against its target, as a row of the page's tables."""
    return f"| `{key}` | {_num(fig['value'])} | {fig['target']} | {'✓' if fig['met'] else '✗'} |"


def reason(key: str, fig: dict, meta: dict) -> str:
    """Why a target is missed, from the measurement itself."""
    if fig["status"] != "measured":
        return fig["status"]
    if key == "speedup_vs_retrain":
        size = fig["train_size"]
        step, retrain = fig["iau_cached_step_seconds"]["seconds"], fig["retrain_seconds"]["seconds"]
        why = (f"retraining takes {retrain:.1f} s and the cached step {step:.3f} s at |D| = {size:,}")
        if size < 60_000:
            why += "; the target is stated at |D| = 60,000 (above: `make bench FULL=1 ONLY=headline`), where " \
                   "retraining grows with |D| and the cached step only with |D_f|"
        else:
            why += (f"; the step grows with |D_f| ({fig['forget_size']:,} records here), and most of what it "
                    "costs beyond one pass over D_f is the eta rule's reads of D_f's loss (iau_vs_limit)")
        return why
    if key == "iau_vs_limit":
        return (f"the cached step takes {fig['iau_cached_step_seconds']['seconds']:.3f} s against "
                f"{fig['limit_seconds']['seconds']:.3f} s for one pass over D_f and one over validation: the "
                f"eta rule's {fig.get('validation_passes', '?')} validation pass(es) and its "
                f"{fig.get('forget_reads', '?')} reads of D_f's loss make the difference")
    if key == "eta_rule_passes":
        return f"the eta rule tried {fig.get('candidates')} candidates; " + fig.get(
            "note", "each candidate past the cheap D_f scan costs a validation pass")
    if key == "gr_epoch_overhead":
        seconds = fig["epoch_seconds"]
        why = (f"a GR epoch (batch reading, {fig['records']:,} records) takes {seconds['gr_batch']:.2f} s against "
               f"{seconds['plain']:.2f} s plain; {fig['hvp']}")
        other = {k.removeprefix("gr_batch_"): v for k, v in seconds.items()  # params' own choice is gr_batch
                 if k.startswith("gr_batch_") and v != seconds["gr_batch"]}
        why += "".join(f"; with training.gr_hvp: {name} {v:.2f} s ({v / seconds['plain']:.2f})"
                       for name, v in other.items())
        return why + (". The finite difference makes two gradient passes a step (one optimizer step), so about 2x "
                      "a plain step is its floor, and holding the ReLU and max-pool switches adds to it. An epoch's "
                      "fixed costs (the model's set-up, the validation look), the same on both sides, pull the ratio "
                      "down most on small epochs")
    if key == "reference_models_speedup":
        return (f"{fig['models']} models one after another take {fig['sequential_seconds']:.1f} s, together "
                f"{fig['ensemble_seconds']:.1f} s: on a CPU the one-by-one loop's intra-op threads already keep "
                "every core busy, so vmapping the models adds batching work without adding parallelism; one model "
                "per process gains nothing either where a model's ops already scale over the cores (two one-thread "
                "processes side by side matched, and two Dask workers did not beat, one two-thread process on 2 "
                "cores: docs/scale-out.md). A GPU, or more cores than one model's ops can use, is where training them "
                "together can pay")
    if key == "concurrent_slowdown":
        after = fig["after"]
        return (f"two jobs together take {after['together_seconds']:.1f} s against {after['sequence_seconds']:.1f} s "
                f"in sequence on {fig['cores']} cores")
    if key == "peak_memory_ratio":
        peaks = fig["step_peak_mib"]
        return "the step's peak memory: " + ", ".join(f"{v:.1f} MiB at |D| = {int(k):,}" for k, v in peaks.items())
    if key == "orchestration_overhead":
        run = min(fig["runs"], key=lambda r: abs(r["wall_seconds"] - fig["wall_seconds"]))
        steps = run["steps"]
        return (f"of {fig['wall_seconds']:.1f} s wall the science is {fig['science_seconds']:.2f} s; the worker's "
                f"pickup and the flow process's start and imports take {run['pickup_seconds']:.1f} s and "
                f"registering the model version {steps.get('register', 0.0):.1f} s (most of it the process's "
                "first torch.export, which MLflow's safe pt2 format needs: docs/timings.md; on "
                f"{fig['dataset']}, |D| = {fig['train_size']:,}, {fig['requests']} requests): fixed costs that a "
                "batch's science does not amortize at this size")
    return "see bench.json"


def markdown(result: dict) -> str:
    meta = result["meta"]
    out = [
        "# Performance",
        "",
        "Generated by `make bench` (`python -m benchmarks`) from `reports/bench.json`; do not edit by hand. Every",
        "figure is a ratio of two times (or memories) measured in the same run on the same device, the median of",
        f"{meta['reps']} repetitions; see `benchmarks/` for how each is measured.",
        "",
        f"- run: `{meta['mode']}` on {meta['device_name']} ({meta['device']}), {meta['threads']} torch threads of "
        f"{meta['cores']} cores, torch {meta['torch']}, {meta['date']}, commit `{meta['commit']}`",
        f"- data: Fashion-MNIST, |D| = {meta['sizes']['train_size']:,} (the first records of the shuffled official "
        f"training split), validation {meta['sizes']['val_size']:,}, test {meta['sizes']['test_size']:,}, shadow "
        f"pool {meta['sizes']['shadow_size']:,} (all three from the official test split); model "
        f"{meta['model']}, recipe as params.yaml",
        f"- wall time of the whole benchmark: {meta['seconds']:.0f} s",
        "",
        "## Figures against targets",
        "",
        "| figure | value | target | met |",
        "| --- | --- | --- | --- |",
    ]
    out += [_figure_row(key, result[key]) for key in KEYS]
    speed = result["speedup_vs_retrain"]
    if speed["status"] == "measured":
        out += ["", f"Quality beside the speed-up (IAU against retraining, |D| = {speed['train_size']:,}, "
                f"|D_f| = {speed['forget_size']}): `mu_gap` {speed['mu_gap']:.2f} points, `lira_auc_gap` "
                f"{speed['lira_auc_gap']:.3f}."]
    if meta["sizes"]["train_size"] < 60_000:  # a full run's own figures are the headline at 60,000
        out += _full_headline(result.get(FULL_HEADLINE))
    missed = [k for k in KEYS if not result[k]["met"]]
    out += ["", "## Missed targets", ""]
    out += [f"- `{k}`: {reason(k, result[k], meta)}" for k in missed] or ["None."]
    full = result.get(FULL_HEADLINE)
    if full:  # where speedup_vs_retrain's target is stated
        out += [f"- `{k}` at |D| = 60,000: {reason(k, full[k], full['meta'])}" for k in HEADLINE_KEYS
                if not full[k]["met"]]
    out += ["", "## Scaling", "", "The IAU step with D's summed gradient cached (a pass over D_f) and without it (a "
            "pass over D_r too), and retraining, in seconds. " + result["scaling"].get("model", "") + ".", "",
            "| \\|D\\| | \\|D_f\\| | cache (once) | step cached | step uncached | uncached / cached | retrain | "
            "retrain / cached |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in result["scaling"]["by_train_size"]:
        out.append(f"| {row['train_size']:,} | {row['forget_size']} | {_num(row['cache_seconds'])} | "
                   f"{_num(row['step_cached_seconds'])} | {_num(row['step_uncached_seconds'])} | "
                   f"{_num(row['uncached_over_cached'])} | "
                   f"{_num(row['retrain_seconds']) if row['retrain_seconds'] else 'full run'} | "
                   f"{_num(row.get('retrain_over_cached_step'))} |")
    out += ["", "| \\|D\\| | \\|D_f\\| | step cached | step uncached | uncached / cached |",
            "| --- | --- | --- | --- | --- |"]
    for row in result["scaling"]["by_forget_size"]:
        out.append(f"| {row['train_size']:,} | {row['forget_size']} | {_num(row['step_cached_seconds'])} | "
                   f"{_num(row['step_uncached_seconds'])} | {_num(row['uncached_over_cached'])} |")
    out += _concurrency(result["concurrent_slowdown"]) + _gpu(result["gpu"]) + _make_run(result["make_run"])
    per_sample = _side(result["gr_epoch_overhead"], "per_sample_overhead")
    out += ["", "## Side figures", "", f"- GR epoch, per-sample reading: {per_sample}x a plain epoch",
            f"- orchestration, cold CLI (`iau nightly` as a fresh process): "
            f"{result['orchestration_overhead'].get('cold_cli', 'n/a')}",
            f"- peak memory of the whole process (D's tensors included), large / small |D|: "
            f"{_side(result['peak_memory_ratio'], 'process_peak_ratio')}", ""]
    return "\n".join(out)


def _full_headline(headline: dict | None) -> list[str]:
    """The headline figures at |D| = 60,000, where speedup_vs_retrain's target is stated, from their own run."""
    rows = ["", "## The headline at |D| = 60,000", ""]
    if headline is None:
        return rows + ["not measured yet: `make bench FULL=1 ONLY=headline` (about half an hour on 2 cores) adds it"]
    meta, speed = headline["meta"], headline["speedup_vs_retrain"]
    rows += [f"`python -m benchmarks --full --only headline` on {meta['device_name']} ({meta['device']}), "
             f"{meta['threads']} torch threads, {meta['date']}, commit `{meta['commit']}`, "
             f"{meta['seconds'] / 60:.0f} min; |D| = {speed['train_size']:,}, |D_f| = {speed['forget_size']}.", "",
             "| figure | value | target | met |", "| --- | --- | --- | --- |"]
    rows += [_figure_row(key, headline[key]) for key in HEADLINE_KEYS]
    if speed["status"] == "measured":
        rows += ["", f"Retraining ({speed['retrain_epochs']} epochs) takes {speed['retrain_seconds']['seconds']:.1f} s "
                 f"and the cached IAU step {speed['iau_cached_step_seconds']['seconds']:.3f} s (medians of "
                 f"{len(speed['retrain_seconds']['runs'])}). Quality beside it: `mu_gap` {speed['mu_gap']:.2f} "
                 f"points, `lira_auc_gap` {speed['lira_auc_gap']:.3f} (test accuracy IAU "
                 f"{speed['test_acc']['iau']:.2f}%, retrained {speed['test_acc']['retrain']:.2f}%)."]
    return rows


def _side(fig: dict, key: str) -> str:
    return _num(fig.get(key)) if fig["status"] == "measured" else fig["status"]


def _concurrency(fig: dict) -> list[str]:
    if fig["status"] != "measured":
        return []
    rows = ["", "## Two jobs at once", "", f"{fig['job']}; {fig['cores']} cores.", "",
            "| threads | two in sequence (s) | two together (s) | together / sequence |", "| --- | --- | --- | --- |"]
    for case in ("before", "after"):
        r = fig[case]
        label = "before: every core per process" if case == "before" else "after: auto (each its share)"
        rows.append(f"| {label} | "
                    f"{r['sequence_seconds']:.1f} | {r['together_seconds']:.1f} | {r['slowdown']:.2f} |")
    return rows


def _gpu(gpu: dict) -> list[str]:
    rows = ["", "## GPU (CIFAR-shaped: ResNet18, 3x32x32, 10 classes, synthetic learnable data)", ""]
    if gpu["status"] != "measured":
        return rows + [gpu["status"]]
    case = gpu["case"]
    rows += [f"{gpu['device_name']}; |D| = {case['train_size']:,}, |D_f| = {case['forget_size']}, batch "
             f"{case['batch_size']}, retraining {case['retrain_epochs']} epochs.", "",
             "| variant | epoch (s) | epoch speed-up vs fp32 | step cached (s) | step uncached (s) | retrain (s) | "
             "retrain / cached step |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in gpu["rows"].items():
        rows.append(f"| {name} | {_num(r['epoch_seconds'])} | {_num(r['epoch_speedup_vs_fp32'])} | "
                    f"{_num(r['step_cached_seconds'])} | {_num(r['step_uncached_seconds'])} | "
                    f"{_num(r['retrain_seconds'])} | {_num(r['speedup_vs_retrain'])} |")
    return rows


def _make_run(walls: dict) -> list[str]:
    rows = ["", "## `make run SEEDS=\"0 1\"`: execution local against dask", ""]
    if walls["status"] != "measured":
        return rows + [walls["status"]]
    meta = walls.get("meta")
    measured = (f" (`python -m benchmarks --only make-run`, {meta['date']}, commit `{meta['commit']}`, "
                f"{meta['cores']} cores; `threads: auto`: the local flow takes every core, each Dask worker one)"
                if meta else "")
    return rows + [f"Each a first run, on an empty MLflow store of its own{measured}: local "
                   f"{walls['local']['seconds']:.0f} s, dask {walls['dask']['seconds']:.0f} s "
                   f"(dask / local {walls['dask_over_local']:.2f})."]
