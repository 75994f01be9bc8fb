"""stores.tracking against a real MLflow store (SQLite in a temporary folder, one per module: migrating a new
database costs seconds)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import mlflow.pytorch
import pytest
import torch
from mlflow import MlflowClient
from torch import nn

from iau_core.config import Params
from stores import tracking

DVC_MD5 = "6b1a1e6bd6c3e2ba0b8f2c3a5e3c2f11.dir"  # DVC's md5 of a folder: 32 hex digits + '.dir' = 36 chars


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    """A fresh SQLite store for this module; the previous tracking URI comes back afterwards (set_tracking_uri
    also sets MLFLOW_TRACKING_URI in the environment)."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    yield root
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def experiment_id(store: Path) -> str:
    return MlflowClient().create_experiment("tracking-tests", artifact_location=(store / "artifacts").as_uri())


def small_cnn(seed: int) -> nn.Module:
    """A LeNet-shaped stand-in (conv, pool, linear) that exports in a fraction of a second."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10))


def status(run_id: str) -> str:
    return MlflowClient().get_run(run_id).info.status


# ---- 1. a run is FINISHED only after everything is written


def test_log_model_leaves_the_run_running_and_the_model_loads_back(experiment_id: str):
    model, x = small_cnn(0), torch.randn(5, 1, 8, 8)
    with pytest.raises(RuntimeError, match="crash"):
        with tracking.run(experiment_id, "crash-after-log-model", {"kind": "test"}) as run_id:
            uri = tracking.log_model(run_id, model, x[:2])
            assert status(run_id) == "RUNNING"
            model_id = tracking.logged_model_id(run_id)
            assert uri == f"models:/{model_id}"
            loaded = mlflow.pytorch.load_model(uri)
            with torch.no_grad():  # a batch of 5 after an example of 2: the batch dimension stayed dynamic
                torch.testing.assert_close(loaded(x), model(x))
            state = tracking.load_state_dict(run_id)  # what the pipeline reloads: exact
            assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
            raise RuntimeError("crash before the model_uri tag")
    assert status(run_id) == "FAILED"  # never a FINISHED run without its model_uri
    assert {f.path for f in MlflowClient().list_artifacts(run_id)} == {"state_dict.pt"}


def test_the_model_is_a_logged_model_of_the_run(experiment_id: str):
    """What the UI's Logged models, the experiment's Models tab and the runs list's Models column read."""
    client = MlflowClient()
    with tracking.run(experiment_id, "logged", {"kind": "test"}) as run_id:
        tracking.log_model(run_id, small_cnn(0), torch.randn(2, 1, 8, 8))
    model_id = tracking.logged_model_id(run_id)
    assert [o.model_id for o in client.get_run(run_id).outputs.model_outputs] == [model_id]
    logged = client.get_logged_model(model_id)
    assert logged.source_run_id == run_id and logged.experiment_id == experiment_id
    assert logged.name == "logged" and str(logged.status) in ("READY", "LoggedModelStatus.READY")  # named after its run
    assert model_id in {m.model_id for m in client.search_logged_models([experiment_id])}
    files = set(os.listdir(Path(logged.artifact_location.removeprefix("file://"))))
    assert {"MLmodel", "input_example.json", "requirements.txt"} <= files
    assert status(run_id) == "FINISHED"


