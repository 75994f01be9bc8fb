"""The comparison as text a reader meets first: a markdown table (README, MLflow artifact) and a Prefect table
artifact (the flow run's Artifacts tab)."""

from __future__ import annotations

import logging
import re
from typing import Any

import pandas as pd
from prefect.artifacts import create_table_artifact
from prefect.context import FlowRunContext, TaskRunContext

from iau_core.metrics import mean_std

logger = logging.getLogger(__name__)

WITHIN, ABOVE = "✓", "✗"
MISSING = "–"


def decimals(metric: str) -> int:
    """Decimals that a metric's noise justifies: AUCs, rates and seconds need 3; accuracies, gaps, attack
    success and ranks are percentage points or ordinals, where 2 is already below the seed-to-seed spread."""
    if any(word in metric for word in ("auc", "seconds", "tpr", "fpr", "quality")):
        return 3
    return 2


def _cell(row: pd.Series, metric: str, floor: float | None) -> str:
    """'mean ± std' (mean_std), '–' where the metric has no value, plus the noise-floor marker of a gap column."""
    mean = row.get(f"{metric}_mean")
    text = mean_std(mean, row.get(f"{metric}_std"), decimals(metric))
    if not text:
        return MISSING
    if floor is not None:
        text += " " + (WITHIN if mean <= floor else ABOVE)
    return text


def _legend(floors: dict[str, float], shown: list[str]) -> str:
    values = ", ".join(f"{metric} {floors[metric]:.{decimals(metric)}f}" for metric in shown)
    return (f"{WITHIN} = mean within the noise floor (≤ the gap between two retrained gold models, retrain_alt "
            f"vs retrain); {ABOVE} = above it. Floors: {values}.")


def summary_markdown(summary: pd.DataFrame, floors: dict[str, float], columns: list[str]) -> str:
    """A GitHub-markdown table, one row per method (summary's index), one column per metric in `columns`,
    from summary columns '<metric>_mean' and '<metric>_std'. A gap column ('<x>_gap') with a floor in
    `floors` marks each cell within (✓) or above (✗) the noise floor; a legend line below gives the floors."""
    marked = [m for m in columns if m.endswith("_gap") and m in floors]
    lines = ["| method | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for method, row in summary.iterrows():
        cells = [_cell(row, metric, floors.get(metric) if metric in marked else None) for metric in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    return table + ("\n" + _legend(floors, marked) + "\n" if marked else "")


def artifact_key(key: str) -> str:
    """Prefect artifact keys must match ^[a-z0-9-]*$ (prefect.types.names.ArtifactKey): lowercase, and every
    run of other characters becomes one dash ('IAU comparison_v2' -> 'iau-comparison-v2')."""
    clean = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")
    if not clean:
        raise ValueError(f"artifact key {key!r} has no letters or digits")
    return clean


def _plain(value: Any) -> Any:
    """numpy scalars as Python values (JSON has no int64); NaN becomes null in Prefect's own sanitising."""
    return value.item() if hasattr(value, "item") else value


def publish_table_artifact(summary_records: list[dict], key: str, description: str) -> None:
    """Publish the rows as a Prefect table artifact on the current flow or task run, under `key` made valid
    (artifact_key).

    Outside a run it does nothing but log: Prefect 3.8 would still create an orphan artifact there (with a
    FutureWarning that this is deprecated), starting a temporary API server when none is configured."""
    clean_key = artifact_key(key)
    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        logger.info("not in a Prefect flow or task run: table artifact %r not published", clean_key)
        return
    table = [{name: _plain(value) for name, value in record.items()} for record in summary_records]
    create_table_artifact(table=table, key=clean_key, description=description)
