"""Typed, validated configuration: params.yaml is read once, at the edge, into frozen sections, one module per
concern (data, models, training, selection, unlearning with every method's section, attacks, nightly). A typo in
a key or a bad value fails here, naming the key, before any data is loaded or a model trained.

`from iau_core.config import X` works for every public name of the package's modules."""

from iau_core.config.attacks import (
    ATTACK_NAMES,
    PRE_REGISTRY_KEYS,
    AttacksParams,
    LiraParams,
    MiaParams,
    RmiaParams,
    calibrated_attacks,
)
from iau_core.config.base import KIND_SHORTHANDS, ParamsError, Section, describe, kind_shorthand
from iau_core.config.data import (
    FOLDER_NAME,
    CifarParams,
    DataParams,
    DatasetParams,
    DatasetSection,
    DigitsParams,
    DigitsTableParams,
    Downloadable,
    ImageFolderParams,
    MnistParams,
    Modality,
    Normalization,
    Purchase100Params,
    SvhnParams,
    TableParams,
    dataset_params,
)
from iau_core.config.models import LeNet5Params, MlpParams, ModelParams, ModelSection, ResNet18Params, Vgg19BnParams
from iau_core.config.nightly import DriftParams, GateParams, NightlyParams, WhenInconclusive
from iau_core.config.params import (
    Params,
    TrackingParams,
    deep_merge,
    load_params,
    parse_overrides,
    parse_params,
    schema,
)
from iau_core.config.refresh import GradientRefreshParams, RefreshMode
from iau_core.config.requests import RequestsParams
from iau_core.config.selection import STRATEGY_NAMES, SelectionParams, Strategy
from iau_core.config.training import (
    AdamParams,
    Augment,
    ConstantLr,
    CosineLr,
    GrReading,
    LrSchedule,
    OptimizerParams,
    SgdParams,
    StepLr,
    TrainingParams,
)
from iau_core.config.unlearning import (
    BASE_RECIPES,
    DO_NOTHING,
    FLOOR,
    GOLD,
    IAU_STEP_METHODS,
    METHOD_NAMES,
    REFERENCE_METHODS,
    AmnesiacSettings,
    BadTeacherSettings,
    EtaRule,
    FinetuneSettings,
    FisherSettings,
    L1SparseSettings,
    MethodSections,
    NegGradPlusSettings,
    NegGradSettings,
    Optimizer,
    Recipe,
    Reduction,
    SalunSettings,
    ScrubSettings,
    StopRule,
    UnlearningParams,
    base_recipe,
)
