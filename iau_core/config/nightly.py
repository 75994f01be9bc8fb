"""The scheduled deletion batch: its gate and its drift limits."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from iau_core.config.base import Section
from iau_core.config.refresh import GradientRefreshParams
from iau_core.config.unlearning import GOLD, METHOD_NAMES, StopRule

# What a batch does when its gate cannot see anything to remove (the champion's own attack AUC on the batch's records is
# already within what the gate accepts): promote with the verdict "inconclusive" recorded, or retrain on D_r.
WhenInconclusive = Literal["promote", "retrain"]


class GateParams(Section):
    """What a nightly batch's new model must show before it replaces the champion."""

    max_val_acc_drop: float = Field(1.0, ge=0, description="validation-accuracy points the new model may lose "
                                    "against the champion")
    max_attack_advantage: float = Field(0.05, ge=0, lt=0.5, description="the headline attack's AUC (attacks."
                                        "headline) of the deleted records "
                                        "against held-out non-members (label-matched) may exceed 0.5 by this much, "
                                        "beyond chance")
    noise_z: float = Field(2.0, ge=0, description="chance allowance: this many standard deviations of the AUC "
                           "of two same-distribution samples of the batch's sizes (Mann-Whitney null)")
    when_inconclusive: WhenInconclusive = Field("promote", description="the champion itself shows no more "
                                                "membership on the batch than the gate accepts, so the gate cannot "
                                                "see a removal: promote with the privacy verdict 'inconclusive' "
                                                "recorded, or retrain on the retained data")

class DriftParams(Section):
    """When approximate unlearning has gone on long enough: the next batch retrains on the retained data."""

    max_iau_batches: int = Field(7, gt=0, description="batches unlearned approximately (IAU or another rung "
                                 "below retrain) since the last full retrain")
    max_forgotten_share: float = Field(0.05, gt=0, le=1, description="share of the last full training set "
                                       "forgotten without retraining since then")

class PurgeParams(Section):
    """`iau purge`: when the weights of models that saw forgotten records go (docs/operations.md)."""

    model_retention_batches: int = Field(1, ge=0, description="finished batches the champion that first excluded a "
                                         "record must have served (been the starting point of) before the earlier "
                                         "weights that saw the record go: a rollback target until the new champion "
                                         "has proved itself once; 0: the next purge removes them")
    model_retention_hours: float = Field(0.0, ge=0, description="hours after the batch that first excluded a "
                                         "record during which the earlier weights that saw it are kept as well "
                                         "(both conditions must hold)")


class NightlyParams(Section):
    """The scheduled deletion batch (`iau nightly`, deployment deletion-batch/nightly)."""

    timezone: str = Field("UTC", description="the 02:00 schedule's time zone (IANA name), used by `make deploy`")
    # salun: the cheapest method whose oracle-free stop reached the gate on 1,000 deletions of a leaking champion
    # (reports/frontier.md, reports/gate_power.md), with its published settings
    ladder: tuple[str, ...] = Field(("iau", "salun", GOLD), description="the methods a batch tries in cost order, each "
                                    "unlearned from the champion and gated; the first that passes is promoted. "
                                    "Names of the unlearning registry, then `retrain` last (the last resort)")
    # Production aims at passing its gate, so the rungs' iterative methods stop at the self-check by default (an
    # oracle-free rule: the model, D_f and the validation set only); `make run` compares the methods under
    # unlearning.stop_rule instead. reports/frontier.md measures both.
    stop_rule: StopRule = Field(StopRule(target="self_check", chance_z=0.0, over_budget="continue"),
                                description="the stop rule of the ladder's iterative rungs (replaces "
                                "unlearning.stop_rule in a batch): by default until the self-check's AUC on D_f "
                                "against validation records is at 0.5, an epoch over budget skipped, not final")
    gate: GateParams = GateParams()
    drift: DriftParams = DriftParams()
    purge: PurgeParams = PurgeParams()
    gradient_refresh: GradientRefreshParams = GradientRefreshParams()  # the cache the next batch starts from

    @field_validator("ladder")
    @classmethod
    def _a_ladder_ending_in_retrain(cls, ladder: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [m for m in ladder if m not in METHOD_NAMES and m != GOLD]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; known: {sorted(METHOD_NAMES)} and {GOLD}")
        if not ladder or ladder[-1] != GOLD:  # a batch whose every rung failed must have the full retrain left
            raise ValueError(f"the last rung must be {GOLD!r} (the last resort), got {list(ladder)}")
        if len(set(ladder)) != len(ladder):  # the attempts are recorded by method name
            raise ValueError(f"methods are listed twice: {sorted({m for m in ladder if ladder.count(m) > 1})}")
        return ladder

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r}; use an IANA name such as UTC or Europe/Berlin") from None
        return name
