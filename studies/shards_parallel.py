"""The wall time of training a sharded model through the Prefect task runner (issue 32, item 4), for
studies/shards.py --dask-workers (which renders the table).

The S shards train as the pipeline trains them (tasks.training.train_deployed: one `shard-training` task per
shard) inside a Prefect flow run, on the task runner params select (flows.unlearn.task_runner):
- `execution: dask` with `dask.workers` = 1, 2, ...: a real distributed.LocalCluster of single-threaded worker
  processes (one torch thread each), started for the run;
- for reference, `execution: local`: the flow's own thread pool, the shards' threads sharing this process's torch
  threads (params `threads`).
Each run's seconds are split into the LocalCluster's start (until its workers have registered), the training
(submitting the shards to their results, the workers' first imports of torch and the data included) and the
cluster's stop. The flows report to a throwaway Prefect server on loopback (sandbox/servers.py), never to the
team's. Every run trains the same model (same seeds, same initial weights drawn here): the weights' sha256 says
whether the runners gave the same bits (single-threaded Dask workers do; threads sharing torch's pool may sum in
another order).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from prefect import flow
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, temporary_settings
from torch import nn

from flows.unlearn import task_runner
from iau_core.config import Params
from sandbox.servers import prefect_server
from stores.project import RunContext
from tasks.training import train_deployed


def weights_sha256(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def runner_params(params: Params, execution: str, workers: int) -> Params:
    """params with this runner: a LocalCluster of `workers` (never an existing cluster's address) or threads."""
    return params.model_copy(update={"execution": execution, "dask": params.dask.model_copy(
        update={"workers": workers, "address": None})})


def timed_training(ctx: RunContext, execution: str, workers: int, log: Callable[[str], None]) -> dict:
    """One flow run training ctx's sharded model on `execution`'s runner; its seconds and what it trained."""
    params = runner_params(ctx.params, execution, workers)
    run_ctx = replace(ctx, params=params)

    @flow(name=f"shard-training-wall-time-{execution}-{workers}", persist_result=False)
    def wall_time() -> dict:
        opened = time.perf_counter()
        with task_runner(params, ctx.repo_root) as runner:  # None under local: the flow's thread pool
            if runner is not None:  # the LocalCluster's worker processes spawn in the background: their start
                runner.client.wait_for_workers(workers)  # is the cluster's, not the training's
            started = time.perf_counter()
            model, report = train_deployed(run_ctx, lambda line: log(f"{execution}: {line}"), runner)
            trained = time.perf_counter()
        closed = time.perf_counter()
        return {"execution": execution, "workers": workers if execution == "dask" else None,
                "cluster_start_seconds": started - opened, "train_seconds": trained - started,
                "cluster_stop_seconds": closed - trained, "total_seconds": closed - opened,
                "shard_slice_epochs": report.epochs_run, "val_acc": report.best_val_acc,
                "weights_sha256": weights_sha256(model)}

    row = wall_time()
    log(f"{execution}{f' ({workers} workers)' if execution == 'dask' else ''}: trained in "
        f"{row['train_seconds']:.1f} s (+ {row['cluster_start_seconds']:.1f} s start, "
        f"{row['cluster_stop_seconds']:.1f} s stop)")
    return row


def drain_queued() -> None:
    """Send the logs and events the flow runs queued while their server is up (as prefect_test_harness does): left
    queued, the process's exit waits on them retrying a server that has stopped."""
    try:
        APILogWorker.instance().drain()
    except RuntimeError:  # never started: nothing queued
        pass
    EventsWorker.drain_all()


def measure(params: Params, project: Path, shards: int, workers: list[int], log: Callable[[str], None]) -> dict:
    """The S-shard (R = 1) model trained once on threads (`execution: local`) and once per Dask worker count."""
    params = params.model_copy(update={"training": params.training.model_copy(update={"shards": shards,
                                                                                      "slices": 1})})
    ctx = RunContext(params, "unversioned (studies.shards)", "", project)
    with tempfile.TemporaryDirectory() as home, prefect_server(Path(home)) as server, \
            temporary_settings(updates={PREFECT_API_URL: server["PREFECT_API_URL"]}):
        rows = [timed_training(ctx, "local", 1, log)] + [timed_training(ctx, "dask", n, log) for n in workers]
        drain_queued()  # before the server stops
    return {"shards": shards, "slices": 1, "train_size": len(ctx.bundle().train), "model": params.model.name,
            "max_epochs": params.training.max_epochs, "device": str(ctx.device), "threads": torch.get_num_threads(),
            "runs": rows}
