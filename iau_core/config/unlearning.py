"""The unlearning section: the one list of method names, each method's typed settings, IAU's step and eta rule,
and the stop rule the iterative baselines share. Torch-free: config validates method names here without importing
any implementation; iau_core/unlearning/<name>.py implements the method <name>.

Defaults are each method's published values (the paper or its public code, named in each docstring), used as
they are: none was tuned on this project's data. Every iterative method also stops by one shared rule
(`StopRule`, unlearning.stop_rule), so no method's schedule is chosen with the test set or a retrained model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from iau_core.config.base import Section

# The references every comparison runs, named once: doing nothing, the gold model, the noise floor.
DO_NOTHING, GOLD, FLOOR = "original", "retrain", "retrain_alt"
REFERENCE_METHODS: tuple[str, ...] = (DO_NOTHING, GOLD, FLOOR)

Optimizer = Literal["sgd", "adam"]  # sgd: momentum 0.9, as every baseline's public code uses it

# What an iterative method stops at (StopRule.target): a real request's data only, never test or retraining.
StopTarget = Literal["heldout_loss", "self_check"]

class StopRule(Section):
    """One rule for every iterative method, the epoch-wise twin of IAU's eta rule: after each epoch, stop as
    soon as D_f's mean loss has reached the validation set's (D_f then looks like data the model never saw);
    if an epoch costs more than `val_drop_budget` validation-accuracy points against the deployed model, undo
    it and stop. Inputs a real deletion request has: the model, D_f and the validation set."""

    val_drop_budget: float = Field(1.0, ge=0, description="validation-accuracy points a method may cost "
                                   "(the same default as unlearning.eta_rule.val_drop_budget)")
    stop_at_heldout_loss: bool = Field(True, description="stop once `target` is met; false runs every epoch the "
                                       "method's schedule has")
    target: StopTarget = Field("heldout_loss", description="heldout_loss: D_f's mean loss reaches the validation "
                               "loss; self_check: the loss attack's AUC on D_f against validation records of its "
                               "labels is within chance (iau_core/unlearning/self_check.py)")
    chance_z: float = Field(2.0, ge=0, description="self_check: chance is 0.5 + this many null standard deviations")
    over_budget: Literal["stop", "continue"] = Field("stop", description="an epoch over the validation budget is "
                                                     "undone and the method stops (stop), or it is never returned "
                                                     "but training goes on, so a later epoch may recover (continue)")

class FinetuneSettings(Section):
    """Fine-tune on D_r only, so D_f fades by catastrophic forgetting. Jia et al. 2023 ('Model sparsity can
    simplify machine unlearning'), FT: 10 epochs, SGD lr 0.01."""

    epochs: int = Field(10, gt=0)
    lr: float = Field(0.01, gt=0)
    optimizer: Optimizer = "sgd"
    weight_decay: float = Field(5e-4, ge=0)

class NegGradSettings(Section):
    """Gradient ascent on D_f's cross-entropy. Jia et al. 2023, GA: 5 epochs, SGD lr 1e-4."""

    epochs: int = Field(5, gt=0)
    lr: float = Field(1e-4, gt=0)
    optimizer: Optimizer = "sgd"
    weight_decay: float = Field(5e-4, ge=0)

class NegGradPlusSettings(Section):
    """Kurmanji et al. 2023 (SCRUB paper), NegGrad+: descend beta * CE(D_r) - (1 - beta) * CE(D_f), a D_r batch
    paired with a D_f batch at each step. Their public code's beta 0.999, SGD lr 0.01, 5 epochs."""

    epochs: int = Field(5, gt=0)
    lr: float = Field(0.01, gt=0)
    beta: float = Field(0.999, gt=0, lt=1, description="weight of D_r's loss; 1 - beta weighs D_f's ascent")
    optimizer: Optimizer = "sgd"
    weight_decay: float = Field(5e-4, ge=0)

class AmnesiacSettings(Section):
    """Graves et al. 2021, 'Amnesiac machine learning' (the relabelling variant the IAU paper compares with):
    give D_f random wrong labels and keep training on D_r plus relabelled D_f with the model's own recipe
    (Adam at the training lr) for a few epochs; 3 here, in the range Graves et al. report."""

    epochs: int = Field(3, gt=0)
    lr: float = Field(1e-3, gt=0)
    optimizer: Optimizer = "adam"
    weight_decay: float = Field(0.0, ge=0)

class BadTeacherSettings(Section):
    """Chundawat et al. 2023 ('Can bad teaching induce forgetting?'): the student (a copy of the deployed
    model) distils the competent teacher (the deployed model) on D_r and an incompetent teacher (a random
    initialisation) on D_f. Their public code: 1 epoch, Adam lr 1e-4, batch 256, KL temperature 1, 30% of
    D_r."""

    epochs: int = Field(1, gt=0)
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(256, gt=0)
    temperature: float = Field(1.0, gt=0)
    retain_fraction: float = Field(0.3, gt=0, le=1, description="share of D_r distilled from the good teacher")
    optimizer: Optimizer = "adam"
    weight_decay: float = Field(0.0, ge=0)

class FisherSettings(Section):
    """Golatkar et al. 2020 ('Eternal sunshine of the spotless net'), Fisher forgetting: add Gaussian noise
    with variance alpha / F to each weight, F the diagonal Fisher information of D_r under the model's own
    predictive distribution (every class weighted by its probability). Their public code: alpha 1e-6,
    variance clamped at 1e3 (1e2 in the output layer). Costs one backward per record and class over D_r."""

    alpha: float = Field(1e-6, gt=0)
    max_variance: float = Field(1e3, gt=0)
    max_variance_output: float = Field(1e2, gt=0, description="the clamp for the output layer's weights")
    batch_size: int = Field(128, gt=0, description="records per vectorised per-sample-gradient pass (memory)")

class ScrubSettings(Section):
    """Kurmanji et al. 2023 ('Towards unbounded machine unlearning'), SCRUB: a student (copy of the deployed
    model) moves away from the teacher (the deployed model) on D_f (max-steps, the first `max_epochs`
    epochs) and stays close to it on D_r (min-steps: gamma * CE + alpha * KL). Their public code's small-scale
    values: temperature 4, gamma 0.99, alpha 0.001, SGD lr 5e-4 with weight decay 5e-4, 3 epochs, 2 with
    max-steps."""

    epochs: int = Field(3, gt=0)
    max_epochs: int = Field(2, ge=0, description="epochs that begin with a max-step pass over D_f")
    lr: float = Field(5e-4, gt=0)
    temperature: float = Field(4.0, gt=0)
    gamma: float = Field(0.99, ge=0, description="weight of CE on D_r in a min-step")
    alpha: float = Field(0.001, ge=0, description="weight of KL(teacher || student) on D_r in a min-step")
    optimizer: Optimizer = "sgd"
    weight_decay: float = Field(5e-4, ge=0)

class SalunSettings(Section):
    """Fan et al. 2024 (SalUn): a saliency mask keeps the weights whose |gradient of D_f's loss| is in the top
    `1 - threshold` share; then random-label unlearning on D_f (uniform random labels) mixed with D_r,
    updating only masked weights. Their CIFAR-10 values: mask threshold 0.5, 10 epochs, SGD lr 0.013."""

    epochs: int = Field(10, gt=0)
    lr: float = Field(0.013, gt=0)
    threshold: float = Field(0.5, gt=0, lt=1, description="share of weights left frozen (lowest saliency)")
    optimizer: Optimizer = "sgd"
    weight_decay: float = Field(5e-4, ge=0)

class L1SparseSettings(Section):
    """Jia et al. 2023, l1-sparse unlearning: fine-tune on D_r with gamma_t * ||theta||_1, gamma_t decaying
    linearly from `gamma` to 0 over the epochs. Their values: gamma 5e-4, 10 epochs, SGD lr 0.01."""

    epochs: int = Field(10, gt=0)
    lr: float = Field(0.01, gt=0)
    gamma: float = Field(5e-4, ge=0)
    optimizer: Optimizer = "sgd"
    weight_decay: float = Field(5e-4, ge=0)

class ImuSettings(Section):
    """Fan et al. 2025, IMU ('Influence-guided machine unlearning', arXiv 2508.01620), written from the paper's
    description (its public code has no licence): each D_f record's influence on D_f's loss, computed on the
    classifier (last linear) layer only with the diagonal Fisher over D_f standing in for the Hessian, weighs
    a gradient ascent on D_f alone that updates that layer only. No retained data.

    Choices the paper leaves open, made here: influence I_i = mean_{D_f} g^T (F + damping * mean(F))^-1 g_i
    (how much D_f's mean loss would rise without record i); `keep_fraction` keeps the most influential share
    (1: every record, as the public code's default); weight transform w = |kept| * softmax(standardized
    I / temperature) over the kept records (positive, mean 1: the same total ascent as uniform GA); batch
    norm in eval mode (features computed once, running statistics untouched). The paper's ascent schedule
    was not readable offline, so it runs the schedule of the project's GA baseline (neggrad, Jia et al.
    2023: 5 epochs, SGD lr 1e-4): the two then differ only by IMU's weighting and its classifier-only
    update."""

    epochs: int = Field(5, gt=0)
    lr: float = Field(1e-4, gt=0)
    optimizer: Optimizer = "sgd"
    weight_decay: float = Field(5e-4, ge=0)
    keep_fraction: float = Field(1.0, gt=0, le=1, description="share of D_f, most influential first, that the "
                                 "ascent uses (the public code's top_data; 1 keeps every record)")
    temperature: float = Field(1.0, gt=0, description="weights = |kept| * softmax(standardized influence / "
                               "temperature): small sharpens toward the most influential records")
    damping: float = Field(1e-3, gt=0, description="added to the diagonal Fisher, times its mean, before "
                           "dividing by it")

class SsdSettings(Section):
    """Foster et al. 2024 (AAAI), Selective Synaptic Dampening: importance = diagonal (empirical) Fisher, the
    squared gradient of the batch-mean loss averaged over batches, on D_f and on D (the training set, D_r
    plus D_f). Every parameter whose D_f importance exceeds alpha times its D importance is multiplied by
    beta = min(lambda * I_D / I_Df, 1). Their values for every ResNet18/CIFAR task: alpha 10, lambda 1,
    loaders of batch 128. No training loop, no schedule."""

    alpha: float = Field(10.0, gt=0, description="selection: dampen where I_Df > alpha * I_D")
    dampening: float = Field(1.0, gt=0, description="lambda: beta = min(lambda * I_D / I_Df, 1)")
    batch_size: int = Field(128, gt=0, description="batch of the importance passes (the public code's loaders)")

class UsgdSettings(Section):
    """Thudi et al. 2022 ('Unrolling SGD: understanding factors influencing machine unlearning'). USGD
    unlearns a model trained by its own recipe, which it declares: plain SGD (no momentum) from initial
    weights w_0 that are kept, on CE plus `sd_weight` times the standard-deviation (SD) loss term (each
    record's std of its logits over classes, divided by the number of classes), counting how often each record
    is sampled. Single-gradient unlearning then adds back each D_f record's first-order contribution:
    w_T + sum_{i in D_f} sum over its batches t of lr_t / |batch_t| * grad loss_i(w_0). Their CIFAR
    values: lr 0.1, batch 128, SD weight 1, weight decay 5e-4, 50 epochs."""

    epochs: int = Field(50, gt=0, description="epochs of the USGD recipe's training from w_0")
    lr: float = Field(0.1, gt=0)
    batch_size: int = Field(128, gt=0)
    sd_weight: float = Field(1.0, ge=0, description="weight of the SD loss term; 0 is plain cross-entropy")
    weight_decay: float = Field(5e-4, ge=0)
    checkpoint_every: int = Field(0, ge=0, description="0: every gradient at the initial weights (single-"
                                  "gradient unlearning as defined); k: weights also recorded every k epochs and "
                                  "each step unrolled around the last one before it (the paper's checkpointing)")

class IauAdamSettings(Section):
    """The public IAU code's step (Lolo1222/IAU, IAU_unlearn.py; ../shared/papers/official-code-notes.md): the
    gradient of mean CE(D_r) - mean CE(D_f) at the deployed parameters, applied by torch.optim.Adam at lr 1e-3.
    Adam's first step is bias-corrected, so each weight moves by lr * g / (|g| + eps), about lr * sign(g): every
    weight by the same amount, where Eq. 8 (`iau`) moves each in proportion to its gradient, with a size chosen
    per request by the eta rule. `steps` > 1 repeats it with both gradients read again at each step (the public
    code takes one)."""

    lr: float = Field(1e-3, gt=0)
    steps: int = Field(1, gt=0, description="Adam steps, each on the gradient at the current parameters")

class LastLayersSettings(Section):
    """Goel et al. 2022 ('Towards adversarial evaluation of unlearning algorithms'), the classic cheap partial
    retraining: the last `k` layers that hold weights (counted from the output) are trained on D_r for `epochs`
    epochs with the training recipe's optimizer and lr (CE only), the layers below frozen. EU-k reinitialises them
    first (exact for those layers: they never see D_f); CF-k fine-tunes them as they are (catastrophic
    forgetting). No stop rule: like retraining, they run their epochs."""

    k: int = Field(1, gt=0, description="layers that hold weights, counted from the output")
    epochs: int = Field(5, gt=0)

class MethodSections(Section):
    """One typed section per baseline, under `unlearning:` in params.yaml (unlearning.finetune.lr, ...). The
    field names are the baselines' registry names."""

    finetune: FinetuneSettings = FinetuneSettings()
    neggrad: NegGradSettings = NegGradSettings()
    neggrad_plus: NegGradPlusSettings = NegGradPlusSettings()
    amnesiac: AmnesiacSettings = AmnesiacSettings()
    bad_teacher: BadTeacherSettings = BadTeacherSettings()
    fisher: FisherSettings = FisherSettings()
    scrub: ScrubSettings = ScrubSettings()
    salun: SalunSettings = SalunSettings()
    l1_sparse: L1SparseSettings = L1SparseSettings()
    imu: ImuSettings = ImuSettings()
    ssd: SsdSettings = SsdSettings()
    usgd: UsgdSettings = UsgdSettings()
    iau_adam: IauAdamSettings = IauAdamSettings()
    eu_k: LastLayersSettings = LastLayersSettings()
    cf_k: LastLayersSettings = LastLayersSettings()


# The paper's Fig. 2 ablation shares IAU's step settings (unlearning.reduction, eta, eta_rule):
# ia (Eq. 5 alone: ascent on D_f), ia_gc (Eq. 8 on a model trained without GR), iau (Eq. 8 on the GR model).
IAU_STEP_METHODS = ("iau", "ia", "ia_gc")

# Exact by construction, no settings of their own: sisa retrains the shards of a sharded model (training.shards)
# that held a forgotten record (iau_core/unlearning/sisa.py); on one network it is retraining.
EXACT_METHODS = ("sisa",)

METHOD_NAMES: tuple[str, ...] = (*IAU_STEP_METHODS, *MethodSections.model_fields, *EXACT_METHODS)


# The base model a method unlearns, when it is not the deployed one: 'no_gr' is the deployed recipe with
# training.gr_alpha = 0 (the ablation's IA+GC without GR). The flow trains each recipe once per seed and reuses it.
Recipe = Literal["deployed", "no_gr"]

BASE_RECIPES: dict[str, Recipe] = {"ia_gc": "no_gr"}

def base_recipe(method: str) -> Recipe:
    """Which base model `method` starts from: the deployed (GR) model unless it declares another recipe."""
    return BASE_RECIPES.get(method, "deployed")


Reduction = Literal["sum", "mean"]

class EtaRule(Section):
    """How IAU's step size is chosen for each deletion, from data a real request has: the gradients, D_f and
    the validation set. Never the test set, never a retrained model.

    Scan eta = start * growth^k upwards and take the first step at which D_f's mean loss reaches the
    validation set's mean loss (D_f then looks like data the model never saw), or, if that step costs more than
    `val_drop_budget` validation-accuracy points, the last one below it within the budget. The scan reads D_f
    at every 4th candidate and bisects between, and the whole validation set at most 3 times
    (iau_core.unlearning.gradients.choose_eta)."""

    start: float = Field(1e-6, gt=0, description="smallest eta tried")
    growth: float = Field(2.0, gt=1, description="factor between consecutive candidates")
    max_candidates: int = Field(30, gt=0, description="give up growing after this many candidates")
    val_drop_budget: float = Field(1.0, ge=0, description="validation-accuracy points the step may cost")

class UnlearningParams(MethodSections):
    """The methods compared against retraining: IAU's step settings here, each baseline's own section
    inherited from MethodSections (above), and the stop rule the iterative ones share."""

    methods: tuple[str, ...] = ("iau",)
    reduction: Reduction = Field("sum", description="sum: Eq. 8 as written (eta per record); mean: the "
                                 "public code's weighting, mean(D_r) - mean(D_f)")
    eta: float | Literal["auto"] = Field("auto", description="IAU step size; 'auto' chooses it per run by "
                                         "eta_rule, a number fixes it")
    eta_rule: EtaRule = EtaRule()
    batch_size: int = Field(512, gt=0, description="gradient accumulation batch; memory, not the math")
    stop_rule: StopRule = StopRule()


    @field_validator("eta")
    @classmethod
    def _eta_not_negative(cls, eta: float | str) -> float | str:
        if isinstance(eta, float) and eta < 0:
            raise ValueError("eta must be >= 0 (or 'auto')")
        return eta

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [m for m in methods if m not in METHOD_NAMES]
        if unknown or not methods:
            raise ValueError(f"unknown unlearning method(s) {unknown}; known: {sorted(METHOD_NAMES)} "
                             "(retrain, retrain_alt and original always run as references)")
        if len(set(methods)) != len(methods):
            raise ValueError(f"methods are listed twice: {sorted({m for m in methods if methods.count(m) > 1})}")
        return methods
