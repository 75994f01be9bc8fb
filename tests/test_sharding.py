"""SISA (iau_core/sharding.py, iau_core/unlearning/sisa.py) on digits: S = R = 1 is today's training bit for bit;
shards and slices follow record ids; the ensemble is one module whose state loads with weights_only; and `sisa`
builds its model only from checkpoints and training runs that never held a forgotten record: it equals training
from scratch on the retained records, and the shards it did not touch keep their weights bit for bit."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from iau_core.models import ShardEnsemble, member_builder, model_builder, shard_seed
from iau_core.recipe import methods_to_run, train_original
from iau_core.sharding import (
    assign,
    checkpoints_from_payloads,
    checkpoints_of,
    ids_digest,
    members_of,
    slice_positions,
    train_fresh,
)
from iau_core.training import train_model
from iau_core.unlearning import UnlearningTask, run_method

CPU = torch.device("cpu")
FAST = {"max_epochs": 2, "patience": 2}  # two epochs a slice: the properties here hold for any schedule


def sharded(params, shards: int, slices: int):
    return params.model_copy(update={"training": params.training.model_copy(
        update={**FAST, "shards": shards, "slices": slices})})


def equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def sharded_model(digits_params, digits_bundle):
    """(params, model) of a 3-shard, 2-slice ensemble trained on digits' D, checkpoints attached."""
    params = sharded(digits_params, 3, 2)
    model, report = train_original(params, digits_bundle, CPU)
    assert report.epochs_run > 0
    return params, model


def test_one_shard_one_slice_is_todays_training_bit_for_bit(digits_params, digits_bundle):
    params = sharded(digits_params, 1, 1)
    model, _ = train_original(params, digits_bundle, CPU)
    today = member_builder(params, digits_bundle)(params.seed)  # what train_original did before sharding
    train_model(today, digits_bundle.train, digits_bundle.val, params.training, CPU, params.seed)
    assert type(model) is type(today) and not isinstance(model, ShardEnsemble)
    assert equal_states(model.state_dict(), today.state_dict())
    assert model_builder(params, digits_bundle) is not None and methods_to_run(params) == methods_to_run(digits_params)


def test_shards_and_slices_follow_each_id_alone():
    ids = np.arange(5_000, dtype=np.int64) * 7 + 3
    shard, part = assign(ids, 4, 3)
    more = np.concatenate([ids, np.arange(10**9, 10**9 + 2_000)])  # records added later
    shard_more, part_more = assign(more[::-1], 4, 3)
    assert np.array_equal(shard_more[::-1][: len(ids)], shard) and np.array_equal(part_more[::-1][: len(ids)], part)
    counts = np.bincount(shard, minlength=4)
    assert counts.min() > 0.2 * len(ids)  # about a quarter each
    assert abs(np.corrcoef(shard, part)[0, 1]) < 0.05  # the slice does not follow the shard
    positions = slice_positions(ids, 4, 3)
    assert sorted(np.concatenate([p for per_shard in positions for p in per_shard]).tolist()) == list(range(len(ids)))


def test_the_ensemble_averages_probabilities_and_its_state_loads_with_weights_only(sharded_model, digits_bundle):
    params, model = sharded_model
    assert isinstance(model, ShardEnsemble) and len(model.members) == 3
    x = digits_bundle.test.x[:16]
    with torch.no_grad():
        probs = torch.stack([torch.softmax(m(x), 1) for m in model.members]).mean(0)
        assert torch.allclose(model(x).exp(), probs, atol=1e-6)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = model_builder(params, digits_bundle)(params.seed + 1)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_checkpoints_round_trip_through_weights_only_files(sharded_model):
    _, model = sharded_model
    checkpoints = checkpoints_of(model)
    assert checkpoints is not None and len(checkpoints.shards) == 3 and checkpoints.slices == 2
    loaded = []
    for s in range(3):
        buffer = io.BytesIO()
        torch.save(checkpoints.payload(s), buffer)
        buffer.seek(0)
        loaded.append(torch.load(buffer, weights_only=True))
    again = checkpoints_from_payloads(loaded[::-1])
    for a, b in zip(again.shards, checkpoints.shards, strict=True):
        assert a.digests == b.digests and equal_states(a.initial, b.initial)
        assert all(equal_states(x, y) for x, y in zip(a.after_slice, b.after_slice, strict=True))
    for member, history in zip(members_of(model), checkpoints.shards, strict=True):
        assert equal_states(member.state_dict(), history.after_slice[-1])


def sisa_task(params, bundle, model, forget_ids):
    forget, retain = bundle.train.partition(np.asarray(forget_ids))
    return UnlearningTask(model=model, retain=retain, forget=forget, val=bundle.val,
                          build_model=model_builder(params, bundle), training=params.training,
                          unlearning=params.unlearning, device=CPU, seed=params.seed, shards=checkpoints_of(model))


