"""End to end: the `unlearn` flow on digits under a Prefect test harness, against a temporary MLflow store.
Asserts the record docs/metrics.md promises ('Parent run of `unlearn`', 'Per-method child run')."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from iau_core.config import METHOD_NAMES, load_params

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "device": "cpu",
    "data": {"dataset": "digits", "train_size": 500, "val_size": 200, "test_size": 300, "shadow_pool_size": 600},
    "training": {"lr": 0.002, "batch_size": 32, "max_epochs": 6, "patience": 3},
    "mia": {"num_shadow": 2, "epochs": 10},
    "lira": {"num_reference": 3},
    "tracking": {"experiment": "flow-test", "registered_model": "flow-test-base"},
}
METHOD_KEYS = {"test_acc", "retain_acc", "forget_acc", "mu_gap", "mia_forget_asr", "ue_gap", "unlearn_seconds",
               "mia_auc", "tpr_at_1pct_fpr", "shadow_auc", "lira_auc", "lira_tpr_at_1pct_fpr", "lira_auc_gap",
               "lira_auc_label_matched", "mu_gap_within_floor", "ue_gap_within_floor", "lira_auc_gap_within_floor"}
PARENT_KEYS = {"attack_strength", "attack_strength_auc", "lira_strength", "lira_strength_tpr_at_1pct_fpr",
               "floor_mu_gap", "floor_ue_gap", "floor_lira_auc_gap", "grad_norm_mean", "grad_norm_mean_alpha0"}
LINEAGE_TAGS = {"flow", "selection", "data_version", "forget_set_sha256", "git_commit", "prefect_flow_run_id",
                "base_model", "mlflow.source.name", "mlflow.source.type", "mlflow.user"}
VERDICT_KEYS = {f"verdict_{name}_{versus}" for name in ("diff", "ci_low", "ci_high")
                for versus in ("original", "retrain")}
SHIPPED = load_params(REPO / "params.yaml")
REFERENCES = {"original", "retrain", "retrain_alt"}
METHODS = REFERENCES | set(SHIPPED.unlearning.methods)  # the default list: every method but fisher
DATA_VERSION = yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]["md5"]


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=None):  # iau_core.runtime's 180 s, not the harness's 30
        yield


@pytest.fixture(scope="module")
def store(tmp_path_factory, harness):
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    yield db
    mp.undo()


@pytest.fixture(scope="module")
def two_runs(store):
    from flows.unlearn import unlearn

    first = unlearn(selection="random", overrides=SMALL, seeds=[0, 1])
    second = unlearn(selection="outliers", overrides={**SMALL, "unlearning": {"methods": list(METHOD_NAMES)}})
    return first, second


def children_of(client, parent):
    return client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")


@pytest.mark.slow
def test_flow_leaves_the_promised_record(two_runs):
    from mlflow import MlflowClient

    from iau_core.selection import forget_set_sha256

    client = MlflowClient()
    first, _ = two_runs
    parent = client.get_run(first["parent_run_id"])
    assert LINEAGE_TAGS <= set(parent.data.tags)
    assert parent.data.tags["selection"] == "random"
    assert parent.data.tags["data_version"] == DATA_VERSION
    assert parent.data.tags["base_model"].startswith("models:/flow-test-base/")
    assert PARENT_KEYS <= set(parent.data.metrics), PARENT_KEYS - set(parent.data.metrics)
    assert 0 <= parent.data.metrics["attack_strength"] <= 100 and 0 <= parent.data.metrics["lira_strength"] <= 1
    assert parent.data.metrics["seeds"] == 2
    assert parent.info.status == "FINISHED"
    # the experiment opens on its runs, and the data version is the run's dataset (DVC md5 as digest)
    assert client.get_experiment(parent.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert [d.dataset.digest for d in parent.inputs.dataset_inputs] == [DATA_VERSION]

    manifest = Path(client.download_artifacts(parent.info.run_id, "forget_set.csv")).read_text().split()
    assert manifest[0] == "seed,sample_id"
    by_seed: dict[int, list[int]] = {}
    for line in manifest[1:]:
        seed, sample_id = map(int, line.split(","))
        by_seed.setdefault(seed, []).append(sample_id)
    assert set(by_seed) == {0, 1} and by_seed[0] != by_seed[1]  # each seed draws its own random forget set
    assert all(len(ids) == round(0.05 * 500) for ids in by_seed.values())
    assert forget_set_sha256(by_seed[0]) == parent.data.tags["forget_set_sha256"]

    summary = Path(client.download_artifacts(parent.info.run_id, "comparison.csv")).read_text()
    assert summary.splitlines()[0].startswith("method,mu_gap_mean,mu_gap_std")
    markdown = Path(client.download_artifacts(parent.info.run_id, "comparison.md")).read_text()
    assert "±" in markdown and "noise floor" in markdown and "What the attacks see" in markdown
    plots = {f.path for f in client.list_artifacts(parent.info.run_id, "plots")}
    assert plots == {"plots/mu_vs_ue.png", "plots/grad_norms.png", "plots/lira_roc.png", "plots/verdicts.png"}
    # the verdicts as the runs list shows them: a table on the parent, a tag per method, a saved view of the columns
    assert "verdicts_table.json" in {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {f"verdict.{m}" for m in METHODS} <= set(parent.data.tags)
    assert "mlflow.sharedViewState.verdicts-random" in client.get_experiment(parent.info.experiment_id).tags
    from flows.unlearn import report

    printed = report(first)  # what `make run` prints last: the table, what the attacks see, how to browse
    assert "±" in printed and "LiRA AUC" in printed and printed.rstrip().splitlines()[-1].startswith(
        "Browse it: make mlflow-ui")

    children = children_of(client, parent)
    assert len(children) == 2 * len(METHODS)
    assert {(r.data.tags["method"], r.data.tags["seed"]) for r in children} == \
        {(m, s) for m in METHODS for s in ("0", "1")}
    for run in children:
        method = run.data.tags["method"]
        assert METHOD_KEYS <= set(run.data.metrics), (method, METHOD_KEYS - set(run.data.metrics))
        assert VERDICT_KEYS <= set(run.data.metrics), (method, VERDICT_KEYS - set(run.data.metrics))
        assert run.data.tags["verdict"] == parent.data.tags[f"verdict.{method}"]  # original and retrain too
        assert run.info.status == "FINISHED"
        outputs = client.get_run(run.info.run_id).outputs.model_outputs  # a LoggedModel: the runs list's Models
        assert client.get_logged_model(outputs[-1].model_id).name == f"{method}-seed{run.data.tags['seed']}"
        if method == "retrain":
            assert run.data.metrics["mu_gap"] == 0 and run.data.metrics["ue_gap"] == 0
        if method == "iau":  # its hyperparameters and the step its rule chose are on the run
            assert run.data.params["reduction"] == SHIPPED.unlearning.reduction
            assert float(run.data.params["eta_chosen"]) >= 0
            assert "eta_rule.reason" in run.data.params
            assert run.data.metrics["speedup_vs_retrain"] > 1 and "avg_rank" in run.data.metrics
        if method not in REFERENCES:  # every compared method is ranked, the references never
            assert "avg_rank" in run.data.metrics, method
        else:
            assert "avg_rank" not in run.data.metrics, method  # NaN for references, and NaN is never logged
        if method in ("retrain", "retrain_alt"):
            assert "training.gr_alpha" in run.data.params
        assert run.data.params, method  # every child shows its hyperparameters or choices in the UI
    # each method's run ends with its own work (Duration), before the next method's run starts
    ordered = sorted(children, key=lambda r: r.info.start_time)
    assert all(a.info.end_time <= b.info.start_time for a, b in zip(ordered, ordered[1:], strict=False))
    seeds_of = {r.data.tags["method"]: set() for r in children}
    for r in children:
        seeds_of[r.data.tags["method"]].add(r.data.params.get("seed"))
    assert len(seeds_of["retrain_alt"] - seeds_of["retrain"]) == 2  # another seed than the gold model's


@pytest.mark.slow
def test_the_flow_and_the_bare_recipe_compute_the_same_comparison(two_runs):
    """One loop (iau_core.recipe.run_recipe): the flow's steps record to MLflow and reload what they stored, the bare
    steps keep models in memory; every number but the seconds (and what is read off them) must agree."""
    import torch

    from iau_core.config import deep_merge
    from iau_core.data import load_bundle
    from iau_core.metrics import AVG_RANK, SPEEDUP, UNLEARN_SECONDS, summarize
    from iau_core.recipe import LocalSteps, run_recipe

    first, _ = two_runs
    params = load_params(REPO / "params.yaml", deep_merge(SMALL, {"selection": {"strategy": "random"},
                                                                   "seeds": [0, 1]}))
    local = run_recipe(params, LocalSteps(params, load_bundle(params.data, REPO / params.data.root),
                                          torch.device("cpu"), log=lambda line: None))
    bare = summarize([t.drop(columns="seed") for t in local.tables()])
    timed = {UNLEARN_SECONDS, SPEEDUP, AVG_RANK}
    flow = {row["method"]: row for row in first["summary"]}
    assert set(flow) == set(bare.index)
    # the flow adds the verdict columns (iau_core.verdicts); every number both have must agree
    compared = [c for c in next(iter(flow.values())) if c in bare.columns and c.rsplit("_", 1)[0] not in timed]
    assert {"verdict", "verdict_rank", "lira_auc_vs_original_lo"} <= set(next(iter(flow.values())))
    assert len(compared) > 20
    for method, row in flow.items():
        for column in compared:
            assert row[column] == pytest.approx(bare.loc[method, column], abs=1e-9, nan_ok=True), (method, column)


@pytest.mark.slow
def test_a_one_seed_run_judges_on_intervals_over_the_records(two_runs):
    """The default `make run` has one seed: its verdicts come from a paired bootstrap over D_f's and the held-out
    records, so the table has intervals and no "n/a (one seed)"; the two-seed run keeps its t-intervals."""
    first, second = two_runs
    one = {row["method"]: row for row in second["summary"] if row["method"] not in ("original", "retrain")}
    assert {row["verdict_basis"] for row in one.values()} == {"records"}
    assert "n/a (one seed)" not in {row["verdict"] for row in one.values()}
    iau = one["iau"]
    assert iau["lira_auc_vs_original_lo"] <= iau["lira_auc_vs_original"] <= iau["lira_auc_vs_original_hi"]
    two = [row for row in first["summary"] if row["method"] not in ("original", "retrain")]
    assert {row["verdict_basis"] for row in two} == {"seeds"}


@pytest.mark.slow
def test_every_method_leaves_its_nested_run_and_ia_gc_unlearns_the_model_without_gr(two_runs):
    from mlflow import MlflowClient

    client = MlflowClient()
    parent = client.get_run(two_runs[1]["parent_run_id"])
    children = {r.data.tags["method"]: r for r in children_of(client, parent)}
    assert set(children) == REFERENCES | set(METHOD_NAMES)
    for method, run in children.items():
        assert METHOD_KEYS <= set(run.data.metrics), (method, METHOD_KEYS - set(run.data.metrics))
        assert run.info.status == "FINISHED" and run.data.params, method
    no_gr = client.search_runs([parent.info.experiment_id], "tags.kind = 'base-no-gr' and tags.seed = '0'")
    assert children["ia_gc"].data.tags["base_model"] == no_gr[0].data.tags["model_uri"]
    assert children["iau"].data.tags["base_model"] == parent.data.tags["base_model"] != no_gr[0].data.tags[
        "model_uri"]
    assert children["scrub"].data.params["temperature"] == str(SHIPPED.unlearning.scrub.temperature)
    assert "stop_rule.reason" in children["finetune"].data.params


@pytest.mark.slow
def test_second_run_reuses_base_model_and_attack(two_runs):
    from mlflow import MlflowClient

    client = MlflowClient()
    first, second = two_runs
    p1, p2 = (client.get_run(r["parent_run_id"]) for r in two_runs)
    assert p2.data.tags["selection"] == "outliers"
    assert p1.data.tags["base_model"] == p2.data.tags["base_model"]  # seed 0's model, trained once
    experiment = p1.info.experiment_id
    assert len(client.search_runs([experiment], "tags.kind = 'base'")) == 2  # seeds 0 and 1
    assert len(client.search_runs([experiment], "tags.kind = 'reference-attack'")) == 1
    assert len(client.search_runs([experiment], "tags.kind = 'base-no-gr'")) == 2  # ia_gc's base, per seed
    assert len(client.search_model_versions("name = 'flow-test-base'")) == 2
    assert all(r.info.status == "FINISHED" for r in client.search_runs([experiment]))


@pytest.mark.slow
def test_changed_code_or_params_train_again(two_runs, monkeypatch):
    """The reuse key covers the params and the code of iau_core: change either and the model is trained anew."""
    from mlflow import MlflowClient
    from prefect import flow

    from iau_core.config import load_params
    from stores import tracking
    from stores.project import RunContext
    from tasks.training import base_model

    client = MlflowClient()
    parent = client.get_run(two_runs[0]["parent_run_id"])
    params = load_params(REPO / "params.yaml", {**SMALL, "selection": {"strategy": "random"}})
    ctx = RunContext(params, DATA_VERSION, parent.info.experiment_id)

    @flow(validate_parameters=False)
    def train_base(ctx):
        return base_model(ctx).run_id

    reused = train_base(ctx)
    assert client.get_run(reused).data.tags["kind"] == "base"  # seed 0's model from the flow, found again
    changed_params = train_base(RunContext(params.model_copy(update={"training": params.training.model_copy(
        update={"lr": 0.003})}), DATA_VERSION, parent.info.experiment_id))
    monkeypatch.setattr(tracking, "science_code_version", lambda *a, **k: "edited-code")
    changed_code = train_base(ctx)
    assert len({reused, changed_params, changed_code}) == 3


def test_bad_params_fail_before_any_work(store, harness):
    from flows.unlearn import unlearn
    from iau_core.config import ParamsError

    with pytest.raises(ParamsError, match="training.lr"):
        unlearn(selection="random", overrides={**SMALL, "training": {"lr": -1.0}})


def test_prefect_yaml_deploys_the_unlearn_flow():
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert {"outliers", "random"} <= set(deployments)
    for name in ("outliers", "random"):
        module_path, func = deployments[name]["entrypoint"].split(":")
        flow_obj = getattr(importlib.import_module(module_path.removesuffix(".py").replace("/", ".")), func)
        assert flow_obj.name == "unlearn"
        assert deployments[name]["parameters"]["selection"] == name


@pytest.mark.parametrize(("args", "named"), [(["--seeds", "1", "1"], "seeds"),
                                             (["--set", "training.lr=-1"], "training.lr"),
                                             (["--set", "lr"], "KEY=VALUE"),
                                             (["--selection", "class"], "strategy class needs `label`"),
                                             (["--set", "model.name=mlp", "--set", "data.dataset=digits_table",
                                               "--set", "training.augment.flip=true"], "training.augment")])
def test_the_command_line_refuses_bad_params_before_any_work(args, named):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "flows.unlearn", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and named in done.stderr
    assert "Beginning flow run" not in done.stderr + done.stdout


@pytest.mark.slow
def test_flow_on_digits_as_a_table_with_the_mlp(store, tmp_path_factory):
    """The tabular path end to end: digits as 64 features, the MLP, every record of one class forgotten. The
    table lives in its own data root (the repository's data.dvc stays as it is); the record is the same."""
    from mlflow import MlflowClient

    from flows.unlearn import unlearn
    from iau_core.sources import materialize, read_canonical

    root = tmp_path_factory.mktemp("tables")
    materialize("digits_table", root)
    table = {**SMALL, "data": {**SMALL["data"], "dataset": "digits_table", "root": str(root)},
             "model": {"name": "mlp", "hidden": [64, 32]}, "training": {**SMALL["training"], "max_epochs": 4},
             "selection": {"label": 3}, "tracking": {"experiment": "flow-table", "registered_model": "flow-table"}}
    result = unlearn(selection="class", overrides=table)

    client = MlflowClient()
    parent = client.get_run(result["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["selection"] == "class"
    assert parent.data.params["model.name"] == "mlp" and parent.data.params["model.hidden"] == "[64, 32]"
    assert parent.data.params["data.dataset.kind"] == "digits_table"
    assert [d.dataset.name for d in parent.inputs.dataset_inputs] == ["digits_table"]
    assert PARENT_KEYS <= set(parent.data.metrics)
    forgotten = [int(line.split(",")[1]) for line in Path(client.download_artifacts(
        parent.info.run_id, "forget_set.csv")).read_text().split()[1:]]
    _, records = read_canonical(root, "digits_table")
    assert set(records.set_index("sample_id").loc[forgotten, "label"]) == {3}  # the whole class, nothing else
    children = children_of(client, parent)
    assert {r.data.tags["method"] for r in children} == METHODS
    for run in children:
        assert METHOD_KEYS <= set(run.data.metrics) and run.info.status == "FINISHED"
        if run.data.tags["method"] == "retrain":  # retraining never sees the class: it cannot recognize it
            assert run.data.metrics["forget_acc"] == 0
