"""bench.json -> the printed table and docs/performance.md (generated; every missed target named with its
reason). Pure: reads the result dict only."""

from __future__ import annotations

import math

from benchmarks.figures import KEYS, MISSED, NOISY, REPORTED
from benchmarks.timing import SPREAD_BOUND

FULL_HEADLINE = "headline_full"  # bench.json: the headline figures at |D| = 60,000 (--full --only headline)
HEADLINE_KEYS = ("batch_cost_vs_retrain", "speedup_vs_retrain", "iau_vs_limit", "eta_rule_passes")


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


def verdict_of(fig: dict) -> str:
    """The figure's verdict (a bench.json written before verdicts existed has `met` only)."""
    return fig.get("verdict") or ("met" if fig["met"] else "missed")


def max_spread(fig: dict) -> float | None:
    spread = fig.get("spread") or {}
    return max(spread.values()) if spread else None


def table(result: dict, keys: tuple[str, ...] = KEYS, label: str = "figure") -> str:
    """The figures against their targets, as a terminal table (`keys`: which; `label`: the first column's head):
    value (a ratio of the sides' minimums), target, verdict, and the widest spread of a side's repetitions."""
    width = max(26, len(label))
    lines = [f"{label:<{width}} {'value':>12} {'target':>10}  {'verdict':<13} spread"]
    for key in keys:
        fig = result[key]
        spread = max_spread(fig)
        lines.append(f"{key:<{width}} {_num(fig['value']):>12} {fig['target'] or '-':>10}  {verdict_of(fig):<13} "
                     f"{'-' if spread is None else f'{spread:.0%}'}"
                     + ("" if fig["status"] == "measured" else f"  ({fig['status']})"))
    return "\n".join(lines)


def headline_table(headline: dict) -> str:
    """The headline figures of one size, as a terminal table."""
    size = headline["speedup_vs_retrain"]["train_size"]
    return table(headline, HEADLINE_KEYS, f"figure at |D| = {size:,}")


def _figure_row(key: str, fig: dict) -> str:
    """A figure against its target, as a row of the page's tables."""
    spread = max_spread(fig)
    return (f"| `{key}` | {_num(fig['value'])} | {fig['target'] or '-'} | {verdict_of(fig)} | "
            f"{'-' if spread is None else f'{spread:.0%}'} |")


FIGURE_HEAD = ["| figure | value | target | verdict | spread |", "| --- | --- | --- | --- | --- |"]


def reason(key: str, fig: dict, meta: dict) -> str:
    """Why a target is missed (or what a reported figure is made of), from the measurement itself."""
    if fig["status"] != "measured":
        return fig["status"]
    if key == "batch_cost_vs_retrain":
        row = next(r for r in fig["by_deletions"] if r["deletions"] == fig["deletions"])
        parts = ", ".join(f"{name} {v['seconds']:.2f} s" for name, v in row["parts"].items())
        return (f"at {fig['deletions']:,} deletions (|D| = {fig['train_size']:,}) an IAU batch costs "
                f"{row['iau_batch']['seconds']:.2f} s ({parts}) against {row['retrain_batch']['seconds']:.1f} s for "
                f"a retraining batch (retraining {fig['retrain_seconds']['seconds']:.1f} s plus the same gate, "
                "registration and forgetting); the step alone is "
                f"{row['speedup_vs_retrain']:,.0f}x cheaper than retraining: the parts every batch pays, and the "
                "refresh's pass over D_r, set the ratio (table: Nightly batch)")
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
        return ("its target is stated for a GPU (`make bench` on a CUDA device judges it); here "
                f"{fig['models']} models one after another take {fig['sequential_seconds']:.1f} s, together "
                f"{fig['ensemble_seconds']:.1f} s: on a CPU the one-by-one loop's intra-op threads already keep "
                "every core busy, so vmapping the models adds batching work without adding parallelism; one model "
                "per process gains nothing either where a model's ops already scale over the cores (two one-thread "
                "processes side by side matched, and two Dask workers did not beat, one two-thread process on 2 "
                "cores: docs/scale-out.md). A GPU, or more cores than one model's ops can use, is where training them "
                "together can pay")
    if key == "concurrent_slowdown":
        after = fig["after"]
        cost = fig.get("wait_cost_alone")  # absent from a bench.json written before the fixed thread count
        return (f"two jobs together take {after['together_seconds']:.1f} s against {after['sequence_seconds']:.1f} s "
                f"in sequence on {fig['cores']} cores; each keeps every core and a thread count fixed at start, "
                "and OpenMP's waiting threads sleep (OMP_WAIT_POLICY=PASSIVE) so a neighbour cannot make them "
                "collapse" + (f". Alone, a job trained in {cost:.2f}x the time with sleeping threads as with spinning "
                              "ones (least of each side; every repetition in bench.json)" if cost else ""))
    if key == "peak_memory_ratio":
        peaks = fig["step_peak_mib"]
        return "the step's peak memory: " + ", ".join(f"{v:.1f} MiB at |D| = {int(k):,}" for k, v in peaks.items())
    if key == "orchestration_overhead":
        run = min(fig["runs"], key=lambda r: abs(r["wall_seconds"] - fig["wall_seconds"]))
        parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in run["steps"].items())
        return (f"(wall - science) / wall of `iau nightly` through a deployment, reported with its parts: of "
                f"{fig['wall_seconds']:.1f} s wall the science is {fig['science_seconds']:.2f} s; the worker's "
                f"pickup and the flow process's start and imports take {run['pickup_seconds']:.1f} s; the batch's "
                f"steps (the ledger's step table): {parts} (on {fig['dataset']}, |D| = {fig['train_size']:,}, "
                f"{fig['requests']} requests): fixed costs that a batch's science does not amortize at this size")
    return "see bench.json"