def test_log_model_pins_torch_instead_of_inferring(experiment_id: str):
    with tracking.run(experiment_id, "requirements", {"kind": "test"}) as run_id:
        tracking.log_model(run_id, small_cnn(0), torch.randn(2, 1, 8, 8))
    location = MlflowClient().get_logged_model(tracking.logged_model_id(run_id)).artifact_location
    pins = set((Path(location.removeprefix("file://")) / "requirements.txt").read_text().splitlines())
    # MLflow adds itself to the list it is given
    assert pins == {f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"}
    assert status(run_id) == "FINISHED"


def test_registered_versions_count_up_load_their_own_weights_and_say_what_they_are(experiment_id: str):
    x = torch.randn(3, 1, 8, 8)
    uris, models = [], [small_cnn(1), small_cnn(2)]
    for i, model in enumerate(models):
        run_id = tracking.start_run(experiment_id, "registered", {"kind": "test"})
        uris.append(tracking.log_model(run_id, model, x[:2], registered_name="tracking-test-model",
                                       description=f"test: model {i} (run {run_id})"))
        assert status(run_id) == "RUNNING"
        tracking.finish(run_id)
        version = MlflowClient().get_model_version("tracking-test-model", str(i + 1))
        assert version.description == f"test: model {i} (run {run_id})"
        assert version.source == f"models:/{tracking.logged_model_id(run_id)}" and version.run_id == run_id
    assert uris == ["models:/tracking-test-model/1", "models:/tracking-test-model/2"]
    with torch.no_grad():
        for uri, model in zip(uris, models, strict=True):
            torch.testing.assert_close(mlflow.pytorch.load_model(uri)(x), model(x))


# ---- 2. the reuse key includes the science code version


def copy_of_science(tmp_path: Path) -> Path:
    copy = tmp_path / "iau_core"
    shutil.copytree(tracking.SCIENCE_PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_code_version_follows_python_files_only(tmp_path: Path):
    copy = copy_of_science(tmp_path)
    original = tracking.science_code_version()
    assert tracking.science_code_version(copy) == original  # relative paths: the location does not count
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "stale.py").write_text("x = 1\n")
    (copy / "NOTES.md").write_text("not code\n")
    assert tracking.science_code_version(copy) == original
    with (copy / "metrics.py").open("a") as f:
        f.write("\n# an edit\n")
    assert tracking.science_code_version(copy) != original


def test_code_version_sees_a_renamed_file(tmp_path: Path):
    copy = copy_of_science(tmp_path)
    (copy / "metrics.py").rename(copy / "metrics2.py")
    assert tracking.science_code_version(copy) != tracking.science_code_version()


def test_cache_key_changes_with_params_and_code(tmp_path: Path):
    params = Params()  # the defaults: only the differences below matter
    sections = ("data", "model", "training")
    key = tracking.cache_key("base", DVC_MD5, params, sections)
    assert tracking.cache_key("base", DVC_MD5, params, sections) == key
    assert tracking.cache_key("base", DVC_MD5, params, sections,
                              code_version=tracking.science_code_version()) == key  # the default

    lr = params.model_copy(update={"training": params.training.model_copy(update={"lr": 0.01})})
    assert tracking.cache_key("base", DVC_MD5, lr, sections) != key
    mia = params.model_copy(update={"mia": params.mia.model_copy(update={"epochs": 7})})
    assert tracking.cache_key("base", DVC_MD5, mia, sections) == key  # a section that does not shape it
    assert tracking.cache_key("base", "0" * 32 + ".dir", params, sections) != key

    copy = copy_of_science(tmp_path)
    with (copy / "training.py").open("a") as f:
        f.write("\n# a change to the science\n")
    edited = tracking.science_code_version(copy)
    assert tracking.cache_key("base", DVC_MD5, params, sections, code_version=edited) != key


# ---- 3. the experiment opens on its runs


def test_configure_tags_new_and_old_experiments(store: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow.get_tracking_uri())
    client = MlflowClient()

    new = tracking.configure(store, "configure-new")
    assert client.get_experiment(new).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"

    old = client.create_experiment("configure-old")  # as an earlier version of configure made it
    assert tracking.EXPERIMENT_KIND_TAG not in client.get_experiment(old).tags
    assert tracking.configure(store, "configure-old") == old
    assert client.get_experiment(old).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"

    genai = client.create_experiment("configure-genai", tags={tracking.EXPERIMENT_KIND_TAG: "genai_development"})
    tracking.configure(store, "configure-genai")
    assert client.get_experiment(genai).tags[tracking.EXPERIMENT_KIND_TAG] == "genai_development"


# ---- 4. the data version is a dataset input


def test_data_version_is_a_dataset_input_with_the_full_md5(experiment_id: str):
    run_id = tracking.start_run(experiment_id, "data", {"kind": "test"})
    tracking.log_data_version(run_id, "fashion_mnist", DVC_MD5, "/repo/data.dvc")
    inputs = MlflowClient().get_run(run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    dataset = inputs[0].dataset
    assert dataset.digest == DVC_MD5  # 36 characters: stored whole
    assert dataset.name == "fashion_mnist"
    assert json.loads(dataset.source) == {"uri": "/repo/data.dvc"}
    assert {(t.key, t.value) for t in inputs[0].tags} == {("mlflow.data.context", "train")}


def test_data_version_longer_than_mlflow_allows_is_refused_by_us(experiment_id: str):
    from mlflow.utils.validation import MAX_DATASET_DIGEST_SIZE

    assert tracking.MAX_DATASET_DIGEST_SIZE == MAX_DATASET_DIGEST_SIZE  # the installed MLflow's limit
    run_id = tracking.start_run(experiment_id, "data-too-long", {"kind": "test"})
    with pytest.raises(ValueError, match="36"):
        tracking.log_data_version(run_id, "fashion_mnist", DVC_MD5 + "x", "data.dvc")


# ---- 5. MLflow's own source tags


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "flows").mkdir(parents=True)
    (repo / "flows" / "unlearn.py").write_text("print('flow')\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    git(repo, "checkout", "-q", "-b", "feature")
    return repo


def test_source_tags_of_a_git_repository(git_repo: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys, "argv", [str(git_repo / "flows" / "unlearn.py")])
    (git_repo / "flows" / "unlearn.py").write_text("print('edited')\n")  # dirty: the sha stays plain
    sha = git(git_repo, "rev-parse", "HEAD")
    tags = tracking.source_tags(git_repo)
    assert tags == {
        "mlflow.source.git.commit": sha,
        "mlflow.source.git.branch": "feature",
        "mlflow.source.name": "flows/unlearn.py",
        "mlflow.source.type": "LOCAL",
        "mlflow.user": tracking._user(),
    }
    assert tracking.git_commit(git_repo) == sha + "-dirty"  # our own tag still says so


def test_source_tags_without_git_or_branch(git_repo: Path, tmp_path: Path):
    plain = tmp_path / "plain"
    plain.mkdir()
    tags = tracking.source_tags(plain, source_name="flows/unlearn.py")
    assert "mlflow.source.git.commit" not in tags and "mlflow.source.git.branch" not in tags
    assert tags["mlflow.source.name"] == "flows/unlearn.py"

    git(git_repo, "checkout", "-q", "--detach")
    tags = tracking.source_tags(git_repo)
    assert tags["mlflow.source.git.commit"] == git(git_repo, "rev-parse", "HEAD")
    assert "mlflow.source.git.branch" not in tags


def test_runs_carry_source_tags(experiment_id: str, git_repo: Path):
    sha = git(git_repo, "rev-parse", "HEAD")
    run_id = tracking.start_run(experiment_id, "sourced", {"kind": "test", "mlflow.source.name": "mine.py"},
                                repo_root=git_repo)
    tags = MlflowClient().get_run(run_id).data.tags
    assert tags["mlflow.source.git.commit"] == sha
    assert tags["mlflow.source.git.branch"] == "feature"
    assert tags["mlflow.source.name"] == "mine.py"  # the caller's tag wins
    assert tags["kind"] == "test"

    with tracking.run(experiment_id, "default-root", {"kind": "test"}) as default_run:
        pass
    tags = MlflowClient().get_run(default_run).data.tags
    assert tags["mlflow.source.git.commit"] == git(Path.cwd(), "rev-parse", "HEAD")  # default: the cwd
    assert tags["mlflow.source.type"] == "LOCAL"
    assert status(default_run) == "FINISHED"


def test_the_comparison_answer_is_the_parent_description_and_each_child_gets_a_line(experiment_id: str):
    client = MlflowClient()
    parent = tracking.start_run(experiment_id, "unlearn-random", {"kind": "test"})
    child = tracking.start_run(experiment_id, "iau", {"kind": "test"}, parent)
    long_table = "**Best method within every noise floor: iau**\n" + "| row |\n" * 2000  # beyond MLflow's 8000
    tracking.describe_comparison(parent, long_table, {"best_method": "iau", "verdict.iau": "forgets"},
                                 {"methods_forgetting": 1.0},
                                 {child: ("**iau**, seed 0: forgets", {"verdict": "forgets"})})
    got = client.get_run(parent).data
    assert got.tags[tracking.NOTE].startswith("**Best method") and len(got.tags[tracking.NOTE]) <= 8000
    assert got.tags[tracking.NOTE].endswith("(cut: see comparison.md)")
    assert got.tags["best_method"] == "iau" and got.metrics["methods_forgetting"] == 1.0
    kid = client.get_run(child).data.tags
    assert kid[tracking.NOTE] == "**iau**, seed 0: forgets" and kid["verdict"] == "forgets"
