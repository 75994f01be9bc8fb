"""What `iau` prints: the requests table, one request's history and receipt, the gate's verdicts, a doctor's
findings. Pure functions from the ledger's views (and the ops' results) to text; text people typed (a reason) or
that came from a file name is escaped, so no control character reaches the terminal."""

from __future__ import annotations

import json
from typing import Any

from ledger import EventView, ModelPurgeView, RequestView
from reporting.text import escaped

COLUMNS = ("sample_id", "status", "tier", "requested_at", "batch_id", "model_version", "data_version", "reason")


def table(views: list[RequestView]) -> str:
    cells = [[cell(getattr(v, column)) for column in COLUMNS] for v in views]
    widths = [max(len(column), *(len(row[i]) for row in cells)) for i, column in enumerate(COLUMNS)]
    lines = [COLUMNS, *cells]
    return "\n".join("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def describe(request: RequestView) -> str:
    lines = [f"sample_id {request.sample_id}: {request.status} (tier {request.tier})",
             f"  reason:        {escaped(request.reason)}",
             f"  requested at:  {stamp(request.requested_at)}"]
    if request.batch_id is not None:
        lines.append(f"  batch:         {request.batch_id}")
    if request.escalation_reason:
        lines.append(f"  escalated:     {escaped(request.escalation_reason)}")
    if request.model_version:
        lines.append(f"  first excluded by model version {request.model_version}, data version {request.data_version}")
    return "\n".join(lines)


def kept_champion(request: RequestView, events: list[EventView]) -> bool:
    """Whether the record's batch finished on the champion unchanged (its step changed nothing)."""
    return any(e.kind == "done" and e.sample_id == request.sample_id and e.detail.get("unchanged") for e in events)


def receipt(request: RequestView, purge: ModelPurgeView | None, unchanged: bool = False) -> str:
    """Proof of forgetting: the model and data versions that first exclude the record, and the purge that removed
    the last weights trained on a data version that still held it."""
    lines = ["receipt:",
             f"  model version: {request.model_version} (the first that excludes the record; batch {request.batch_id})",
             f"  data version:  {request.data_version}"]
    if unchanged:
        lines.insert(2, f"  no change: the champion already showed no more membership of the record than the gate "
                        f"can detect, and the batch's step left it unchanged: version {request.model_version} "
                        "serves on, no new version was registered")
    if purge is None:
        lines.append("  earlier weights: not purged yet (`iau purge` removes them once "
                     "the retention window of nightly.purge has passed)")
    else:
        removed = (purge.report or {}).get("removed", [])
        versions = sorted(r["target"] for r in removed if r["kind"] == "registry-version")
        lines.append(f"  earlier weights: removed by model purge {purge.id} at {stamp(purge.finished_at)} "
                     f"({len(removed)} removals; registry versions {', '.join(versions) or 'none'})")
        lines += raw_lines(request.sample_id, (purge.report or {}).get("raw"))
    return "\n".join(lines)


def raw_lines(sample_id: int, raw: dict | None) -> list[str]:
    """The receipt's word on the raw source, as the purge found it: the files still holding the record."""
    if raw is None:
        return []
    held = [path for path, ids in raw.get("holders", {}).items() if sample_id in ids]
    if held:
        return [f"  raw source:    still held by {', '.join(escaped(p) for p in held)} (`iau purge --raw` "
                "removes it)"]
    notes = [escaped(n) for n in raw.get("notes", [])]
    return [f"  raw source:    {notes[0]}" if notes else "  raw source:    no raw file holds it"]


def scope(event: EventView) -> str:
    if event.sample_id is None:
        return f"batch {event.batch_id}"
    return f"batch {event.batch_id}" if event.batch_id is not None else ""


def gate_verdicts(events: list) -> list[str]:
    """One line per gated method of the record's batches (each rung of the ladder it tried, in order): the privacy
    verdict said plainly (an inconclusive gate saw nothing to remove; it did not show the record was forgotten),
    the validation-accuracy drop, the unlearning's seconds and whether the batch took it; an accepted exact rung
    adds a line saying so (exact_line)."""
    lines = []
    for event in events:
        if event.kind != "gate" or not isinstance(event.detail, dict):
            continue
        for method, result in event.detail.items():
            if not isinstance(result, dict) or "privacy_verdict" not in result:
                continue
            lines.append(f"privacy gate ({method}, {result.get('attack', 'lira')}): {result['privacy_verdict']}; "
                         f"champion AUC {auc(result['forget_auc_champion'])}, after "
                         f"{auc(result['forget_auc_candidate'])}, smallest detectable {auc(result['auc_threshold'])} "
                         f"for {result['members']} records; val acc drop {auc(result.get('val_acc_drop'))}"
                         + attempt_outcome(result))
            if result.get("exact") and result.get("accepted"):
                lines.append(exact_line(method, result))
    return lines


def exact_line(method: str, result: dict[str, Any]) -> str:
    """What the receipt says of an accepted exact rung: the new model never saw the record (retrained from scratch,
    or sisa's shards that held it retrained without it), and which shards were retrained."""
    if "retrained_shards" not in result:  # a single model retrained (or a gate recorded before sharding)
        return f"exact ({method}): the new model was trained without the record"
    shards = f" of {result['shards']}" if "shards" in result else ""
    slices = f", {result['slices_retrained']} slice(s)" if "slices_retrained" in result else ""
    return (f"exact ({method}; shards retrained: {escaped(str(result['retrained_shards']))}{shards}{slices}): the "
            "new model was trained without the record")


def attempt_outcome(result: dict[str, Any]) -> str:
    """'; 1.23 s; accepted' (a gate recorded before the ladder has neither)."""
    seconds = f"; {result['seconds']:.2f} s" if isinstance(result.get("seconds"), int | float) else ""
    taken = {True: "; accepted", False: "; rejected"}.get(result.get("accepted"), "")
    return seconds + taken


def auc(value: Any) -> str:
    """An AUC from the ledger's JSON, where a value that was not finite is stored as the text 'nan'."""
    return f"{value:.3f}" if isinstance(value, int | float) else str(value)


def details(detail: dict[str, Any]) -> str:
    return ", ".join(f"{key}={json.dumps(value) if isinstance(value, dict | list) else value}"
                     for key, value in detail.items())


def cell(value: Any) -> str:
    """A table cell; text people typed (the reason) with its control characters escaped."""
    if value is None:
        return "-"
    return stamp(value) if hasattr(value, "isoformat") else escaped(str(value))


def stamp(at: Any) -> str:
    return at.isoformat(timespec="seconds")


MAX_ECHOED = 20  # ids echoed back after `add`; beyond that, a count


def joined(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:MAX_ECHOED])
    return shown if len(ids) <= MAX_ECHOED else f"{shown} and {len(ids) - MAX_ECHOED} more"


def data_version_label(version: str | None, committed: bool | None) -> str:
    """`iau data ids`'s word on the version: unversioned, not committed to git yet, or the md5."""
    if version is None:
        return "unversioned (no data.dvc: `dvc add data`, then commit data.dvc)"
    if committed is False:
        return f"{version}, not committed yet (data.dvc differs from git's HEAD: `git add data.dvc forgotten.csv && " \
               "git commit`)"
    return version


def doctor_report(url: str, diagnosis) -> list[str]:
    """The lines of `iau doctor` before its verdict (ops/doctor.py decides the advice)."""
    champion = diagnosis.champion
    said = f"version {champion.model_version} (data version {champion.data_version})" if champion else "none"
    return [f"ledger {url}: champion {said}, {diagnosis.pending} pending request(s)", *diagnosis.advice]


def added_lines(added) -> list[str]:
    lines = []
    if added.added:
        lines.append(f"queued {len(added.added)} deletion request(s), tier {added.tier}: {joined(added.added)}")
    if added.raised:
        lines.append(f"notice: already pending, tier raised to {added.tier}: {joined(added.raised)}")
    if added.already_pending:
        lines.append(f"notice: already pending, left as they were: {joined(added.already_pending)}")
    return lines