MODE_FLAGS = {"quick": "", "full": " --full", "tiny": " --tiny"}  # benchmarks/__main__.py's size options


def command_of(meta: dict) -> str:
    """The command line of the run `meta` describes, as recorded; else rebuilt from its mode, saying that a --set
    would not show (a run that did not record its command line kept only its mode)."""
    if "command" in meta:
        return f"`{meta['command']}`"
    mode, _, only = meta["mode"].partition(" (")
    rebuilt = "python -m benchmarks" + MODE_FLAGS.get(mode, "") + (f" --only {only.rstrip(')')}" if only else "")
    return f"`{rebuilt}` (rebuilt from the mode: this run did not record its command line, so a --set would not show)"


def markdown(result: dict) -> str:
    meta = result["meta"]
    out = [
        "# Performance",
        "",
        "Generated by `make bench` (`python -m benchmarks`) from `reports/bench.json`; do not edit by hand. Every",
        "figure is a ratio of two times (or memories) measured in the same run on the same device, the sides'",
        f"repetitions ({meta['reps']} each) interleaved; see `benchmarks/` for how each is measured.",
        "",
        f"- command: {command_of(meta)}",
        f"- run: `{meta['mode']}` on {meta['device_name']} ({meta['device']}), {meta['threads']} torch threads of "
        f"{meta['cores']} cores{_threads_reason(meta)}, torch {meta['torch']}, {meta['date']}, commit "
        f"`{meta['commit']}`",
        f"- data: Fashion-MNIST, |D| = {meta['sizes']['train_size']:,} (the first records of the shuffled official "
        f"training split), validation {meta['sizes']['val_size']:,}, test {meta['sizes']['test_size']:,}, shadow "
        f"pool {meta['sizes']['shadow_size']:,} (all three from the official test split); model "
        f"{meta['model']}, recipe as params.yaml",
        f"- wall time of the whole benchmark: {meta['seconds']:.0f} s",
        "",
        "## Figures against targets",
        "",
        "value: the ratio of the compared sides' fastest repetitions; spread: the widest (max - min) / min of a "
        f"side's repetitions. A spread over {SPREAD_BOUND:.0%}, or a value below what the work allows (a GR epoch "
        f"cheaper than a plain one), reads `{NOISY}`: the machine was busy, rerun on an idle one.",
        "",
        *FIGURE_HEAD,
    ]
    out += [_figure_row(key, result[key]) for key in KEYS]
    speed = result["speedup_vs_retrain"]
    if speed["status"] == "measured":
        out += ["", f"Quality beside the speed-up (IAU against retraining, |D| = {speed['train_size']:,}, "
                f"|D_f| = {speed['forget_size']}): `mu_gap` {speed['mu_gap']:.2f} points, `lira_auc_gap` "
                f"{speed['lira_auc_gap']:.3f}."]
    if meta["sizes"]["train_size"] < 60_000:  # a full run's own figures are the headline at 60,000
        out += _full_headline(result.get(FULL_HEADLINE))
        if FULL_HEADLINE in result:
            out += agreement(result[FULL_HEADLINE], result.get(FULL_HEADLINE + "_before"))
    full = result.get(FULL_HEADLINE) or {}
    at_60k = [(f"`{k}` at |D| = 60,000", full[k], full["meta"], k) for k in HEADLINE_KEYS if k in full]
    judged = [(f"`{k}`", result[k], meta, k) for k in KEYS] + at_60k  # at 60,000: where the speed targets are stated
    for title, verdict in (("Missed targets", MISSED), ("Noisy: rerun", NOISY), ("Reported figures", REPORTED)):
        out += ["", f"## {title}", ""]
        out += [f"- {name}: {fig['noise'] if verdict == NOISY else reason(key, fig, at)}"
                for name, fig, at, key in judged if verdict_of(fig) == verdict] or ["None."]
    out += _batches(result.get("batch_cost_vs_retrain")) + _refresh()
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


