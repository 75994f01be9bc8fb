"""The `unlearn` flow: DVC data -> attacker's reference models -> per seed: base model (GR), forget set,
every method -> comparison with noise floors -> MLflow.

The production deletion batch is another flow (flows/nightly.py, deployment deletion-batch/nightly; `iau nightly`
runs it in-process); this one is for experiments.

    python -m flows.unlearn --selection outliers [--seeds 0 1 2]   # what `make run` does
    prefect deployment run unlearn/outliers                       # through a server and a worker
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, get_args
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from dvc.exceptions import DvcException
from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner

from iau_core.config import Params, ParamsError, Recipe, Strategy, deep_merge, load_params
from iau_core.config.cli_args import add_params_arguments, params_from, refuse
from iau_core.recipe import reference_count, run_recipe
from iau_core.runtime import THREADS_ENV, prepare_process, usable_cores
from iau_core.unlearning import MethodResult
from reporting.tables import manifest, what_attacks_see
from reporting.verdicts import printed
from stores import tracking
from stores.artifacts import ModelRef
from stores.data import DataVersionMismatch, checked_data
from stores.project import ProjectNotFound, RunContext, project_root
from tasks.data import ensure_data_task
from tasks.evaluation import compare_methods, gradient_norms, measure_attack_strength
from tasks.references import reference_model
from tasks.selection import forget_set
from tasks.training import base_model, reference_attack, reused_reference_attack
from tasks.unlearning import unlearn_with

if TYPE_CHECKING:  # imported when used: `execution: local` never loads dask and distributed
    from prefect_dask import DaskTaskRunner

SELECTIONS = get_args(Strategy)
# The MLflow `kind` tag of each base-model recipe (BASE_RECIPES); each is trained once per seed.
RECIPE_KINDS = {"deployed": "base", "no_gr": "base-no-gr"}


@flow(name="unlearn")
def unlearn(selection: str = "outliers", params_file: str = "params.yaml", overrides: dict | None = None,
            seeds: list[int] | None = None, params: Params | None = None) -> dict:
    """Forget a selected part of the training set with every configured method, for each seed, and compare
    each with retraining from scratch. Returns the parent MLflow run id and the comparison (mean ± std).

    `params`: the params its caller has read and validated already (`python -m flows.unlearn`, with the selection
    and seeds in them), used as they are; without them (a deployment's run), params_file with `overrides`, the
    environment's and the selection's is read here. Params hold no secrets (URLs come from the environment), so
    the flow run may show them."""
    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection {selection!r}; known: {list(SELECTIONS)}")
    root = project_root()
    if params is None:
        params_path = Path(params_file) if Path(params_file).is_absolute() else root / params_file
        changes = {"selection": {"strategy": selection}} | ({"seeds": list(seeds)} if seeds else {})
        params = load_params(params_path, deep_merge(deep_merge(overrides or {}, environment_overrides()), changes))
    prepare_process(params.threads)  # here, not in main(): a worker's flow run must take its share too
    data_version = ensure_data_task(str(root))
    ctx = RunContext(params, data_version, tracking.configure(root, params.tracking.experiment), root)
    lineage = {"flow": "unlearn", "selection": selection, "data_version": data_version,
               "git_commit": tracking.git_commit(ctx.repo_root), "prefect_flow_run_id": str(flow_run.id)}
    with (tracking.run(ctx.experiment_id, f"unlearn-{selection}", lineage, repo_root=root) as parent,
          children(parent) as opened, task_runner(params, root) as runner):
        tracking.log_params(parent, tracking.flatten(params))
        tracking.log_data_version(parent, params.data.dataset.name, data_version, "data.dvc")
        steps = FlowSteps(ctx, parent, opened, runner)
        comparison = run_recipe(params, steps)
        comparison.results = steps.gather(comparison.results)
        tracking.log_text(parent, manifest(comparison.forget_sets), "forget_set.csv")
        summary, strength = compare_methods(comparison.results, comparison.strengths, parent, selection,
                                            roles=comparison.role_sizes(len(ctx.bundle().val)),
                                            headline=params.attacks.headline)
    result = {"parent_run_id": parent, "experiment_id": ctx.experiment_id, "attack_strength": strength,
              "summary": summary.reset_index(names="method").to_dict(orient="records")}
    get_run_logger().info("comparison (MLflow parent run %s):\n%s", parent, table_of(result))
    return result


@dataclass
class FlowSteps:
    """The recipe's steps (iau_core.recipe.Steps) as Prefect tasks that record to MLflow: base models and the
    attacker's models are trained once and reused by content key, each method gets a nested run under `parent`
    (left open in `opened` until the comparison has written its gaps and verdicts).

    With a `runner` (execution: dask, task_runner below) the reference models and each (method, seed) are
    submitted to it: `unlearn` then returns a future, and `gather` waits for all of them after the loop. The loop
    and what each task computes are the same; only where and when the tasks run differs."""

    ctx: RunContext
    parent: str
    opened: list[str]
    runner: TaskRunner | None = None  # None: every task here, in the loop's order
    forget_sha256: dict[int, str] = field(default_factory=dict)

    def at(self, params: Params) -> RunContext:
        return replace(self.ctx, params=params)

    def attacks(self) -> str:
        if self.runner is None:
            return reference_attack(self.ctx)
        if reused := reused_reference_attack(self.ctx):
            return reused
        futures = [self.runner.submit(reference_model, {"ctx": self.ctx, "index": i})
                   for i in range(reference_count(self.ctx.params))]
        return reference_attack(self.ctx, [future.result() for future in futures])

    def base_model(self, params: Params, recipe: Recipe) -> ModelRef:
        """Trained once and then reused; only the deployed one is registered as a model version (the others are
        never deployed)."""
        if recipe == "deployed":
            return base_model(self.at(params), runner=self.runner)  # a sharded model: one task per shard
        return base_model(self.at(params).for_recipe(recipe), kind=RECIPE_KINDS[recipe], register=False)

    def attack_strength(self, params: Params, base: ModelRef, attacks: str) -> dict[str, float]:
        return measure_attack_strength(self.at(params), base, attacks)

    def forget_set(self, params: Params) -> np.ndarray:
        ids, self.forget_sha256[params.seed] = forget_set(self.at(params))
        return np.asarray(ids, dtype=np.int64)

    def first_seed(self, params: Params, bases: dict[Recipe, ModelRef], forget_ids: np.ndarray) -> None:
        """Lineage tags on the parent, and the gradient norms of the deployed model against the no-GR one."""
        tracking.set_tags(self.parent, {"base_model": bases["deployed"].uri,
                                        "forget_set_sha256": self.forget_sha256[params.seed]})
        no_gr = bases.get("no_gr") or self.base_model(params, "no_gr")
        gradient_norms(self.at(params), bases["deployed"], no_gr, self.parent)

    def unlearn(self, method: str, params: Params, base: ModelRef, attacks: str,
                forget_ids: np.ndarray) -> MethodResult | PrefectFuture:
        name = method if len(self.ctx.params.seeds) == 1 else f"{method} (seed {params.seed})"
        args = {"method": method, "ctx": self.at(params), "base": base, "attack_run_id": attacks,
                "forget_ids": [int(i) for i in forget_ids], "forget_sha256": self.forget_sha256[params.seed],
                "parent_run_id": self.parent, "run_name": name}
        if self.runner is not None:
            return self.runner.submit(unlearn_with, args)  # a future: gather() waits for it
        result = unlearn_with(**args)
        self.opened.append(result.run_id)
        return result

    def gather(self, produced: list[MethodResult | PrefectFuture]) -> list[MethodResult]:
        """Every method's result in the loop's order, waiting for those submitted to the runner. Each finished
        run goes into `opened` before a failure is raised, so the flow marks them all."""
        results, failure = [], None
        for item in produced:
            if not isinstance(item, PrefectFuture):
                results.append(item)
                continue
            try:
                result = item.result()
            except Exception as exc:  # noqa: BLE001 - the first failure is raised once the others are collected
                failure = failure or exc
                continue
            self.opened.append(result.run_id)
            results.append(result)
        if failure is not None:
            raise failure
        return results


@contextmanager
def children(parent: str) -> Iterator[list[str]]:
    """Nested runs opened inside the block end with it: FINISHED once every gap and verdict is on them, FAILED
    if the flow fails first; each at the end time its method recorded (tracking.work_done), so its Duration is
    the method's own work, not the wait for the others."""
    opened: list[str] = []
    try:
        yield opened
    except BaseException:
        for run_id in opened:
            tracking.finish(run_id, ok=False, keep_end_time=True)
        raise
    for run_id in opened:
        tracking.finish(run_id, ok=True, keep_end_time=True)


# --- where the tasks run: `execution: local | dask` (docs/scale-out.md) --------------------------------------------
# local: in the flow's process, one after another, in the recipe loop's order (what `make run` does). dask: the
# (method, seed) pairs and the reference models are submitted to prefect-dask's DaskTaskRunner, by default on a
# distributed.LocalCluster started for the flow run (one single-threaded worker process per core, each taking one
# torch thread), or on the scheduler of an existing cluster (`dask.address`). The environment overrides
# params.yaml: IAU_EXECUTION=local|dask, IAU_DASK_ADDRESS=tcp://host:8786.

EXECUTION_ENV = "IAU_EXECUTION"
ADDRESS_ENV = "IAU_DASK_ADDRESS"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
EXECUTIONS = get_args(Params.model_fields["execution"].annotation)


def environment_overrides() -> dict:
    """params overrides from IAU_EXECUTION and IAU_DASK_ADDRESS, so the run's MLflow params record how it ran."""
    changes: dict = {}
    if execution := os.environ.get(EXECUTION_ENV):
        if execution not in EXECUTIONS:
            raise ParamsError(f"{EXECUTION_ENV} must be one of {list(EXECUTIONS)}, got {execution!r}")
        changes["execution"] = execution
    if address := os.environ.get(ADDRESS_ENV):
        changes["dask"] = {"address": address}
    return changes


def dask_runner(params: Params, root: Path) -> DaskTaskRunner:
    """The task runner of `execution: dask`: an existing scheduler, else a LocalCluster on loopback."""
    from prefect_dask import DaskTaskRunner

    if params.dask.address:
        on_this_machine = urlsplit(params.dask.address).hostname in LOOPBACK
        if tracking.tracking_uri(root).startswith("sqlite:") and not on_this_machine:
            # Workers on other machines cannot write into this machine's SQLite file: they would each make their own.
            raise ParamsError(f"dask.address {params.dask.address!r} needs MLFLOW_TRACKING_URI set to an MLflow "
                              "server every worker reaches (docs/scale-out.md); the store here is a local SQLite file")
        return DaskTaskRunner(address=params.dask.address)
    workers = usable_cores() if params.dask.workers == "auto" else params.dask.workers
    # One process per worker with one thread: torch in each takes one core (IAU_THREADS=1), so N workers never
    # start N x cores compute threads. Loopback only, no dashboard (it would listen on every interface). The
    # workers report their task runs to this flow's Prefect API: without it each would start a temporary server
    # of its own (a uvicorn process per worker, and task runs the flow's UI never shows).
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs={
        "n_workers": workers, "threads_per_worker": 1, "processes": True, "host": "127.0.0.1",
        "dashboard_address": None, "env": {THREADS_ENV: "1", **flow_api_env()}})


