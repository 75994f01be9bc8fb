"""docs/reproduction.md from the raw numbers of studies.reproduce: the tables, the claims with their verdicts, the
figures. Reading and rendering only; measuring is studies/reproduce.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from iau_core.config import METHOD_NAMES, REFERENCE_METHODS
from iau_core.intervals import t_interval
from iau_core.metrics import (
    AVG_RANK,
    FORGET_ACC,
    MU_GAP,
    TEST_ACC,
    UE_GAP,
    UNLEARN_SECONDS,
    avg_rank,
    gap_key,
    noise_floors,
    summarize,
)
from iau_core.verdicts import assess
from reporting import plots
from studies.provenance import generated_by

SELECTIONS = ("random", "outliers")  # Table II's random 5% and Table V's isolation-forest outliers
PER_SAMPLE_MAX_EPOCHS = 8  # GR's per-sample reading costs ~6x a batch-reading epoch: capped to fit 2 cores
PAPER_SET = ("bad_teacher", "amnesiac", "fisher", "iau")  # the paper's baselines we have (USGD is missing)
ABLATION = ("ia", "ia_gc", "iau")
# The paper's numbers (CIFAR-10 / SVHN, LeNet5, GPU): MU, seconds, UE, avg rank.
PAPER_TABLE_II = {
    "usgd": ((0.80, 33, 2.27, 1.7), (5.16, 20, 6.17, 3.3)),
    "bad_teacher": ((1.38, 23, 6.11, 2.7), (3.10, 14, 2.17, 1.3)),
    "amnesiac": ((0.51, 33, 3.21, 1.0), (0.04, 26, 1.67, 1.0)),
    "fisher": ((0.61, 1294, 8.08, 3.0), (4.53, 1926, 4.75, 3.3)),
    "iau": ((1.31, 13, 5.21, 1.7), (0.09, 10, 2.46, 1.0)),
    "retrain": ((0, 414, 0, None), (0, 822, 0, None)),
}
PAPER_TABLE_V = {"usgd": (1.20, 31, 7.33, 1.7), "bad_teacher": (1.65, 17, 3.71, 1.7),
                 "amnesiac": (1.75, 31, 0.24, 2.0), "iau": (1.41, 16, 0.58, 0.7), "retrain": (0, 538, 0, None)}
PAPER_TABLE_VI = {"CIFAR-10": (13, 12), "SVHN": (20, 18)}  # LeNet5: (original loss, GR loss) epochs

# --- reading the numbers -------------------------------------------------------------------------------------

def tables_of(raw: dict, selection: str) -> list[pd.DataFrame]:
    return [pd.DataFrame(rows).set_index("method") for rows in raw["tables"][selection]]


def kept_of(raw: dict, selection: str) -> dict[str, list[bool]]:
    """method -> per seed, whether it returned the deployed model (recorded from its choices; none in old data)."""
    per_seed = raw.get("kept", {}).get(selection, [])
    return {m: [m in seed for seed in per_seed] for m in {m for seed in per_seed for m in seed}}


def paper_set_rank(tables: list[pd.DataFrame]) -> pd.Series:
    """avg_rank among only the paper's methods we have, so it reads on the paper's scale (0 to 3)."""
    ranks = [avg_rank(t.loc[[m for m in t.index if m in PAPER_SET or m in REFERENCE_METHODS]])
             for t in tables]
    return pd.concat(ranks, axis=1).mean(axis=1)


def paired(tables: list[pd.DataFrame], metric: str, a: str, b: str) -> np.ndarray:
    """Per seed, metric(a) - metric(b): what a claim 'a beats b' is judged on."""
    return np.array([t.loc[a, metric] - t.loc[b, metric] for t in tables], dtype=float)


def fraction_closed(tables: list[pd.DataFrame], metric: str, method: str) -> np.ndarray:
    """Per seed, (metric(original) - metric(method)) / (metric(original) - metric(retrain)): 1 is where retraining
    moved, 0 is doing nothing (studies/frontier.py reads the same quantity over each method's knob)."""
    return paired(tables, metric, "original", method) / paired(tables, metric, "original", "retrain")


def verdict(diffs: np.ndarray, expected_sign: int) -> tuple[str, str]:
    """The rule every verdict uses: the 95% t-interval of the per-seed paired difference (iau_core.verdicts).
    'agrees' when it excludes 0 on the claimed side, 'disagrees' on the other, 'cannot tell within noise' when it
    contains 0; with one seed there is no interval and no verdict. `expected_sign` 0 claims 'no difference':
    'agrees' then needs an interval containing 0 (read as 'no difference detected', not as equality)."""
    ci = t_interval(diffs)
    why = f"paired difference {ci.text(3)} (mean [95% CI] over {ci.n} seeds)"
    if not ci.known:
        return "cannot tell (one seed)", why
    if not ci.excludes_zero():
        return "cannot tell within noise", why
    return ("agrees" if np.sign(ci.mean) == expected_sign else "disagrees"), why


def fmt(mean: float, std: float, places: int = 2) -> str:
    if mean is None or not math.isfinite(mean):
        return "–"
    return f"{mean:.{places}f}" + (f" ± {std:.{places}f}" if std is not None and math.isfinite(std) else "")


def headline_of(raw: dict) -> str:
    """The metric the verdicts are read on: the headline attack's AUC on D_f (attacks.headline of the run)."""
    return f"{raw['params'].get('attacks', {}).get('headline', 'lira')}_auc"


def comparison_table(tables: list[pd.DataFrame], paper: dict | None, paper_label: str,
                     kept: dict[str, list[bool]] | None = None, headline: str = "lira_auc") -> str:
    """The paper's table shape, led by each method's verdict on the headline attack's AUC with its paired 95% CI
    against original (iau_core.verdicts); a method that kept the deployed model is 'no change', never marked ✓."""
    summary = summarize(tables)
    floors = noise_floors(summary)
    paper_rank = paper_set_rank(tables)
    found = assess(tables, summary, floors, kept, headline=headline)
    attack = found.headline.removesuffix("_auc").upper().replace("LIRA", "LiRA")
    headline_gap = gap_key(found.headline.removesuffix("_auc"))  # the column says which attack's gap it holds
    head = (f"| method | verdict | {attack} AUC − original [95% CI] | share of retraining's movement closed [95% CI] "
            f"| MU gap (pts) | seconds | UE gap (pts) "
            f"| avg rank (all) | avg rank (paper's set) | {attack} AUC gap | forget acc | test acc "
            f"| paper {paper_label}: MU / s / UE / rank |")
    lines = [head, "| --- | --- |" + " ---: |" * 11]
    for method in summary.index:
        row = summary.loc[method]
        unchanged = found.verdicts.get(method) == "no change"
        marked = {m: method != "retrain" and row[f"{m}_mean"] <= floors[m] + 1e-12 for m in floors}

        def cell(metric: str, places: int = 2, floor: bool = False, row=row, marked=marked,
                 unchanged=unchanged) -> str:
            text = fmt(row[f"{metric}_mean"], row[f"{metric}_std"], places)
            if floor and text != "–" and row.name not in ("retrain", "original"):
                text += " (no change)" if unchanged else " ✓" if marked[metric] else " ✗"
            return text

        rows = found.table[(found.table.method == method) & (found.table.metric == found.headline)]
        ci = "–" if rows.empty else t_interval(paired(tables, found.headline, method, "original")).text(3)
        closed = "–" if method in ("original", "retrain") else t_interval(
            fraction_closed(tables, found.headline, method)).text(2)
        judged = {"original": "(doing nothing)", "retrain": "(gold model)"}.get(method, found.verdicts.get(method, "–"))
        rank = paper_rank.get(method, float("nan"))

        ours = paper.get(method) if paper else None
        theirs = " / ".join("–" if v is None else f"{v:g}" for v in ours) if ours else "–"
        lines.append(f"| {method} | **{judged}** | {ci} | {closed} | {cell(MU_GAP, floor=True)} | "
                     f"{cell(UNLEARN_SECONDS, 3)} | "
                     f"{cell(UE_GAP, floor=True)} | {cell(AVG_RANK)} | {fmt(rank, None)} | "
                     f"{cell(headline_gap, 3, floor=True)} | {cell(FORGET_ACC)} | {cell(TEST_ACC)} | {theirs} |")
    lines.append(f"\n✓/✗: the mean gap is within/above the noise floor (retrain_alt's gap to retrain: MU "
                 f"{floors[MU_GAP]:.2f}, UE {floors[UE_GAP]:.2f}, {attack} {floors[headline_gap]:.3f}). Verdict on "
                 f"{attack}'s AUC on D_f from the per-seed paired differences: **forgets** = moved from original "
                 "toward retrain (95% CI excludes 0), **overshoots** = past retrain (CI against retrain excludes 0), "
                 "**no detectable change** = CI against original contains 0, **no change** = returned the deployed "
                 "model.")
    lines += [f"\n> **Read with care:** {w}." for w in found.warnings]
    return "\n".join(lines)


def claims(raw: dict) -> list[tuple[str, str, str, str]]:
    """(claim, paper's evidence, verdict, why) for each claim the doc checks."""
    rnd, out = tables_of(raw, "random"), tables_of(raw, "outliers")
    found = []

    def best_other(tables: list[pd.DataFrame], metric: str, among: tuple[str, ...]) -> str:
        means = summarize(tables).loc[list(among), f"{metric}_mean"]
        return str(means.drop("iau").idxmin())

    rival = best_other(rnd, AVG_RANK, tuple(m for m in rnd[0].index if m not in REFERENCE_METHODS))
    found.append(("IAU has the best avg rank among the compared methods (random 5%)",
                  "Table II: best or second best in all four settings",
                  *verdict(paired(rnd, AVG_RANK, rival, "iau"), +1),
                  ))
    found[-1] = (*found[-1][:3], f"against the best other method ({rival}): {found[-1][3]}")
    fastest = best_other(rnd, UNLEARN_SECONDS, tuple(m for m in rnd[0].index if m not in REFERENCE_METHODS))
    v, why = verdict(paired(rnd, UNLEARN_SECONDS, fastest, "iau"), +1)
    found.append(("IAU is the fastest unlearning method", "Table II: fastest in every setting, 28.6-43.5% ahead "
                  "of the second on LeNet5", v, f"against the fastest other method ({fastest}): {why}"))
    mu = t_interval([t.loc["iau", MU_GAP] for t in rnd])
    v = "cannot tell (one seed)" if not mu.known else (
        "agrees" if mu.hi <= 2 else "disagrees" if mu.lo > 2 else "cannot tell within noise")
    found.append(("IAU's test accuracy is within 2 points of retraining's (MU <= 2)", "Table II: MU 0.09-1.31",
                  v, f"MU gap {mu.mean:.2f} [{mu.lo:.2f}, {mu.hi:.2f}] (mean [95% CI])"))
    v, why = verdict(paired(rnd, UE_GAP, "iau", "fisher"), 0)
    fisher_x = np.mean([t.loc["fisher", UNLEARN_SECONDS] / t.loc["iau", UNLEARN_SECONDS] for t in rnd])
    comparable = "agrees" if v == "cannot tell within noise" else "disagrees"
    found.append(("IAU's UE is comparable to Fisher's at orders of magnitude less time",
                  "Table II: Fisher 1294-4503 s against IAU 10-19 s, UE of the same order",
                  comparable if fisher_x >= 100 else ("disagrees" if fisher_x < 10 else comparable + " in part"),
                  f"UE(iau) - UE(fisher): {why}; Fisher takes {fisher_x:.0f}x IAU's time"))
    share = {}
    for name, tables in (("random", rnd), ("outliers", out)):
        share[name] = np.array([1 - t.loc["iau", UE_GAP] / t.loc["original", UE_GAP]
                                if t.loc["original", UE_GAP] > 0 else np.nan for t in tables])
    v, why = verdict(share["outliers"] - share["random"], +1)
    found.append(("IAU's improvement is larger on outliers than on random deletions",
                  "Table V against Table II (SVHN): UE 0.58 on outliers against 2.46 random", v,
                  f"share of doing nothing's UE gap that IAU removes, outliers minus random: {why}"))
    for tables, label in ((rnd, "random"), (out, "outliers")):
        for claim, metric, a, b, sign in (
                ("IA alone has a worse MU than IA+GC", MU_GAP, "ia", "ia_gc", +1),
                ("IA alone has a better UE than IA+GC", UE_GAP, "ia", "ia_gc", -1),
                ("adding GR (IA+GC+GR) improves UE over IA+GC", UE_GAP, "iau", "ia_gc", -1)):
            v, why = verdict(paired(tables, metric, a, b), sign)
            found.append((f"Fig. 2 ({label}): {claim}", "Fig. 2 (CIFAR-10/SVHN, no numbers in the text)", v,
                           f"{metric}({a}) - {metric}({b}): {why}"))
    norms = pd.DataFrame(raw["norms"])
    for reading in ("GR (batch)", "GR (per_sample)"):
        for stat in ("mean", "p99"):
            diffs = (norms[norms.recipe == reading].set_index("seed")[stat]
                     - norms[norms.recipe == "no GR (alpha = 0)"].set_index("seed")[stat]).to_numpy()
            v, why = verdict(diffs, -1)
            found.append((f"GR lowers the per-sample gradient norms ({reading}, {stat})",
                          "Fig. 3 (ResNet18): GR's norms lie below the original loss's", v, why))
    training = pd.DataFrame(raw["training"])
    for reading in ("GR (batch)",):  # the per-sample reading is capped at PER_SAMPLE_MAX_EPOCHS: not comparable
        diffs = (training[training.recipe == reading].set_index("seed")["epochs_run"]
                 - training[training.recipe == "no GR (alpha = 0)"].set_index("seed")["epochs_run"]).to_numpy()
        v, why = verdict(diffs, -1)
        found.append((f"GR needs fewer epochs to early stopping ({reading})",
                      "Table VI: 1 to 3 fewer epochs in every setting", v, f"epochs with GR - without: {why}"))
    return found


# --- figures and the doc ---------------------------------------------------------------------------------------

def ablation_plot(raw: dict) -> Figure:
    """Fig. 2's shape: MU and UE gaps of IA, IA+GC, IA+GC+GR side by side, for both selections."""
    fig = Figure(figsize=(9, 4), layout="constrained")
    for i, metric in enumerate((MU_GAP, UE_GAP)):
        ax = fig.add_subplot(1, 2, i + 1)
        for j, selection in enumerate(SELECTIONS):
            s = summarize(tables_of(raw, selection))
            x = np.arange(len(ABLATION)) + (j - 0.5) * 0.35
            ax.bar(x, s.loc[list(ABLATION), f"{metric}_mean"], 0.35, yerr=s.loc[list(ABLATION), f"{metric}_std"],
                   capsize=3, label=selection)
        ax.set_xticks(np.arange(len(ABLATION)), ["IA", "IA+GC", "IA+GC+GR"])
        ax.set_ylabel(f"{metric.split('_')[0].upper()} gap to retrain (points, lower is better)")
        ax.legend()
    fig.suptitle(f"Ablation (paper Fig. 2), mean ± std over {len(raw['seeds'])} seeds")
    return fig


def verdicts_of(raw: dict, selection: str) -> pd.Series:
    tables = tables_of(raw, selection)
    summary = summarize(tables)
    return assess(tables, summary, noise_floors(summary), kept_of(raw, selection), headline=headline_of(raw)).verdicts


def figures(raw: dict) -> dict[str, Figure]:
    first = [n for n in raw["norms"] if "values" in n]
    return {
        "reproduction_table2_mu_ue.png": plots.mu_ue_plot(summarize(tables_of(raw, "random")), len(raw["seeds"]),
                                                          verdicts_of(raw, "random")),
        "reproduction_table5_mu_ue.png": plots.mu_ue_plot(summarize(tables_of(raw, "outliers")), len(raw["seeds"]),
                                                          verdicts_of(raw, "outliers")),
        "reproduction_fig2_ablation.png": ablation_plot(raw),
        "reproduction_fig3_grad_norms.png": plots.grad_norm_plot(
            {n["recipe"]: np.array(n["values"]) for n in first},
            f"Per-sample gradient norms on D (seed {raw['seeds'][0]}; paper Fig. 3)"),
    }


def training_table(raw: dict) -> str:
    training, norms = pd.DataFrame(raw["training"]), pd.DataFrame(raw["norms"])
    lines = ["| recipe | epochs run (early stop) | best epoch | stopped early | val acc | mean norm | p99 norm "
             "| max norm | s per model |", "| --- |" + " ---: |" * 8]
    for recipe in training.recipe.unique():
        t, n = training[training.recipe == recipe], norms[norms.recipe == recipe]
        lines.append(f"| {recipe} | {fmt(t.epochs_run.mean(), t.epochs_run.std())} | "
                     f"{fmt(t.best_epoch.mean(), t.best_epoch.std())} | {int(t.stopped_early.sum())} of {len(t)} | "
                     f"{fmt(t.best_val_acc.mean(), t.best_val_acc.std())} | {fmt(n['mean'].mean(), n['mean'].std(), 3)}"
                     f" | {fmt(n.p99.mean(), n.p99.std(), 2)} | {fmt(n['max'].mean(), n['max'].std(), 1)} | "
                     f"{fmt(t.seconds.mean(), t.seconds.std(), 0)} |")
    return "\n".join(lines)


def paper_row(rows: dict) -> str:
    return ", ".join(f"{k} {' / '.join('–' if v is None else f'{v:g}' for v in values)}" for k, values in rows.items())


def render(raw: dict, command: str) -> str:
    p = raw["params"]
    dataset = p["data"]["dataset"]
    dataset = dataset["name"] if isinstance(dataset, dict) else dataset  # a kind's section, or its name
    paper_ii = {m: v[0] for m, v in PAPER_TABLE_II.items()}
    paper_ii_svhn = {m: v[1] for m, v in PAPER_TABLE_II.items()}
    verdicts = "\n".join(f"| {c} | {e} | **{v}** | {w} |" for c, e, v, w in claims(raw))
    head = headline_of(raw)
    missing = [m for m in ("usgd",) if m not in METHOD_NAMES]
    compared = [m for m in tables_of(raw, "random")[0].index if m not in REFERENCE_METHODS]  # as measured
    unmeasured = [m for m in METHOD_NAMES if m not in compared]  # in the registry since the data was measured
    not_yet = f" Not yet measured here (in the registry since): {', '.join(unmeasured)}." if unmeasured else ""
    measured = raw.get("measured_on", "an earlier date (not recorded in the data)")
    model = p["model"]["name"] if isinstance(p.get("model"), dict) else "LeNet5"
    model += f" (hidden {p['model']['hidden']})" if model == "mlp" and "hidden" in p["model"] else ""
    return f"""# Reproducing the paper's tables on {dataset}

{generated_by(command, raw.get("commit"))} Measured on {measured}
on 2 CPU cores shared with other jobs (so seconds are comparable within a table, not to other machines):
the whole command took **{raw['seconds'] / 60:.0f} min**.

**Setting.** {dataset}, {model}, CPU; D = {p['data']['train_size']:,} training records, validation
{p['data']['val_size']:,}, test {p['data']['test_size']:,}, shadow pool {p['data']['shadow_pool_size']:,}
({p['lira']['num_reference']} reference models; the paper's shadow attack uses {p['mia']['num_shadow']}).
Every model is trained with Adam (lr {p['training']['lr']}, batch {p['training']['batch_size']}) until
{p['training']['patience']} epochs pass without a validation gain (at most {p['training']['max_epochs']}), with
GR alpha {p['training']['gr_alpha']} ({p['training']['gr_reading']} reading) unless a row says otherwise.
Seeds {raw['seeds']}: mean ± sample std. **The paper used CIFAR-10 and SVHN** (3-channel 32x32, 40k-58k training
records, GPU, 10 repeats), so its numbers stand beside ours for shape, not for equality: seconds differ by
hardware and data size, and MU/UE by dataset difficulty and attack strength. Its avg rank ranks 5 methods;
ours ranks all {len(compared)} (column "all") and, on the paper's scale, only the paper's methods we
have ({', '.join(PAPER_SET)}; column "paper's set"). Missing: {', '.join(missing) or 'none'} (see docs/science.md,
"Baselines").{not_yet} Every method uses params.yaml's values (each from its own paper) and the same stop rule; none was
tuned on these numbers.

{setting_note(raw)}{strength_line(raw)}

## Table II-style: random 5% deletion, all methods

{comparison_table(tables_of(raw, 'random'), paper_ii, 'Table II LeNet5 CIFAR-10', kept_of(raw, 'random'), head)}

The paper's Table II LeNet5 on SVHN (MU / s / UE / rank), for the same rows: {paper_row(paper_ii_svhn)}.

![MU vs UE, random](reproduction_table2_mu_ue.png)

## Table V-style: isolation-forest outliers (1% contamination)

{comparison_table(tables_of(raw, 'outliers'), PAPER_TABLE_V, 'Table V LeNet5 SVHN', kept_of(raw, 'outliers'),
                   head)}

![MU vs UE, outliers](reproduction_table5_mu_ue.png)

## Fig. 2: the ablation (IA, IA+GC, IA+GC+GR)

`ia` is Eq. 5 alone on the GR model, `ia_gc` is Eq. 8 on the model trained without GR, `iau` is Eq. 8 on the
GR model; all three choose eta by the same rule. The rows are those of the two tables above:

{comparison_table([t.loc[[*REFERENCE_METHODS, *ABLATION]] for t in tables_of(raw, 'random')],
                  None, '', headline=head)}

(random 5%) and

{comparison_table([t.loc[[*REFERENCE_METHODS, *ABLATION]] for t in tables_of(raw, 'outliers')],
                  None, '', headline=head)}

(outliers). The paper gives Fig. 2 as a plot only, without numbers.

![ablation](reproduction_fig2_ablation.png)

## Fig. 3 and Table VI: what GR does to gradients and to early stopping

Per recipe, over seeds: epochs until early stopping ended training (Table VI), and per-sample gradient norms
on all of D of the model it kept (Fig. 3; both readings of Eq. 7 at the same alpha). The per-sample reading
costs about 6x a batch-reading epoch, so it was capped at {PER_SAMPLE_MAX_EPOCHS} epochs to fit the 2 cores:
its epoch count is not a Table VI number, only its gradient norms are read.

{training_table(raw)}

The paper's Table VI (LeNet5, epochs to early stop, original loss / GR loss): {paper_row(PAPER_TABLE_VI)}. Its Fig. 3
(ResNet18) shows GR's norms below the original loss's; it gives no numbers.

![gradient norms](reproduction_fig3_grad_norms.png)

## The paper's claims against these numbers

Rule: a claim is judged on the per-seed paired difference it is about, by its 95% t-interval over the
{len(raw['seeds'])} seeds (iau_core.verdicts): **agrees** when the interval excludes 0 on the claimed side,
**disagrees** when it excludes 0 on the other, **cannot tell within noise** when it contains 0. A claim of "no
difference" (Fisher's UE) agrees when the interval contains 0: no difference detected, not equality shown.

| claim | paper's evidence | verdict | why (our numbers) |
| --- | --- | --- | --- |
{verdicts}
"""


def setting_note(raw: dict) -> str:
    """A doc measured in another setting than the main one says so, and how to measure the main one."""
    if raw.get("setting") == "leaking":
        return ""
    return ("> **Not yet the main setting.** These numbers are the earlier small setting, where the original model "
            "barely leaks (LiRA AUC about 0.55 on D), so almost no forgetting claim can be judged. The main setting "
            "is studies/leaking.yaml: `.venv/bin/python -m studies.reproduce --setting leaking --seeds 0 1 2 3 4` "
            "regenerates this page on it (several hours on 2 shared cores; see the setting's file).\n\n")


def strength_line(raw: dict) -> str:
    """What the attacks see on the original model over seeds: whether there is anything to forget at all."""
    rows = raw.get("strengths", [])
    if not rows:
        return "(What the attacks see on the original model was not recorded in this data.)"
    lira = t_interval([r["lira_strength"] for r in rows])
    shadow = t_interval([r["attack_strength"] for r in rows])
    rmia = ""
    if all("rmia_strength" in r for r in rows):  # data from before RMIA has none
        t = t_interval([r["rmia_strength"] for r in rows])
        rmia = f"RMIA AUC {t.mean:.3f} [{t.lo:.3f}, {t.hi:.3f}], "
    return (f"**What the attacks see on the original model** (all of D against held-out records, over "
            f"{lira.n} seeds; chance is AUC 0.5 and 50%): LiRA AUC {lira.mean:.3f} [{lira.lo:.3f}, {lira.hi:.3f}] "
            f"(mean [95% CI]), {rmia}shadow attack balanced accuracy {shadow.mean:.1f}%. Verdicts are read on "
            f"{headline_of(raw)} (attacks.headline).")