def _refresh() -> list[str]:
    """The refresh's error table (its own study, reports/refresh.json), one level down: the default the batch uses
    is the one this table supports."""
    import json

    from benchmarks import PROJECT_ROOT
    from studies.refresh_report import markdown as refresh_markdown

    raw = PROJECT_ROOT / "reports" / "refresh.json"
    if not raw.exists():
        return ["", "## The cached gradient's refresh", "", "not measured: run `python -m studies.refresh`."]
    data = json.loads(raw.read_text())
    lines = refresh_markdown(data["meta"], data["results"]).splitlines()
    return ["", *("#" + line if line.startswith("#") else line for line in lines)]


def _full_headline(headline: dict | None) -> list[str]:
    """The headline figures at |D| = 60,000, where the speed targets are stated, from their own run."""
    rows = ["", "## The headline at |D| = 60,000", ""]
    if headline is None:
        return rows + ["not measured yet: `make bench FULL=1 ONLY=headline` (about half an hour on 2 cores) adds it"]
    meta, speed = headline["meta"], headline["speedup_vs_retrain"]
    rows += [f"`python -m benchmarks --full --only headline` on {meta['device_name']} ({meta['device']}), "
             f"{meta['threads']} torch threads{_threads_reason(meta)}, {meta['date']}, commit `{meta['commit']}`, "
             f"{meta['seconds'] / 60:.0f} min; |D| = {speed['train_size']:,}, |D_f| = {speed['forget_size']}.", "",
             *FIGURE_HEAD]
    rows += [_figure_row(key, headline[key]) if key in headline else f"| `{key}` | not measured in that run | | | |"
             for key in HEADLINE_KEYS]
    if speed["status"] == "measured":
        rows += ["", f"Retraining ({speed['retrain_epochs']} epochs) takes {speed['retrain_seconds']['seconds']:.1f} s "
                 f"and the cached IAU step {speed['iau_cached_step_seconds']['seconds']:.3f} s ("
                 + ("fastest" if "spread" in speed["retrain_seconds"] else "medians")  # bench.json before spreads
                 + f" of {len(speed['retrain_seconds']['runs'])}: {_runs(speed['retrain_seconds'])} and "
                 f"{_runs(speed['iau_cached_step_seconds'])}). Quality beside it: `mu_gap` {speed['mu_gap']:.2f} "
                 f"points, `lira_auc_gap` {speed['lira_auc_gap']:.3f} (test accuracy IAU "
                 f"{speed['test_acc']['iau']:.2f}%, retrained {speed['test_acc']['retrain']:.2f}%)."]
    return rows + _batches(headline.get("batch_cost_vs_retrain"), " at |D| = 60,000")


AGREEMENT = 0.30  # two full headline runs agree when the larger value is at most 30% above the smaller


def agreement(now: dict, before: dict | None) -> list[str]:
    """The last two `--full --only headline` runs side by side: a figure that swings more than AGREEMENT between
    them is not a figure yet, whatever its verdict."""
    rows = ["", "### Two runs", ""]
    if before is None:
        return rows + ["one run so far: a second `make bench FULL=1 ONLY=headline` adds the comparison"]
    rows += [f"Run 1: {before['meta']['date']}, commit `{before['meta']['commit']}`; run 2: {now['meta']['date']}, "
             f"commit `{now['meta']['commit']}`. Agree: the larger value at most {AGREEMENT:.0%} above the smaller.",
             "", "| figure | run 1 | run 2 | larger / smaller | agree |", "| --- | ---: | ---: | ---: | --- |"]
    for key in HEADLINE_KEYS:
        a, b = before.get(key, {}).get("value"), now.get(key, {}).get("value")
        if a is None or b is None:
            rows.append(f"| `{key}` | {_num(a)} | {_num(b)} | n/a | n/a |")
            continue
        ratio = max(a, b) / min(a, b) if min(a, b) > 0 else float("inf")
        if key == "batch_cost_vs_retrain" and ("chain" in before[key]) != ("chain" in now[key]):
            # before bf8fc66 each batch started from the same exact cache: its refresh never fell back
            rows.append(f"| `{key}` | {_num(a)} | {_num(b)} | {ratio:.2f} | not comparable: run 1 timed repeated "
                        "single batches, run 2 a chain of consecutive ones |")
            continue
        rows.append(f"| `{key}` | {_num(a)} | {_num(b)} | {ratio:.2f} | {'yes' if ratio <= 1 + AGREEMENT else 'NO'} |")
    return rows


