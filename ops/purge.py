"""`iau purge`: removing every copy that still holds a forgotten record, under one lock, and the receipts it earns.

The copies, in the order they are handled (docs/operations.md, "Where a record's copies live"):
- the raw source the data was built from: with `raw`, a team's table loses the forgotten rows and an image
  folder their files (iau_core/datasets/raw_copies.py); without it, every raw file still holding one is named;
- older data versions in the DVC cache and the default remote (stores/purge.py);
- model weights trained on such versions, once the retention window has passed (stores/model_purge.py plans
  and removes them; the ledger records the plan first, so a killed purge is finished by the next).

All of it holds the nightly lock: no batch registers, promotes or writes a data version meanwhile.

The receipt rule lives here, not in the ledger: a done request gets the purge as its receipt once every data
version that held its record is left without weights: its batch's parent version and every version before it.
The ledger stores the receipts it is given.

Plain functions over the project's folder, params and open ledger: no Prefect, no Typer.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from iau_core.config import Params
from ledger import BatchView, Ledger, RequestView


@dataclass
class RawReport:
    """The raw source's copies: files that still hold forgotten records (sample ids), and what `--raw` removed."""

    dataset: str
    holders: dict[str, list[int]] = field(default_factory=dict)
    rewritten: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [f"# Raw source of {self.dataset!r}\n"]
        if self.rewritten:
            lines.append(f"rewritten or deleted ({len(self.rewritten)}):")
            lines += [f"- `{path}`" for path in self.rewritten]
        lines.append("still holding forgotten records:" + ("" if self.holders else " nothing"))
        lines += [f"- `{path}`: {len(ids)} record(s) (`iau purge --raw` removes them)"
                  for path, ids in self.holders.items()]
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


@dataclass
class PurgeResult:
    raw: RawReport
    data: object | None = None  # stores.purge.PurgeReport
    models: object | None = None  # stores.model_purge.ModelPurgeReport

    def reports(self) -> dict[str, object]:
        return {kind: report for kind, report in (("raw", self.raw), ("data", self.data), ("models", self.models))
                if report is not None}


def purge(root: Path, params: Params, ledger: Ledger, *, raw: bool = False, data: bool = True,
          models: bool = True, experiment_id: str | None = None, now: datetime | None = None) -> PurgeResult:
    """Remove the copies named in the module docstring, under the nightly lock (LockHeld while a batch runs).
    `experiment_id` (the MLflow experiment, connected by the caller) is needed with `models`."""
    with ledger.nightly_lock(owner="iau purge"):
        result = PurgeResult(raw_copies(root, params, rewrite=raw))
        if data:
            from stores.purge import purge as purge_data

            result.data = purge_data(root)
        if models:
            if experiment_id is None:
                raise ValueError("a model purge needs the MLflow experiment (experiment_id)")
            result.models = purge_models(root, params, ledger, experiment_id, now, raw=result.raw)
    return result


def raw_copies(root: Path, params: Params, rewrite: bool) -> RawReport:
    """The raw files holding forgotten records of params' dataset; with `rewrite`, removed from them first."""
    from iau_core.datasets.raw_copies import forget_in_raw, holders
    from iau_core.sources import forgotten_ids

    dataset = params.data.dataset
    forgotten = forgotten_ids(root, dataset.name)
    report = RawReport(dataset.name)
    if rewrite and len(forgotten):
        report.rewritten = forget_in_raw(dataset, root, forgotten)
    found = holders(dataset, root, forgotten)
    report.holders, report.notes = found.holders, found.notes
    return report


def purge_models(root: Path, params: Params, ledger: Ledger, experiment_id: str, now: datetime | None = None,
                 raw: RawReport | None = None):
    """Finish a model purge a killed run left, then plan, record and carry out a new one; each finished purge
    gives its receipts. The caller holds the nightly lock. `raw`: kept in the purge's record, so a receipt can
    name the raw files that still held its record."""
    from stores.model_purge import carry_out, make_plan

    now = now or datetime.now(UTC)
    finished = []
    if (left := ledger.unfinished_model_purge()) is not None:
        finish(ledger, carry_out(left.id, left.plan), raw)
        finished.append(left.id)
    plan = make_plan(root, params, ledger, experiment_id, now)
    report = carry_out(ledger.plan_model_purge(plan).id, plan)
    finish(ledger, report, raw)
    report.finished_earlier = finished
    return report


def finish(ledger: Ledger, report, raw: RawReport | None) -> None:
    """Record a carried-out purge and give the receipts the rule grants now."""
    cleared = ledger.cleared_data_versions() | set(report.cleared_data_versions)
    due = receipts_due(ledger.list_requests("done"), ledger.batches(), cleared)
    summary = report.summary() | ({"raw": raw.to_dict()} if raw is not None else {})
    report.receipts = ledger.finish_model_purge(report.purge_id, summary, report.cleared_data_versions, due)


def receipts_due(done: list[RequestView], batches: list[BatchView], cleared: Collection[str]) -> list[int]:
    """The done requests without a receipt whose record no weights hold any more: every data version that held
    it (its batch's parent version, and every version a done batch made or started from before) is in `cleared`."""
    finished = [b for b in batches if b.status == "done"]
    due = []
    for request in done:
        if request.model_purge_id is not None or request.batch_id is None:
            continue
        held = {b.parent_data_version for b in finished if b.id <= request.batch_id} | \
            {b.data_version for b in finished if b.id < request.batch_id}
        if held <= set(cleared):
            due.append(request.sample_id)
    return sorted(due)
