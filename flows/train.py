"""The `train` flow: the deployed model, trained with the GR recipe on the current data version, registered in
the production lineage (tracking.deployed_model) and given the `champion` alias that nightly batches start from.

    iau train            # or: python -m flows.train

The project (folder, params, ledger) is opened once, at the edge, and handed down as an ops.project.Project:
`iau train` opens it from its own options (--project, --ledger-url, --set) and runs `train_flow(project)`; the
module's `train` flow, for a deployment, opens it from its parameters and the worker's environment
(IAU_LEDGER_URL, as ledger.ledger_url reads it). Neither writes the environment for the other to read back, and no
ledger URL is ever a flow parameter: Prefect stores a flow run's parameters and shows them in its UI.
"""

from __future__ import annotations

from prefect import Flow, flow, get_run_logger
from prefect.runtime import flow_run

from iau_core.config import ParamsError
from iau_core.runtime import prepare_process
from ledger import ledger_url
from ops.project import Project, open_project
from stores import tracking
from stores.project import ProjectNotFound, RunContext, project_root
from stores.reconcile import RegistryDiverged, check
from tasks.champion import train_champion
from tasks.data import ensure_data_task
from tasks.training import reference_attack


@flow(name="train")
def train(params_file: str = "params.yaml", overrides: dict | None = None, project_dir: str | None = None) -> dict:
    """Train the champion on all of the current D (a full retrain resets the nightly drift counters). The project
    is opened here: the folder given (else IAU_PROJECT_DIR or the working directory), the ledger of the worker's
    IAU_LEDGER_URL, else the folder's ledger.db."""
    root = project_root(project_dir)
    project = open_project(root, overrides, ledger_url(root), params_file)
    try:
        return champion_of(project)
    finally:
        project.ledger.close()


def train_flow(project: Project) -> Flow[[], dict]:
    """The `train` flow over a project its caller has opened (`iau train`: params read once, the ledger of its
    --ledger-url). It takes no parameters, so Prefect stores neither the folder nor the ledger's URL."""

    @flow(name="train")
    def train_project() -> dict:
        return champion_of(project)

    return train_project


def champion_of(project: Project) -> dict:
    """The flow's work, inside a flow run: under the nightly lock (never beside a deletion batch), the data checked,
    the gate's reference attack fitted, the champion trained, registered and recorded in the ledger."""
    root, params, ledger = project.root, project.params, project.ledger
    prepare_process(params.threads)  # here, not in a __main__: a worker's flow run must take its share too
    with ledger.nightly_lock(owner=f"prefect flow run {flow_run.id} (train)"):
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
        root = project_root()
        project = open_project(root, ledger_url=ledger_url(root))  # params read and validated once, here
    except (ParamsError, ProjectNotFound) as exc:
        raise SystemExit(str(exc)) from None
    try:
        print(train_flow(project)())
    finally:
        project.ledger.close()


if __name__ == "__main__":
    main()
