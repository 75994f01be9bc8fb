"""The `train` flow: the deployed model, trained with the GR recipe on the current data version, registered in
the production lineage (tracking.deployed_model) and given the `champion` alias that nightly batches start from.

    iau train            # or: python -m flows.train
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from iau_core.config import ParamsError, load_params
from iau_core.runtime import prepare_process
from ledger import Ledger, ledger_url
from stores import tracking
from stores.project import ProjectNotFound, RunContext, project_root
from stores.reconcile import RegistryDiverged, check
from tasks.champion import train_champion
from tasks.data import ensure_data_task
from tasks.training import reference_attack


@flow(name="train")
def train(params_file: str = "params.yaml", overrides: dict | None = None, project_dir: str | None = None) -> dict:
    """Train the champion on all of the current D (a full retrain resets the nightly drift counters)."""
    root = project_root(project_dir)
    params = load_params(root / params_file, overrides)
    prepare_process(params.threads)  # here, not in a __main__: a worker's flow run must take its share too
    ledger = Ledger(ledger_url(root))
    with ledger.nightly_lock(owner=f"prefect flow run {flow_run.id} (train)"):  # never beside a deletion batch
        data_version = ensure_data_task(str(root))
        ctx = RunContext(params, data_version, tracking.configure(root, params.tracking.experiment), root)
        if problem := check(ledger, params.tracking.deployed_model):  # before registering a number the ledger holds
            raise RegistryDiverged(problem)
        attack_run = reference_attack(ctx)  # the gate's LiRA statistics, fitted on the shadow pool only
        version = train_champion(ctx, attack_run)
        train_size = len(ctx.bundle().train)
        ledger.record_champion(version.version, data_version=data_version, train_size=train_size, method="train")
    get_run_logger().info("champion %s trained on %d records of data version %s", version.uri, train_size,
                          data_version)
    return {"champion": version.uri, "data_version": data_version, "train_size": train_size,
            "run_id": version.run_id}


def main() -> None:
    try:  # outside a project (or with bad params): one line, before a flow run starts
        load_params(project_root() / "params.yaml")
    except (ParamsError, ProjectNotFound) as exc:
        raise SystemExit(str(exc)) from None
    print(train())


if __name__ == "__main__":
    main()