BATCH_PARTS = ("step", "gate", "registration", "forgetting", "refresh", "export")


def _batches(fig: dict | None, where: str = "") -> list[str]:
    """batch_cost_vs_retrain's rows: each part of a nightly batch, both batches' costs, both ratios."""
    rows = ["", f"## Nightly batch, end to end{where}", ""]
    if fig is None or fig["status"] != "measured":
        return rows + [fig["status"] if fig else "not measured in that run"]
    rows += [f"|D| = {fig['train_size']:,}; {fig.get('chain', 'repetitions of one batch')}. Seconds: each part's "
             "fastest over the chain (its spread in bench.json); the refresh amortized over the chain, each kind of "
             "refresh it ran at that kind's fastest, weighted by how often it ran. A retraining batch pays retraining "
             f"({fig['retrain_seconds']['seconds']:.1f} s; {fig['retraining']}) and the same gate, registration, "
             f"forgetting and export (the servable pt2 copy, after the requests); no refresh (refresh: as params.yaml "
             f"configures it). Gate: attack `{fig['attack']}`. Refresh: {fig['refresh']}. Forgetting: "
             f"{fig['forgetting']}.", "",
             "| deletions | " + " | ".join(BATCH_PARTS) + " | refresh (exact pass) | IAU batch | "
             "retraining batch | batch_cost_vs_retrain | with the exact refresh | step only (speedup_vs_retrain) | "
             "gate accepted | with the gate's acceptance |",
             "| --- " * (len(BATCH_PARTS) + 9) + "|"]
    for row in fig["by_deletions"]:
        rows.append(f"| {row['deletions']:,} | " + " | ".join(_num(row["parts"].get(p, {}).get("seconds"))
                                                  for p in BATCH_PARTS)
                    + f" | {_num(row['refresh_exact']['seconds'])} | {_num(row['iau_batch']['seconds'])} | "
                    f"{_num(row['retrain_batch']['seconds'])} | {_num(row['batch_cost_vs_retrain'])} | "
                    f"{_num(row['batch_cost_vs_retrain_exact_refresh'])} | {_num(row['speedup_vs_retrain'])} | "
                    + _gate_columns(row))
    last, cold = fig["by_deletions"][-1], fig["first_registration"]
    modes = "; ".join(f"{r['deletions']:,} deletions: " + ", ".join(
        f"{kind} {v['batches']}x ({v['seconds']:.2f} s)" for kind, v in r["parts"]["refresh"].get("kinds", {}).items())
        for r in fig["by_deletions"])
    rows += ["", f"What the configured refresh did over each chain (kind, batches, fastest): {modes}. With the gate's "
             "acceptance: a batch the gate rejects escalates and pays the retraining batch as well, so the IAU way "
             "costs the IAU batch plus the rejected share of a retraining batch.", "",
             f"Registration's parts at {last['deletions']:,} deletions: " + ", ".join(
        f"{name} {v['seconds']:.2f} s" for name, v in last["registration_parts"].items())
        + " (inner.*: the functions those call, counted in them or in the export). The process's first "
        f"registration and export took {cold['seconds']:.1f} s (torch.export's one-off set-up; a warm worker has "
        "paid it)."]
    return rows


def _gate_columns(row: dict) -> str:
    if "gate_accepted" not in row:  # bench.json written before the chains
        return "n/a | n/a |"
    passed = row["gate"]["passed"]
    return f"{sum(passed)} of {len(passed)} | {_num(row['batch_cost_vs_retrain_with_gate'])} |"


def _runs(timed: dict) -> str:
    return " / ".join(_num(r) for r in timed["runs"]) + " s"


def _side(fig: dict, key: str) -> str:
    return _num(fig.get(key)) if fig["status"] == "measured" else fig["status"]


def _concurrency(fig: dict) -> list[str]:
    if fig["status"] != "measured":
        return []
    rows = ["", "## Two jobs at once", "", f"{fig['job']}; {fig['cores']} cores.", "",
            "| threads | two in sequence (s) | two together (s) | together / sequence |", "| --- | --- | --- | --- |"]
    for case in ("before", "after"):
        r = fig[case]
        label = ("before: every core, waiting threads spin (OpenMP's default)" if case == "before" else
                 "after: every core, waiting threads sleep (PASSIVE)")
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


def _threads_reason(meta: dict) -> str:
    """Why the run timed on that many threads (benchmarks/cores.py); runs before 2026-12-08 did not say."""
    return f" ({meta['threads_reason']})" if meta.get("threads_reason") else ""
