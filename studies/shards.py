"""The cost of exactness by design (issue 32): a SISA-sharded model (iau_core/sharding.py) against one network.

    .venv/bin/python -m studies.shards [--shards 1,4,8,16] [--seeds 0,1,2,3,4] [--slices 1,4] [--deletion-shards 8]
        [--batches 1,10,100,1000] [--forget 200] [--dask-workers 1,2 [--dask-shards 4] [--wall-times-only]]
        [--set KEY=VALUE ...] [--out reports/shards]

The setting is studies/leaking.yaml over params.yaml (a model that memorizes D, RMIA its headline attack), plus any
--set (e.g. --set data.train_size=60000 for all of Fashion-MNIST's training records). Three measurements, and
a fourth with --dask-workers:

1. Utility and leakage by S: per S and seed, the test accuracy and the headline attack's AUC on all of D against
   held-out records (the attacker's reference models are single networks, trained once on the shadow pool).
2. The compute of a deletion batch: on the model with S = --deletion-shards and R slices (each of --slices), a
   random batch of each size is deleted by `sisa` (from the checkpoints); its compute (records x epochs of the
   slices it retrained) against full retraining's (every shard and slice on the retained records), and the wall
   seconds of each (full retraining's: the model's own training, the same recipe on |D| - n records).
3. The movement of the headline attack on D_f after `sisa` against the noise floor: on a random forget set of
   --forget records, its AUC on D_f against label-matched held-out records for `sisa`, `retrain` (the sharded
   model from scratch on D_r, the original's seeds) and `retrain_alt` (another seed); movement = |sisa - retrain|,
   floor = |retrain_alt - retrain|.
4. The wall time of training the --dask-shards model through the Prefect task runner on a Dask LocalCluster of
   each --dask-workers count, and on threads for reference (studies/shards_parallel.py). --wall-times-only runs
   this part alone and adds it to the <out>.json the other three wrote (or starts one).

Writes <out>.md and <out>.json (with the commit and the command). Timings depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy import stats

from iau_core.attacks import label_matched
from iau_core.config import ParamsError, deep_merge, load_params, parse_overrides
from iau_core.data import load_bundle
from iau_core.recipe import fit_attacks, model_builder, train_original, train_references
from iau_core.runtime import prepare_process
from iau_core.sharding import ShardCheckpoints, checkpoints_of, slice_positions
from iau_core.sources import materialized_root
from iau_core.training import accuracy, resolve_device
from iau_core.unlearning import UnlearningTask, run_method
from studies.provenance import code_commit, command_line

LEAKING = Path(__file__).with_name("leaking.yaml")
REPO = Path(__file__).resolve().parents[1]


def layout(params, shards: int, slices: int):
    return params.model_copy(update={"training": params.training.model_copy(update={"shards": shards,
                                                                                     "slices": slices})})


def ints(text: str) -> list[int]:
    values = sorted({int(v) for v in text.split(",")})
    if values[0] < 0:
        raise ValueError(text)
    return values


def mean_ci(values: list[float]) -> dict:
    """Mean and the half-width of its 95% t interval (nan with one value)."""
    arr = np.asarray(values, dtype=float)
    half = float(stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / np.sqrt(len(arr))) if len(arr) > 1 else \
        float("nan")
    return {"mean": float(arr.mean()), "ci95": half, "n": len(arr), "values": [float(v) for v in arr]}


def compute(checkpoints: ShardCheckpoints, ids, before: ShardCheckpoints | None = None) -> int:
    """Records x epochs of every slice training a model's history holds (slice k trains on slices 0..k), or with
    `before` only of those that differ from it: the ones a retraining ran."""
    positions = slice_positions(ids, len(checkpoints.shards), checkpoints.slices)
    total = 0
    for s, history in enumerate(checkpoints.shards):
        sizes = np.cumsum([len(p) for p in positions[s]])
        for k, epochs in enumerate(history.epochs):
            if before is None or history.after_slice[k] is not before.shards[s].after_slice[k]:
                total += int(epochs) * int(sizes[k])
    return total


def task_for(params, bundle, model, forget_ids, device) -> UnlearningTask:
    forget, retain = bundle.train.partition(np.asarray(forget_ids))
    return UnlearningTask(model=model, retain=retain.to(device), forget=forget.to(device), val=bundle.val.to(device),
                          build_model=model_builder(params, bundle), training=params.training,
                          unlearning=params.unlearning, device=device, seed=params.seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.shards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--shards", default="1,4,8,16")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--slices", default="1,4", help="R of the deletion-cost part")
    parser.add_argument("--deletion-shards", type=int, default=8, help="S of the deletion-cost and RMIA parts")
    parser.add_argument("--batches", default="1,10,100,1000")
    parser.add_argument("--forget", type=int, default=200, help="|D_f| of the RMIA part")
    parser.add_argument("--dask-workers", help="Dask worker counts of the wall-time part (e.g. 1,2); none: no such "
                        "part")
    parser.add_argument("--dask-shards", type=int, default=4, help="S of the wall-time part")
    parser.add_argument("--wall-times-only", action="store_true", help="only the wall-time part, into <out>.json")
    parser.add_argument("--out", default="reports/shards")
    parser.add_argument("--render", action="store_true", help="only rewrite <out>.md from <out>.json")
    args = parser.parse_args(argv)
    if args.render:
        Path(f"{args.out}.md").write_text(markdown(json.loads(Path(f"{args.out}.json").read_text())))
        return 0
    try:
        shard_counts, seeds, slice_counts, batches = (ints(args.shards), ints(args.seeds), ints(args.slices),
                                                      ints(args.batches))
        workers = ints(args.dask_workers) if args.dask_workers else []
        if args.wall_times_only and not workers or 0 in workers or args.dask_shards < 1:
            raise ValueError("the wall-time part needs --dask-workers with counts >= 1 and --dask-shards >= 1")
        base = load_params(args.params, deep_merge(yaml.safe_load(LEAKING.read_text()),
                                                   parse_overrides(args.overrides)))
    except (ValueError, ParamsError) as exc:
        print(exc, file=sys.stderr)
        return 2
    prepare_process(base.threads)
    project = Path(args.params).resolve().parent
    bundle = load_bundle(base.data, materialized_root(base.data, project))
    device = resolve_device(base.device)
    start = time.perf_counter()
    log = lambda line: print(f"[{time.perf_counter() - start:7.0f}s] {line}", file=sys.stderr, flush=True)  # noqa: E731
    command = command_line("python -m studies.shards", argv)
    if args.wall_times_only:
        existing = Path(f"{args.out}.json")
        out = json.loads(existing.read_text()) if existing.is_file() else {}
        out["parallel"] = wall_times(base, project, args.dask_shards, workers, command, log)
        return write(out, args.out)
    headline = base.attacks.headline
    attacks, _ = fit_attacks(base, bundle, train_references(base, bundle, device, log), device)
    attack = attacks[headline]
    log(f"attacks fitted ({headline} is the headline)")

    by_shards, kept = {}, {}
    for shards in shard_counts:
        rows = []
        for seed in seeds:
            params = layout(base.for_seed(seed), shards, 1)
            model, report = train_original(params, bundle, device)
            rows.append({"seed": seed, "test_acc": accuracy(model, bundle.test, device),
                         "auc_on_d": attack.roc(model, bundle.train, bundle.test, device).auc,
                         "train_seconds": report.seconds})
            log(f"S={shards} seed {seed}: test acc {rows[-1]['test_acc']:.2f}, {headline} AUC on D "
                f"{rows[-1]['auc_on_d']:.3f}, {report.seconds:.0f}s")
            if shards == args.deletion_shards and seed == seeds[0]:
                kept[1] = (model, report.seconds)
        by_shards[shards] = {k: mean_ci([r[k] for r in rows]) for k in ("test_acc", "auc_on_d", "train_seconds")}

    rng = np.random.default_rng(seeds[0])
    ids = bundle.train.ids.numpy()
    deletion = {}
    for slices in slice_counts:
        params = layout(base.for_seed(seeds[0]), args.deletion_shards, slices)
        if slices not in kept:
            model, report = train_original(params, bundle, device)
            kept[slices] = (model, report.seconds)
        model, train_seconds = kept[slices]
        original = checkpoints_of(model)
        rows = []
        for size in [b for b in batches if b < len(ids)]:
            forget_ids = np.sort(rng.choice(ids, size, replace=False))
            task = task_for(params, bundle, model, forget_ids, device)
            run = run_method("sisa", task)
            after = checkpoints_of(run.model)
            full = compute(after, task.retain.ids)
            rows.append({"batch": size, "shards_retrained": run.choices["shards_retrained"],
                         "slices_retrained": run.choices["slices_retrained"],
                         "sisa_compute": compute(after, task.retain.ids, original), "full_compute": full,
                         "sisa_seconds": run.seconds, "full_seconds": train_seconds})
            log(f"R={slices} batch {size}: sisa retrained {run.choices['retrained_shards']} "
                f"({run.choices['slices_retrained']} slices), {run.seconds:.0f}s")
        deletion[slices] = rows

    params = layout(base.for_seed(seeds[0]), args.deletion_shards, 1)
    model = kept[1][0]
    forget_ids = np.sort(rng.choice(ids, args.forget, replace=False))
    task = task_for(params, bundle, model, forget_ids, device)
    matched = label_matched(bundle.test, task.forget.to("cpu"), seeds[0])
    movement = {}
    results = {m: run_method(m, task) for m in ("sisa", "retrain", "retrain_alt")}
    for method, run in results.items():
        movement[method] = attack.roc(run.model, task.forget, matched, device).auc
    movement["original"] = attack.roc(model, task.forget, matched, device).auc
    sd_sisa, sd_gold = results["sisa"].model.state_dict(), results["retrain"].model.state_dict()
    identical = all(np.array_equal(sd_sisa[k].cpu().numpy(), sd_gold[k].cpu().numpy()) for k in sd_gold)
    rmia = {"forget": args.forget, "auc": movement, "movement": abs(movement["sisa"] - movement["retrain"]),
            "floor": abs(movement["retrain_alt"] - movement["retrain"]), "sisa_equals_retrain_bitwise": identical,
            "sisa_shards_retrained": results["sisa"].choices["shards_retrained"]}
    elapsed = time.perf_counter() - start
    out = {"command": command, "commit": code_commit(),
           "setting": {"leaking": str(LEAKING.relative_to(REPO)), "overrides": args.overrides,
                       "train_size": len(bundle.train), "test_size": len(bundle.test), "model": base.model.name,
                       "headline": headline, "seeds": seeds, "device": str(device), "threads": torch.get_num_threads()},
           "by_shards": by_shards, "deletion_shards": args.deletion_shards, "deletion": deletion, "rmia": rmia,
           "elapsed_seconds": elapsed}
    if workers:
        out["parallel"] = wall_times(base, project, args.dask_shards, workers, command, log)
    return write(out, args.out)


def wall_times(params, project: Path, shards: int, workers: list[int], command: str, log) -> dict:
    """Part 4 (studies/shards_parallel.py, imported here: Prefect and Dask load only when it runs)."""
    from studies.shards_parallel import measure

    start = time.perf_counter()
    parallel = measure(params, project, shards, workers, log)
    return {**parallel, "command": command, "commit": code_commit(),
            "elapsed_seconds": time.perf_counter() - start}


def write(out: dict, stem: str) -> int:
    Path(stem).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_text(json.dumps(out, indent=1))
    Path(f"{stem}.md").write_text(markdown(out))
    print(markdown(out))
    return 0


def fmt(stat: dict, digits: int) -> str:
    ci = "" if np.isnan(stat["ci95"]) else f" ± {stat['ci95']:.{digits}f}"
    return f"{stat['mean']:.{digits}f}{ci}"


def markdown(out: dict) -> str:
    """<out>.md: the first three parts where they were run, and the wall-time part where it was."""
    lines = ["# The cost of exactness: a SISA-sharded model (issue 32)", ""]
    if "by_shards" in out:
        lines += study_lines(out) + [""]
    if "parallel" in out:
        lines += parallel_lines(out["parallel"])
    return "\n".join(lines).rstrip("\n") + "\n"


def study_lines(out: dict) -> list[str]:
    s = out["setting"]
    lines = [f"Generated by `{out['command']}` at commit {out['commit'][:12]} in {out['elapsed_seconds'] / 60:.0f} "
             f"min on {s['device']} ({s['threads']} threads). Setting: {s['leaking']}"
             f"{''.join(', ' + o for o in s['overrides'])}: {s['model']} on |D| = {s['train_size']} records, "
             f"headline attack {s['headline']}, seeds {s['seeds']}. Seconds were measured on a shared machine "
             "under other jobs' load: read the compute columns (records x epochs), not the seconds, for ratios.", "",
             "## Utility and leakage by shard count (R = 1; mean ± 95% t-interval over seeds)", "",
             f"| S | test accuracy (%) | {s['headline']} AUC on D | training seconds |",
             "| ---: | ---: | ---: | ---: |"]
    for shards, row in out["by_shards"].items():
        lines.append(f"| {shards} | {fmt(row['test_acc'], 2)} | {fmt(row['auc_on_d'], 3)} | "
                     f"{fmt(row['train_seconds'], 0)} |")
    lines += ["", f"## The compute of a deletion batch (S = {out['deletion_shards']}, seed {s['seeds'][0]})", "",
              "Random records of D deleted by `sisa` from the checkpoints; full retraining trains every shard and "
              "slice on the retained records. Compute = records x epochs of the slice trainings run (each slice "
              "stage runs the whole recipe). Full retraining's seconds are the model's own training on all of D.",
              "",
              "| R | batch | shards retrained | slice trainings | sisa compute | full retraining compute | compute "
              "ratio | sisa seconds | full retraining seconds |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
              "---: | ---: |"]
    for slices, rows in out["deletion"].items():
        for r in rows:
            ratio = r["full_compute"] / r["sisa_compute"] if r["sisa_compute"] else float("inf")
            lines.append(f"| {slices} | {r['batch']} | {r['shards_retrained']} | {r['slices_retrained']} | "
                         f"{r['sisa_compute']:,} | {r['full_compute']:,} | {ratio:.2f}x | {r['sisa_seconds']:.1f} | "
                         f"{r['full_seconds']:.1f} |")
    m = out["rmia"]
    lines += ["", f"## {s['headline']} on D_f after `sisa` against the noise floor", "",
              f"A random forget set of {m['forget']} records ({m['sisa_shards_retrained']} shards retrained); AUC on "
              "D_f against label-matched held-out records.", "",
              "| original | sisa | retrain | retrain_alt | movement \\|sisa - retrain\\| | floor \\|retrain_alt - "
              "retrain\\| |", "| ---: | ---: | ---: | ---: | ---: | ---: |",
              f"| {m['auc']['original']:.3f} | {m['auc']['sisa']:.3f} | {m['auc']['retrain']:.3f} | "
              f"{m['auc']['retrain_alt']:.3f} | {m['movement']:.3f} | {m['floor']:.3f} |", "",
              f"`sisa`'s model equals `retrain`'s (the sharded model trained from scratch on D_r with the "
              f"original's seeds) bit for bit: {m['sisa_equals_retrain_bitwise']}."]
    return lines


def parallel_lines(parallel: dict) -> list[str]:
    """Part 4: the wall times (studies/shards_parallel.py)."""
    p, runs = parallel, parallel["runs"]
    dask, local = [r for r in runs if r["execution"] == "dask"], [r for r in runs if r["execution"] == "local"]
    lines = [f"## Wall time of training the S = {p['shards']} model through the Prefect task runner", "",
             f"Generated by `{p['command']}` at commit {p['commit'][:12]} in {p['elapsed_seconds'] / 60:.1f} min: "
             f"{p['model']} on |D| = {p['train_size']} records in {p['shards']} shards (R = 1, up to "
             f"{p['max_epochs']} epochs each) on {p['device']}, one `shard-training` task per shard in one Prefect "
             "flow run per row. dask: a distributed.LocalCluster of single-threaded workers (`execution: dask`, "
             f"`dask.workers`); local: the flow's thread pool, the shards sharing this process's {p['threads']} "
             "torch thread(s) (`execution: local`). Cluster start = until its workers registered; training = from "
             "submitting the shards to their results (the workers' first imports of torch and the data included). "
             "Seconds on a shared machine depend on its load.", "",
             "| runner | workers | cluster start (s) | training (s) | cluster stop (s) | total (s) | training "
             "speed-up vs 1 worker | shard epochs | ensemble val acc (%) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    one = next((r["train_seconds"] for r in dask if r["workers"] == 1), None)
    for r in runs:
        speedup = f"{one / r['train_seconds']:.2f}x" if one else "-"
        lines.append(f"| {r['execution']} | {r['workers'] or '-'} | {r['cluster_start_seconds']:.1f} | "
                     f"{r['train_seconds']:.1f} | {r['cluster_stop_seconds']:.1f} | {r['total_seconds']:.1f} | "
                     f"{speedup} | {r['shard_slice_epochs']} | {r['val_acc']:.2f} |")
    digests = {r["weights_sha256"] for r in dask}
    lines += ["", f"The {len(dask)} Dask runs trained the same weights bit for bit: {len(digests) == 1}; the "
              f"threads' run the same as theirs: {bool(local) and {r['weights_sha256'] for r in local} == digests}."]
    return lines


if __name__ == "__main__":
    sys.exit(main())