def test_sisa_retrains_only_the_shard_that_held_the_record_and_equals_training_from_scratch(sharded_model,
                                                                                            digits_bundle):
    params, model = sharded_model
    ids = digits_bundle.train.ids.numpy()
    shard, part = assign(ids, 3, 2)
    forgotten = ids[(shard == 1) & (part == 1)][:3]  # three records of shard 1's last slice
    before = {s: {k: v.clone() for k, v in m.state_dict().items()} for s, m in enumerate(model.members)}
    run = run_method("sisa", sisa_task(params, digits_bundle, model, forgotten))
    assert run.choices["exact"] is True
    assert (run.choices["shards_retrained"], run.choices["slices_retrained"]) == (1, 1)
    assert run.choices["retrained_shards"] == "1"
    for s in (0, 2):  # untouched: bit for bit the deployed shards
        assert equal_states(run.model.members[s].state_dict(), before[s])
    assert not equal_states(run.model.members[1].state_dict(), before[1])
    # the deployed model is left as it was
    assert all(equal_states(m.state_dict(), before[s]) for s, m in enumerate(model.members))
    # exact: the model training from scratch on D_r with the same seed would give, weight for weight
    _, retain = digits_bundle.train.partition(forgotten)
    scratch, _ = train_fresh(model_builder(params, digits_bundle)(params.seed), retain, digits_bundle.val,
                             params.training, CPU, params.seed)
    assert equal_states(run.model.state_dict(), scratch.state_dict())
    # no checkpoint the new model carries (or was built from) was trained on a slice holding a forgotten record
    retained_positions = slice_positions(retain.ids, 3, 2)
    for s, history in enumerate(checkpoints_of(run.model).shards):
        for k, digest in enumerate(history.digests):
            assert digest == ids_digest(retain.ids[retained_positions[s][k]])
        assert equal_states(history.initial, checkpoints_of(model).shards[s].initial)


def test_sisa_restarts_from_the_first_changed_slice_and_counts_records_an_earlier_batch_removed(sharded_model,
                                                                                               digits_bundle):
    """A record of shard 0's first slice: both of its slices retrain. A record of shard 2 missing from D_r but not
    in this batch (an earlier approximate batch forgot it) makes shard 2 retrain as well."""
    params, model = sharded_model
    ids = digits_bundle.train.ids.numpy()
    shard, part = assign(ids, 3, 2)
    forgotten = ids[(shard == 0) & (part == 0)][:1]
    earlier = ids[(shard == 2) & (part == 1)][:1]
    task = sisa_task(params, digits_bundle, model, np.concatenate([forgotten, earlier]))
    task = UnlearningTask(**{**task.__dict__, "forget": digits_bundle.train.partition(forgotten)[0]})
    run = run_method("sisa", task)
    assert run.choices["retrained_shards"] == "0,2" and run.choices["slices_retrained"] == 2 + 1
    assert equal_states(run.model.members[1].state_dict(), model.members[1].state_dict())


def test_sisa_without_checkpoints_retrains_every_shard_and_on_one_network_is_retrain(digits_params, digits_bundle,
                                                                                     trained):
    model, forget, retain = trained
    params = digits_params.model_copy(update={"training": digits_params.training.model_copy(update=FAST)})
    task = UnlearningTask(model=model, retain=retain, forget=forget, val=digits_bundle.val,
                          build_model=model_builder(params, digits_bundle), training=params.training,
                          unlearning=params.unlearning, device=CPU, seed=params.seed)
    exact, gold = run_method("sisa", task), run_method("retrain", task)
    assert exact.choices["shards_retrained"] == 1 and exact.choices["exact"] is True
    assert equal_states(exact.model.state_dict(), gold.model.state_dict())


def test_a_sharded_run_compares_sisa_beside_the_other_methods(digits_params):
    assert "sisa" not in methods_to_run(digits_params)
    assert methods_to_run(sharded(digits_params, 4, 1))[-1] == "sisa"
    assert shard_seed(7, 0) == 7  # shard 0 keeps the run's seed


# --- the flows' side: one Prefect task per shard, the checkpoints on the model's MLflow run ---------------------


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=None):  # iau_core.runtime's 180 s, not the harness's 30
        yield


