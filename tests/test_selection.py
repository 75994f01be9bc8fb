"""Forget-set strategies."""

import numpy as np
import pytest
import torch

from iau_core.config import SelectionParams
from iau_core.data import Split
from iau_core.selection import forget_set_sha256, select_forget_set


def test_isolation_forest_finds_planted_outliers(digits_bundle):
    """Digits plus 10 planted noise images: the outlier strategy must flag (nearly) all of them."""
    train = digits_bundle.train
    gen = torch.Generator().manual_seed(0)
    noise = torch.rand((10, *train.x.shape[1:]), generator=gen)
    planted_ids = torch.arange(10_000, 10_010)
    mixed = Split(torch.cat([train.x, noise]), torch.cat([train.y, torch.zeros(10, dtype=torch.long)]),
                  torch.cat([train.ids, planted_ids]))
    ids = select_forget_set(mixed, SelectionParams(strategy="outliers", contamination=0.02), seed=0)
    found = np.isin(planted_ids.numpy(), ids).sum()
    assert found >= 9, f"found {found} of 10 planted outliers among {len(ids)} flagged"


def test_random_selection_size_and_determinism(digits_bundle):
    params = SelectionParams(strategy="random", fraction=0.1)
    a = select_forget_set(digits_bundle.train, params, seed=3)
    b = select_forget_set(digits_bundle.train, params, seed=3)
    assert len(a) == round(0.1 * len(digits_bundle.train))
    assert np.array_equal(a, b) and np.all(np.diff(a) > 0)
    assert np.isin(a, digits_bundle.train.ids.numpy()).all()
    other = select_forget_set(digits_bundle.train, params, seed=4)  # another repeat draws another set
    assert not np.array_equal(a, other)


def test_forget_set_hash_ignores_order():
    assert forget_set_sha256(np.array([3, 1, 2])) == forget_set_sha256(np.array([1, 2, 3]))
    assert forget_set_sha256(np.array([1, 2])) != forget_set_sha256(np.array([1, 2, 3]))


def test_partition_splits_d_into_forget_and_retain(digits_bundle):
    ids = select_forget_set(digits_bundle.train, SelectionParams(strategy="random", fraction=0.2), seed=0)
    forget, retain = digits_bundle.train.partition(ids)
    assert len(forget) + len(retain) == len(digits_bundle.train)
    assert set(forget.ids.tolist()) == set(ids.tolist())
    assert not set(forget.ids.tolist()) & set(retain.ids.tolist())


def test_roles_are_disjoint(digits_bundle):
    roles = [digits_bundle.train, digits_bundle.val, digits_bundle.test, digits_bundle.shadow_pool]
    seen: set[int] = set()
    for split in roles:
        ids = set(split.ids.tolist())
        assert not ids & seen
        seen |= ids


def test_too_large_sizes_are_refused(digits_root):
    from iau_core.config import DataParams
    from iau_core.data import load_bundle

    with pytest.raises(ValueError, match="train_size"):
        load_bundle(DataParams(dataset="digits", train_size=5000), root=digits_root)


def test_class_strategy_forgets_every_record_of_one_label(digits_bundle):
    train = digits_bundle.train
    ids = select_forget_set(train, SelectionParams(strategy="class", label=3), seed=0)
    expected = train.ids[train.y == 3].numpy()
    assert len(ids) == len(expected) > 0 and np.array_equal(ids, np.sort(expected))
    forget, retain = train.partition(ids)
    assert set(forget.y.tolist()) == {3} and 3 not in set(retain.y.tolist())
    with pytest.raises(ValueError, match=r"selection.label 42 has no record in D; D's labels are \[0, 1, "):
        select_forget_set(train, SelectionParams(strategy="class", label=42), seed=0)


def test_ids_strategy_takes_a_list_or_a_file(digits_bundle, tmp_path, monkeypatch):
    train_ids = digits_bundle.train.ids.numpy()
    chosen = [int(i) for i in train_ids[[5, 1, 9]]]
    from_list = select_forget_set(digits_bundle.train, SelectionParams(strategy="ids", ids=tuple(chosen)), seed=0)
    assert from_list.tolist() == sorted(chosen)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "request.txt").write_text("\n".join(map(str, chosen)) + "\n")
    (tmp_path / "manifest.csv").write_text("seed,sample_id\n" + "".join(f"0,{i}\n" for i in chosen))
    for file in ("request.txt", "manifest.csv"):  # a plain list, or a forget-set manifest from an earlier run
        params = SelectionParams(strategy="ids", ids_file=file)
        assert select_forget_set(digits_bundle.train, params, seed=0).tolist() == sorted(chosen)


def test_bad_ids_are_refused_with_the_ids_named(digits_bundle, tmp_path):
    train = digits_bundle.train
    not_in_d = int(digits_bundle.test.ids[0])
    with pytest.raises(ValueError, match=rf"1 of 2 requested sample ids are not in D .*\[{not_in_d}\]"):
        select_forget_set(train, SelectionParams(strategy="ids", ids=(int(train.ids[0]), not_in_d)), seed=0)
    with pytest.raises(ValueError, match=r"listed more than once: \[.+\]"):
        select_forget_set(train, SelectionParams(strategy="ids", ids=(int(train.ids[0]),) * 2), seed=0)
    with pytest.raises(ValueError, match=r"nowhere.txt: cannot read it"):
        select_forget_set(train, SelectionParams(strategy="ids", ids_file=str(tmp_path / "nowhere.txt")), seed=0)
    (tmp_path / "bad.txt").write_text("12\nseven\n")
    with pytest.raises(ValueError, match=r"line 2: not an integer$"):
        select_forget_set(train, SelectionParams(strategy="ids", ids_file=str(tmp_path / "bad.txt")), seed=0)
    everything = tuple(int(i) for i in train.ids)
    with pytest.raises(ValueError, match="leave records to retain"):
        select_forget_set(train, SelectionParams(strategy="ids", ids=everything), seed=0)
