"""Given params, when validated, then bad input fails before any work with a message naming the key."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from iau_core.config import ParamsError, load_params, parse_params

REPO = Path(__file__).resolve().parents[1]


def test_repository_params_yaml_is_valid():
    params = load_params(REPO / "params.yaml")
    assert params.data.dataset == "fashion_mnist"
    assert params.unlearning.methods == ("iau",)


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"trainnig": {}}, "trainnig"),
        ({"training": {"lr": -0.1}}, "training.lr"),
        ({"training": {"lrr": 0.1}}, "training.lrr"),
        ({"data": {"dataset": "imagenet"}}, "data.dataset"),
        ({"selection": {"fraction": 0}}, "selection.fraction"),
        ({"selection": {"fraction": 1}}, "selection.fraction"),
        ({"selection": {"fraction": 1.5}}, "selection.fraction"),
        ({"selection": {"strategy": "loudest"}}, "selection.strategy"),
        ({"unlearning": {"methods": ["iau", "magic"]}}, "unlearning.methods"),
        ({"device": "tpu"}, "device"),
        ({"training": {"batch_size": "64"}}, "training.batch_size"),
        ({"unlearning": {"eta": {"outlier": 0.02}}}, "unlearning.eta"),
        ({"selection": {"strategy": "random"}, "unlearning": {"eta": {"outliers": 0.02}}}, "unlearning.eta"),
        ({"unlearning": {"eta": {"outliers": -0.1}}}, "unlearning.eta"),
    ],
)
def test_bad_params_fail_naming_the_key(raw, named):
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert named in str(err.value)


def test_overrides_are_validated_too(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    assert load_params(path, {"selection": {"strategy": "random"}}).selection.strategy == "random"
    with pytest.raises(ParamsError, match=r"selection\.strategy"):
        load_params(path, {"selection": {"strategy": "nope"}})


def test_the_run_s_selection_picks_its_eta(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    outliers = load_params(path, {"selection": {"strategy": "outliers"}}).unlearning.eta
    random = load_params(path, {"selection": {"strategy": "random"}}).unlearning.eta
    assert outliers != random
    assert load_params(path, {"unlearning": {"eta": 0.3}}).unlearning.eta == 0.3  # one number serves all


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(ParamsError, match="nowhere.yaml"):
        load_params(tmp_path / "nowhere.yaml")


def test_params_are_frozen():
    params = parse_params({})
    with pytest.raises(ValidationError):
        params.training.lr = 1.0  # type: ignore[misc]
