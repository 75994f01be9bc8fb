"""The data section: which dataset kind (each kind its own section, chosen by `kind`) and how many records play
each role (docs/metrics.md, "Data roles"). The kinds' names are the `kind` literals below: the one list."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from iau_core.config.base import ParamsError, Section, describe, kind_shorthand

Modality = Literal["image", "table"]

FOLDER_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
# Every role holds at least this many records: accuracy then moves in steps of at most 1 point, so a 1-point
# validation budget is at least one record, and a test or attack AUC is read on 100+ records, not a handful.
MIN_ROLE_SIZE = 100
AUTO = "auto"  # normalize: auto, per-feature statistics of the shadow pool (iau_core.data)

class Normalization(Section):
    """x <- (x - mean) / std after loading (images first scaled to [0, 1]). One value applies to every channel
    (images) or feature (tables); otherwise one value per channel or per feature. Fixed numbers, never statistics
    of D: a normalization fitted on D would carry D_f's influence into every model, retrained ones included."""

    mean: tuple[float, ...] = Field(min_length=1)
    std: tuple[float, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _same_length_positive_std(self) -> Normalization:
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values but std has {len(self.std)}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be > 0, got {list(self.std)}")
        return self

class DatasetSection(Section):
    """What every dataset kind shares: the folder it is materialized into (data/<name>) and its normalization.
    `modality` tells which models can read it (an image model on a table fails at validation)."""

    modality: ClassVar[Modality] = "image"
    name: str = Field(pattern=FOLDER_NAME, description="folder under data.root; defaults to the kind")
    normalize: Normalization | Literal["auto"] | None = Field(
        None, description="fixed (x - mean) / std; auto: mean and std per feature (per channel for images) of "
        "the shadow pool, never of D; none: images in [0, 1], table features as stored")

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_kind(cls, data: object) -> object:
        if isinstance(data, dict) and "name" not in data and isinstance(data.get("kind"), str):
            data = {**data, "name": data["kind"]}
        return data

TABLE_NORMALIZE = ("default auto: each feature standardized by the shadow pool's mean and std (features on "
                   "scales from 0.001 to 4,000 otherwise leave an MLP at a constant output); fixed numbers or none")

class Downloadable(DatasetSection):
    """A published dataset read from its own files under raw_root; download: true lets torchvision (or the
    dataset's own archive) fetch them first where a network exists. Offline, put the files there yourself."""

    raw_root: str | None = Field(None, description="folder with the raw files (relative to params.yaml); "
                                 "default: raw/")
    download: bool = Field(False, description="fetch the raw files into raw_root when absent (needs a network)")

class MnistParams(Downloadable):
    """MNIST / Fashion-MNIST IDX files (.gz or not), flat in raw_root or in torchvision's <raw_root>/<Class>/raw/.
    Fashion-MNIST's default raw_root is $FASHION_MNIST_DIR or the Debian package's folder."""

    kind: Literal["mnist", "fashion_mnist"]

class CifarParams(Downloadable):
    """CIFAR-10 / CIFAR-100 python pickles (cifar-10-batches-py/, cifar-100-python/ in raw_root)."""

    kind: Literal["cifar10", "cifar100"]
    labels: Literal["fine", "coarse"] = Field("fine", description="CIFAR-100 only: 100 fine or 20 coarse classes")

    @model_validator(mode="after")
    def _coarse_only_for_cifar100(self) -> CifarParams:
        if self.kind == "cifar10" and self.labels != "fine":
            raise ValueError("labels: coarse exists for cifar100 only")
        return self

class SvhnParams(Downloadable):
    """SVHN's .mat files (train_32x32.mat, test_32x32.mat, extra_32x32.mat) in raw_root; label 10 is digit 0."""

    kind: Literal["svhn"]
    extra: bool = Field(False, description="add the 531,131 'extra' training images (their ids follow the test "
                        "split's, so train and test ids do not move when this is switched)")

class DigitsParams(DatasetSection):
    """scikit-learn's 1,797 8x8 digits (shipped with the package) as 1x8x8 images."""

    kind: Literal["digits"]

class DigitsTableParams(DatasetSection):
    """The same digits as a table of 64 features in [0, 1]: the tabular path, offline."""

    modality: ClassVar[Modality] = "table"
    kind: Literal["digits_table"]
    normalize: Normalization | Literal["auto"] | None = Field(AUTO, description=TABLE_NORMALIZE)

class ImageFolderParams(DatasetSection):
    """One subfolder per class under `path` (class index = sorted folder names, as torchvision's ImageFolder).
    Every image is converted to `channels` and resized to image_size x image_size.

    ids: `paths` derives each sample_id from the file's path relative to `path` (a hash, so adding or removing
    files never renumbers others; renaming a file gives it a new id); `manifest` takes them from a CSV the team
    keeps (columns sample_id,path and optionally source = train | test) and refuses files it does not list."""

    kind: Literal["image_folder"]
    path: str = Field(description="the folder (relative to params.yaml)")
    image_size: int = Field(32, gt=0)
    channels: Literal[1, 3] = 3
    ids: Literal["paths", "manifest"] = "paths"
    manifest: str | None = Field(None, description="ids: manifest: the CSV (relative to params.yaml)")

    @model_validator(mode="after")
    def _manifest_when_asked(self) -> ImageFolderParams:
        if (self.ids == "manifest") != (self.manifest is not None):
            raise ValueError("ids: manifest needs `manifest: <csv>`, and `manifest` is only read with ids: manifest")
        return self

class TableParams(DatasetSection):
    """A CSV or Parquet table (by its suffix) with a sample-id column, an integer label column and numeric
    feature columns (all the others unless listed). An optional source column (train | test) keeps the table's
    own test split."""

    modality: ClassVar[Modality] = "table"
    kind: Literal["table"]
    normalize: Normalization | Literal["auto"] | None = Field(AUTO, description=TABLE_NORMALIZE)
    path: str = Field(description="the .csv or .parquet file (relative to params.yaml)")
    sample_id_column: str = "sample_id"
    label_column: str = "label"
    feature_columns: tuple[str, ...] | None = Field(None, description="default: every other column")
    source_column: str | None = None

class Purchase100Params(Downloadable):
    """Purchase100 as Shokri et al. published it: the file `dataset_purchase` (no header; per line the label
    1..100, then 600 binary features) in raw_root; download fetches privacytrustlab's dataset_purchase.tgz."""

    modality: ClassVar[Modality] = "table"
    kind: Literal["purchase100"]
    normalize: Normalization | Literal["auto"] | None = Field(AUTO, description=TABLE_NORMALIZE)

DatasetParams = Annotated[
    MnistParams | CifarParams | SvhnParams | DigitsParams | DigitsTableParams | ImageFolderParams | TableParams
    | Purchase100Params,
    Field(discriminator="kind"),
]

def dataset_params(value: str | dict) -> DatasetSection:
    """A dataset section from a kind name (every default) or a mapping, validated as params.yaml would be."""
    try:
        return DataParams.model_validate({"dataset": value}).dataset
    except ValidationError as exc:
        raise ParamsError(describe(exc, prefix="data.")) from None

ROLE_KEYS = ("train_size", "val_size", "test_size", "shadow_pool_size")
ROLE_SIZES = ("a count (an integer, at least " + str(MIN_ROLE_SIZE) + ") or a share of the records (a number "
              "between 0 and 1)")


class DataParams(Section):
    """Which dataset and how many records play each role (docs/metrics.md, 'Data roles').

    Sizes are counts or shares, all four alike. Counts draw exact role sizes by a permutation over the ids; a
    dataset that gains rows may then move records between roles (a nightly batch refuses such a data version).
    Shares give each record its role from a keyed hash of its own id and split_seed alone, so re-sorting or
    appending rows never moves a record: the way for a team's own table or image folder, which grows."""

    dataset: DatasetParams = Field(default_factory=lambda: MnistParams(kind="fashion_mnist", name="fashion_mnist"),
                                   description="a kind name (every default) or a section {kind: ..., ...}")
    root: str = "data"
    split_seed: int = Field(0, description="which records play which role; fixed across `seeds`, so the "
                            "attacker's reference models (trained on the shadow pool) serve every repeat")
    train_size: int | float = Field(8000, gt=0, description="|D|: the deployed model's training set; " + ROLE_SIZES)
    val_size: int | float = Field(2000, gt=0, description="early stopping only")
    test_size: int | float = Field(2000, gt=0, description="utility (test_acc) and MIA non-members; a share is of "
                                   "the dataset's own test records when it has them")
    shadow_pool_size: int | float = Field(16000, gt=0, description="attacker-only data, disjoint from D, val, test")

    @property
    def shares(self) -> bool:
        """Role sizes given as shares of the records (hash roles), not counts."""
        return isinstance(self.train_size, float)

    @model_validator(mode="after")
    def _enough_records_per_role(self) -> DataParams:
        sizes = {k: getattr(self, k) for k in ROLE_KEYS}
        kinds = {type(v) for v in sizes.values()}
        if len(kinds) > 1:
            raise ValueError(", ".join(f"{k} is {v}" for k, v in sizes.items()) + ": give every role size as a "
                             "count (an integer) or every one as a share (a number between 0 and 1), not a mix")
        if self.shares:
            bad = {k: v for k, v in sizes.items() if not 0 < v < 1}
            if bad:
                raise ValueError(", ".join(f"{k} is {v}" for k, v in bad.items()) + ": a share of the records "
                                 "lies between 0 and 1 (or give counts, as integers)")
            drawn = self.train_size + self.val_size + self.shadow_pool_size
            if drawn > 1:
                raise ValueError(f"train_size + val_size + shadow_pool_size is {drawn:g}: shares of the same "
                                 "records add up to at most 1")
            return self  # each role's size is known once the records are: iau_core.data checks it then
        small = {k: v for k, v in sizes.items() if v < MIN_ROLE_SIZE}
        if small:
            raise ValueError(", ".join(f"{k} is {v}" for k, v in small.items()) + f": every role needs at least "
                             f"{MIN_ROLE_SIZE} records (below that a 1-point validation budget is less than one "
                             "record, and accuracies and attack AUCs are read on a handful of records)")
        return self

    @field_validator("dataset", mode="before")
    @classmethod
    def _dataset_shorthand(cls, value: object) -> object:
        return kind_shorthand(value)
