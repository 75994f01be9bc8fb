"""A folder of images, one subfolder per class (torchvision's ImageFolder layout), with stable sample ids."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from iau_core.config import ImageFolderParams
from iau_core.datasets.base import (
    CanonicalDataError,
    DatasetSourceMissing,
    RawDataset,
    checked_sample_ids,
    records_frame,
)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
FILES_CSV = "files.csv"  # written beside records.csv: which file each sample_id is


def path_id(relative: str) -> int:
    """A stable id from a file's path under the folder: the first 63 bits of its sha256. Adding or removing
    other files never changes it; renaming the file does."""
    return int.from_bytes(hashlib.sha256(relative.encode()).digest()[:8], "big") >> 1


def image_files(folder: Path) -> list[str]:
    """Relative posix paths of every image below a class subfolder, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and len(p.relative_to(folder).parts) > 1)


def load_image(path: Path, channels: int, size: int) -> np.ndarray:
    """(C, size, size) uint8: converted to grey or RGB, resized bilinearly."""
    from PIL import Image

    with Image.open(path) as img:
        pixels = np.asarray(img.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BILINEAR))
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def read_image_folder(params: ImageFolderParams, base_dir: Path) -> RawDataset:
    folder = base_dir / params.path
    if not folder.is_dir():
        raise DatasetSourceMissing(f"image folder {folder} not found (data.dataset.path is relative to params.yaml)")
    found = image_files(folder)
    if not found:
        raise CanonicalDataError(f"{folder}: no images in class subfolders (expected {folder}/<class>/<image>)")
    if params.ids == "manifest":
        listed = read_manifest(base_dir / params.manifest, folder, found)
    else:
        listed = pd.DataFrame({"sample_id": [path_id(p) for p in found], "path": found, "source": "train"})
        if not listed["sample_id"].is_unique:  # 2^-63 per pair: worth a clear message, not a silent merge
            raise CanonicalDataError(f"{folder}: two paths hash to the same id; use ids: manifest")
    classes = sorted({p.split("/")[0] for p in listed["path"]})
    labels = listed["path"].map(lambda p: classes.index(p.split("/")[0])).to_numpy()
    images = np.stack([load_image(folder / p, params.channels, params.image_size) for p in listed["path"]])
    records = records_frame(labels, listed["source"].to_numpy(), listed["sample_id"].to_numpy())
    files = pd.DataFrame({"sample_id": records["sample_id"], "path": listed["path"].to_numpy()})
    return RawDataset(images, records, {FILES_CSV: files})


def read_manifest(path: Path, folder: Path, found: list[str]) -> pd.DataFrame:
    """The team's list: sample_id,path[,source]. Every listed file must exist and every image must be listed,
    so no record enters D without an id someone chose."""
    if not path.is_file():
        raise DatasetSourceMissing(f"manifest {path} not found (data.dataset.manifest is relative to params.yaml)")
    manifest = pd.read_csv(path)
    missing_columns = {"sample_id", "path"} - set(manifest.columns)
    if missing_columns:
        raise CanonicalDataError(f"{path}: needs columns sample_id,path (and optionally source); "
                                 f"missing {sorted(missing_columns)}")
    manifest["sample_id"] = checked_sample_ids(manifest["sample_id"], f"{path}: column 'sample_id'")
    if "source" not in manifest:
        manifest = manifest.assign(source="train")
    listed, on_disk = set(manifest["path"]), set(found)
    if absent := sorted(listed - on_disk)[:5]:
        raise CanonicalDataError(f"{path} lists files that are not images in class folders of {folder}: {absent}")
    if unlisted := sorted(on_disk - listed):
        raise CanonicalDataError(f"{folder} has {len(unlisted)} image(s) the manifest does not list, e.g. "
                                 f"{unlisted[:5]}; add them to {path} or move them out")
    return manifest.sort_values("path", kind="stable").reset_index(drop=True)