@pytest.fixture
def store(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    yield mlflow.MlflowClient().create_experiment("sharding", artifact_location=(tmp_path / "art").as_uri())


def test_shards_train_as_prefect_tasks_and_their_checkpoints_come_back_from_the_run(harness, store, monkeypatch,
                                                                                   digits_params, digits_bundle):
    from prefect import flow
    from prefect.context import TaskRunContext

    import tasks.training as training_tasks
    from stores import artifacts, tracking
    from stores.artifacts import ModelRef, load_base_model, load_checkpoints, log_checkpoints
    from stores.project import RunContext

    monkeypatch.setattr(RunContext, "bundle", lambda self: digits_bundle)
    params = sharded(digits_params, 2, 2)
    ctx = RunContext(params, "test-version", store)
    ran_in = []
    plain = training_tasks.train_shard

    def recorded(*args, **kwargs):
        ran_in.append(TaskRunContext.get().task_run.name)
        return plain(*args, **kwargs)

    monkeypatch.setattr(training_tasks, "train_shard", recorded)

    @flow
    def train_here():
        return training_tasks.train_deployed(ctx, lambda line: None)

    model, report = train_here()
    assert sorted(ran_in) == ["shard-0-seed0", "shard-1-seed0"]
    sequential, _ = train_original(params, digits_bundle, CPU)
    assert equal_states(model.state_dict(), sequential.state_dict()) and report.epochs_run > 0

    with tracking.run(store, "sharded", {}) as run_id:
        log_checkpoints(run_id, checkpoints_of(model))
        tracking.log_state_dict(run_id, model)
    assert load_checkpoints(run_id) is not None
    artifacts.clear()
    loaded = load_base_model(ctx, ModelRef(run_id, ""))
    assert equal_states(loaded.state_dict(), model.state_dict())
    for a, b in zip(checkpoints_of(loaded).shards, checkpoints_of(model).shards, strict=True):
        assert a.digests == b.digests and all(equal_states(x, y) for x, y in zip(a.after_slice, b.after_slice,
                                                                                 strict=True))
    with tracking.run(store, "single", {}) as plain_run:
        tracking.log_state_dict(plain_run, model)
    assert load_checkpoints(plain_run) is None
    artifacts.clear()


# --- a champion's layout is its own (stores/champion.py), whatever params.yaml says ------------------------------


def test_a_champions_layout_comes_from_its_weights_and_checkpoints_not_from_params(sharded_model, digits_params):
    """The nightly takes S from the weights (members.<s>.*) and R from the checkpoints; params.yaml's layout only
    replaces ctx's for the batch, with a line naming both."""
    from stores import registry
    from stores.champion import Champion, champion_context, layout_of, shards_in
    from stores.project import RunContext

    params, model = sharded_model  # 3 shards x 2 slices
    assert shards_in(model.state_dict()) == 3 and layout_of(model) == (3, 2)
    assert shards_in(model.members[0].state_dict()) == 1  # one network: no members.<s> prefix
    champion = Champion(registry.Version("m", "7", "run", {}), model, "dv0", "attack-run")
    ctx, note = champion_context(RunContext(digits_params, "dv0", "exp"), champion)
    assert (ctx.params.training.shards, ctx.params.training.slices) == (3, 2)
    assert ctx.params.training.max_epochs == digits_params.training.max_epochs  # only the layout changes
    assert "3 shard(s) x 2 slice(s), params.yaml says training.shards=1, training.slices=1" in note
    same, none = champion_context(RunContext(params, "dv0", "exp"), champion)
    assert none is None and same.params is params


# --- the wall time of shard training through Prefect's task runner (studies/shards.py --dask-workers) -----------


@pytest.mark.slow
def test_the_wall_time_part_trains_the_same_model_on_1_and_2_dask_workers(tmp_path):
    """studies.shards --wall-times-only at test size: the 4-shard model trained by a flow on threads, then on a real
    LocalCluster of 1 and of 2 workers; every row is in the JSON and the table, and the worker count does not change
    the weights (single-threaded workers, the same seeds and initial weights)."""
    import json
    import shutil
    from pathlib import Path

    from studies.shards import main

    shutil.copy(Path(__file__).resolve().parents[1] / "params.yaml", tmp_path / "params.yaml")
    tiny = {"data.dataset": "digits", "data.train_size": 400, "data.val_size": 200, "data.test_size": 300,
            "data.shadow_pool_size": 600, "training.max_epochs": 1, "training.patience": 1, "device": "cpu"}
    out = tmp_path / "shards"
    sets = [arg for key, value in tiny.items() for arg in ("--set", f"{key}={value}")]
    assert main(["--params", str(tmp_path / "params.yaml"), "--wall-times-only", "--dask-workers", "1,2",
                 "--dask-shards", "4", "--out", str(out), *sets]) == 0
    parallel = json.loads(out.with_suffix(".json").read_text())["parallel"]
    runs = parallel["runs"]
    assert [(r["execution"], r["workers"]) for r in runs] == [("local", None), ("dask", 1), ("dask", 2)]
    assert parallel["shards"] == 4 and parallel["train_size"] == 400
    assert all(r["shard_slice_epochs"] == 4 and r["train_seconds"] > 0 for r in runs)  # 4 shards x 1 epoch
    assert runs[1]["weights_sha256"] == runs[2]["weights_sha256"]
    assert all(r["cluster_start_seconds"] > 0 for r in runs[1:])  # a cluster was started for each
    table = out.with_suffix(".md").read_text()
    assert "| dask | 2 |" in table and "| local | - |" in table and "bit for bit: True" in table
