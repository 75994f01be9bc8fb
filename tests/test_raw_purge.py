"""The raw source forgets too (issue 30): `iau purge` names every raw file still holding a forgotten record, and
`iau purge --raw` rewrites a team's table without those rows (same format, the other rows as they were) and deletes
an image folder's forgotten files (and their manifest lines). Real files, a real SQLite ledger (the purge holds
its lock); the DVC and model purges are left out with --no-data --no-models, their own tests cover them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from iau_core.datasets.image_folder import image_files, path_id
from iau_core.sources import materialize

runner = CliRunner()
FORGOTTEN = [1003, 1017, 1250]
SHARES = {"train_size": 0.35, "val_size": 0.2, "test_size": 0.2, "shadow_pool_size": 0.25}


def make_project(root: Path, dataset: dict, forgotten: list[int]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump({"data": {"dataset": dataset, **SHARES},
                                                      "model": {"name": "mlp" if dataset["kind"] == "table"
                                                                else "lenet5"}}))
    (root / "data.dvc").write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  path: data\n")
    pd.DataFrame({"dataset": dataset["name"], "sample_id": forgotten, "note": "batch 1",
                  "forgotten_at": "2026-12-07T00:00:00+00:00"}).to_csv(root / "forgotten.csv", index=False)
    return root


def purge(root: Path, *args: str) -> dict:
    done = runner.invoke(app, ["--project", str(root), "--ledger-url", f"sqlite:///{root / 'ledger.db'}", "purge",
                               "--no-data", "--no-models", "--json", *args])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)["raw"]


def table(rows: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"customer": rng.permutation(rows) + 1000, "churned": rng.integers(0, 2, rows),
                         "spend": rng.normal(50, 20, rows).round(6), "visits": rng.integers(0, 30, rows)})


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_table_is_named_then_rewritten_without_the_forgotten_rows(tmp_path, suffix):
    source = tmp_path / "p" / "raw" / f"churn{suffix}"
    source.parent.mkdir(parents=True)
    original = table()
    original.to_csv(source, index=False) if suffix == ".csv" else original.to_parquet(source, index=False)
    root = make_project(tmp_path / "p", {"kind": "table", "name": "churn", "path": f"raw/churn{suffix}",
                                         "sample_id_column": "customer", "label_column": "churned"}, FORGOTTEN)
    before = source.read_bytes()

    named = purge(root)  # without --raw: named, untouched
    assert named["holders"] == {str(source): FORGOTTEN} and named["rewritten"] == []
    assert source.read_bytes() == before

    done = purge(root, "--raw")
    assert done["rewritten"] == [str(source)] and done["holders"] == {}
    after = pd.read_csv(source) if suffix == ".csv" else pd.read_parquet(source)
    assert not after["customer"].isin(FORGOTTEN).any() and len(after) == len(original) - len(FORGOTTEN)
    kept = original[~original["customer"].isin(FORGOTTEN)].reset_index(drop=True)
    pd.testing.assert_frame_equal(after, kept)  # same columns, types and values: only the rows are gone
    if suffix == ".csv":  # every other line exactly as it was
        assert source.read_text().splitlines() == [line for line in before.decode().splitlines()
                                                   if line.split(",")[0] not in {str(i) for i in FORGOTTEN}]
    assert not list(source.parent.glob(".*"))  # no temporary file left behind
    assert purge(root, "--raw")["rewritten"] == []  # idempotent


def png_folder(folder: Path, per_class: int = 3) -> list[str]:
    from PIL import Image

    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(folder / label / f"{i}.png")
    return image_files(folder)


def test_an_image_folder_loses_its_forgotten_files(tmp_path):
    folder = tmp_path / "p" / "raw" / "pets"
    files = png_folder(folder)
    gone = files[:2]
    root = make_project(tmp_path / "p", {"kind": "image_folder", "name": "pets", "path": "raw/pets"},
                        [path_id(p) for p in gone])
    assert set(purge(root)["holders"]) == {str(folder / p) for p in gone}
    assert all((folder / p).is_file() for p in gone)

    done = purge(root, "--raw")
    assert set(done["rewritten"]) == {str(folder / p) for p in gone} and done["holders"] == {}
    assert image_files(folder) == files[2:]


def test_a_manifest_loses_the_lines_of_the_deleted_files(tmp_path):
    folder = tmp_path / "p" / "raw" / "pets"
    files = png_folder(folder)
    manifest = tmp_path / "p" / "pets.csv"
    pd.DataFrame({"sample_id": range(500, 500 + len(files)), "path": files}).to_csv(manifest, index=False)
    root = make_project(tmp_path / "p", {"kind": "image_folder", "name": "pets", "path": "raw/pets",
                                         "ids": "manifest", "manifest": "pets.csv"}, [501, 504])
    assert set(purge(root)["holders"]) == {str(folder / files[1]), str(folder / files[4]), str(manifest)}
    purge(root, "--raw")
    assert image_files(folder) == [p for i, p in enumerate(files) if i not in (1, 4)]
    assert pd.read_csv(manifest)["sample_id"].tolist() == [500, 502, 503, 505]  # a rebuild still reads it


def test_data_ids_with_source_shows_each_ids_raw_row(tmp_path):
    source = tmp_path / "p" / "raw" / "churn.csv"
    source.parent.mkdir(parents=True)
    table(800).to_csv(source, index=False)  # every role at least 100 records
    dataset = {"kind": "table", "name": "churn", "path": "raw/churn.csv", "sample_id_column": "customer",
               "label_column": "churned"}
    root = make_project(tmp_path / "p", dataset, [])
    from iau_core.config import dataset_params

    materialize(dataset_params(dataset), root / "data", root)
    done = runner.invoke(app, ["--project", str(root), "data", "ids", "--with-source"])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    first_id, shown = lines[0].split("\t")
    row = pd.read_csv(source, dtype=str).set_index("customer").loc[first_id]
    assert shown == f"raw/churn.csv row: customer={first_id},churned={row['churned']},spend={row['spend']}," \
                    f"visits={row['visits']}"
    assert "not committed yet" in done.stderr or "data version" in done.stderr


def test_the_receipt_names_the_raw_files_that_still_held_the_record():
    """What `iau requests show` prints from the model purge's record of the raw source (cli/render.py)."""
    from cli.render import raw_lines

    raw = {"holders": {"raw/churn.csv": [1003, 1017], "raw/old\x1b[2J.csv": [1017]}, "notes": []}
    assert raw_lines(1003, raw) == ["  raw source:    still held by raw/churn.csv (`iau purge --raw` removes it)"]
    assert "raw/old\\x1b[2J.csv" in raw_lines(1017, raw)[0]  # a file name is escaped
    assert raw_lines(1250, raw) == ["  raw source:    no raw file holds it"]
    assert raw_lines(1003, None) == []  # a purge recorded before the raw source was checked says nothing