def flow_api_env() -> dict[str, str]:
    """PREFECT_API_URL of the API this flow run reports to (a temporary server's too), for processes it starts."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return {"PREFECT_API_URL": str(context.client.api_url).rstrip("/")} if context and context.client else {}


@contextmanager
def task_runner(params: Params, root: Path) -> Iterator[DaskTaskRunner | None]:
    """The started Dask task runner under `execution: dask` (stopped, with a LocalCluster it started, when the
    block ends); None under `local`: call the tasks directly."""
    if params.execution == "local":
        yield None
        return
    import dask
    import distributed  # noqa: F401 - its config defaults must exist before the set below, or leaving it drops them

    with dask.config.set(WORKER_MALLOC), dask_runner(params, root) as runner:
        yield runner


# Dask's nanny starts each worker with MALLOC_TRIM_THRESHOLD_=65536, so glibc hands freed memory back to the
# kernel at once and torch, which frees and reallocates its buffers every batch, pays page faults for it. Unset,
# and with one malloc arena (the task runs off the worker's main thread, which otherwise gets a slower arena of its
# own), a worker trains as fast as a plain process (measured: docs/scale-out.md). Applied where workers spawn.
WORKER_MALLOC = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                 "distributed.nanny.pre-spawn-environ.MALLOC_ARENA_MAX": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the unlearn flow once, in this process.")
    parser.add_argument("--selection", choices=SELECTIONS, default="outliers")
    parser.add_argument("--seeds", type=int, nargs="+", help="repeat over these seeds (default: params.yaml)")
    add_params_arguments(parser)
    args = parser.parse_args()
    try:
        root = project_root()
    except ProjectNotFound as exc:
        refuse(parser, exc)
    # bad params end here in one line naming the key, and data that is not built, not versioned or not the
    # recorded version in one line naming the command to run: before a flow run or any work starts
    changes = {"selection": {"strategy": args.selection}} | ({"seeds": args.seeds} if args.seeds else {})
    params = params_from(parser, args, root / args.params, extra=deep_merge(environment_overrides(), changes))
    try:
        checked_data(root, params.data)
    except (DataVersionMismatch, FileNotFoundError, DvcException) as exc:
        parser.exit(1, f"{parser.prog}: error: {' '.join(str(exc).split())}\n")
    # the params just read go to the flow as they are: read once (the file and --set are shown in them)
    result = unlearn(selection=args.selection, params_file=args.params, seeds=args.seeds, params=params)
    print(report(result, root))


def table_of(result: dict) -> str:
    summary = pd.DataFrame(result["summary"]).set_index("method")
    return f"{printed(summary)}\n{what_attacks_see(result['attack_strength'])}"


def report(result: dict, root: Path | None = None) -> str:
    """What `make run` prints last; `root`: the project main() resolved (else found again)."""
    # workflowType=machine_learning: MLflow 3.17's UI otherwise shows runs in its GenAI mode ("Evaluations")
    url = (f"http://127.0.0.1:5000/#/experiments/{result['experiment_id']}/runs/{result['parent_run_id']}"
           "?workflowType=machine_learning")
    store = tracking.display_uri(tracking.tracking_uri(root or project_root()))
    return (f"\n{table_of(result)}\n\n"
            f"MLflow parent run {result['parent_run_id']} in {store}\n"
            f"Browse it: make mlflow-ui   (then open {url})\n")


if __name__ == "__main__":
    main()
