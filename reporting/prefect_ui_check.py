"""make prefect-ui-check: a nightly deletion batch as the Prefect UI shows it to an operator, in headless Chromium
on a fresh profile (docs/operations.md, "Deployments").

A sandbox runs the batch as production does (python -m sandbox.nightly_deployment: a tiny digits project, a Prefect
server on loopback, `prefect deploy --all`, a champion, 3 requests, `prefect deployment run deletion-batch/nightly`
through a process worker); then the flow run's page and its artifacts are opened at 1280x800 and checked:
1. the run's page says Completed (and the Prefect API agrees);
2. its artifacts tab lists the batch's audit, ladder table and step table;
3. the ladder table renders with its columns, numbers rounded (3 decimals at most), and each step's seconds.
Screenshots and prefect_ui_check.json go to reports/ui/. Exit status 1 with a one-line reason if Chromium or a
step of the sandbox run is missing, or a check fails. Talks to Prefect over its REST API and its UI only (this
package imports no orchestration library: tests/test_layers.py).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import asdict
from pathlib import Path

from reporting.chromium import Browser, chromium_path
from reporting.ui_check import Check

SHOTS = Path("reports") / "ui"
# tasks/deletion.py's LADDER_HEADERS
LADDER_COLUMNS = ("method", "accepted", "privacy", "step s", "gate s", "AUC pre", "AUC post", "limit", "Δ acc")
SCROLL_DOWN = ("document.querySelectorAll('*').forEach(e => { if (e.scrollHeight > e.clientHeight + 10 && "
               "/auto|scroll/.test(getComputedStyle(e).overflowY)) e.scrollTop = e.scrollHeight; })")  # JS: every
# scrolling container to its end
ARTIFACT_PARTS = ("", "-ladder", "-steps")  # tasks/deletion.py's keys: deletion-batch-<id><part>


def api(base: str, path: str, body: dict | None = None):
    request = urllib.request.Request(f"{base}/{path}", data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


# JS: the rows of the page's first <table>, cells joined by tabs ('' while there is none)
TABLE_TEXT = ("(t => t ? [...t.querySelectorAll('tr')].map(r => [...r.querySelectorAll('th,td')]"
              ".map(c => (c.innerText || c.textContent).trim()).join('\\t')).join('\\n') : '')"
              "(document.querySelector('table'))")


def too_precise(rows: list[str]) -> list[str]:
    """Cells holding a number with more than 3 decimals (what the rounding in tasks/deletion.py rules out)."""
    return [cell for row in rows for cell in row.split("\t") if re.fullmatch(r"-?\d+\.\d{4,}", cell)]


def check_ui(run: dict, out: Path) -> tuple[list[Check], dict]:
    base, flow_run_id = run["api"], run["flow_run_id"]
    state = api(base, f"flow_runs/{flow_run_id}")["state"]
    artifacts = api(base, "artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
    keys = sorted(a["key"] for a in artifacts if a.get("key"))
    audit = next((k for k in keys if re.fullmatch(r"deletion-batch-\d+", k)), None)
    wanted = [f"{audit}{part}" for part in ARTIFACT_PARTS] if audit else ["deletion-batch-<id>"]
    ladder = next((a for a in artifacts if (a.get("key") or "").endswith("-ladder")), None)
    task_runs = api(base, "task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
    facts = {"flow_run": run["flow_run_url"], "api_state": state["type"], "artifact_keys": keys,
             "tasks": sorted(f"{t['name']}: {t['total_run_time']:.1f} s" for t in task_runs)}
    checks = []
    with Browser(1280, 800) as browser:
        browser.goto(run["flow_run_url"])  # 1. the address `prefect deployment run` printed
        shown = browser.wait_for("document.body.innerText.includes('Completed') && "
                                 "document.body.innerText.includes('Artifacts')", 120, settle=3)
        facts["run_page"] = browser.evaluate("location.href")
        browser.screenshot(out / "prefect_nightly_run.png")
        checks.append(Check("flow run page says Completed", bool(shown) and state["type"] == "COMPLETED",
                            f"API state {state['type']}, page {'says' if shown else 'does not say'} Completed"))

        # 2. the Artifacts tab, scrolled to (below the run graph); `?tab=` is not honoured by the default (v1) UI
        browser.click("[...document.querySelectorAll('.p-tab, [role=tab]')].find(t => t.innerText.trim() === "
                      "'Artifacts')")
        # the cards are drawn once scrolled into view, below the run graph (the page scrolls inside a container)
        listed = browser.wait_for(f"({SCROLL_DOWN}, (t => " + " && ".join(
            f"t.includes({json.dumps(k)})" for k in wanted) + ")(document.body.innerText))", 60, settle=2)
        browser.evaluate(SCROLL_DOWN)
        browser.screenshot(out / "prefect_nightly_artifacts.png")
        checks.append(Check("artifacts tab lists the audit, ladder and step tables", bool(listed),
                            f"lists {', '.join(wanted)}" if listed else f"does not list all of {wanted} (API: {keys})"))

        rows: list[str] = []
        if ladder is not None:  # 3. the ladder table as its artifact page renders it
            browser.goto(f"{run['ui']}/artifacts/artifact/{ladder['id']}")
            browser.wait_for(f"(s => s.includes('AUC post') && s)({TABLE_TEXT})", 60, settle=2)
            rows = (browser.evaluate(TABLE_TEXT) or "").splitlines()  # read after the settle: every cell drawn
            browser.screenshot(out / "prefect_nightly_ladder.png")
        header = rows[0].split("\t") if rows else []
        missing = [c for c in LADDER_COLUMNS if c not in header]
        precise = too_precise(rows[1:])
        facts["ladder_rows"] = rows
        checks.append(Check("ladder table renders, rounded, with each rung's seconds",
                            bool(rows[1:]) and all(r.split("\t")[0] for r in rows[1:]) and not missing
                            and not precise,
                            f"missing columns {missing}" if missing else f"unrounded cells {precise}" if precise
                            else f"{len(rows) - 1} rung(s): {', '.join(header)}"))
    return checks, facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3, help="deletion requests the sandbox batch forgets")
    parser.add_argument("--out", type=Path, default=SHOTS, help="where screenshots and prefect_ui_check.json go")
    args = parser.parse_args(argv)
    if chromium_path() is None:
        raise SystemExit("prefect-ui-check: chromium is not installed (apt-get install -y chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    log = Path(tempfile.mkstemp(prefix="iau-prefect-ui-", suffix=".log")[1])
    print(f"a nightly batch through deletion-batch/nightly in a sandbox (minutes; progress in {log})", flush=True)
    with open(log, "w") as errors:  # the sandbox's progress and errors; its last line is the reason it stopped
        sandbox = subprocess.Popen([sys.executable, "-m", "sandbox.nightly_deployment", "--requests",
                                    str(args.requests)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=errors, text=True)
    try:
        line = sandbox.stdout.readline()  # one JSON line once the deployment run ended; nothing if it failed
        if not line:
            sandbox.wait()
            reason = (log.read_text().strip().splitlines() or ["no output"])[-1]
            raise SystemExit(f"prefect-ui-check: the sandbox nightly run failed: {reason} (log: {log})")
        run = json.loads(line)
        checks, facts = check_ui(run, args.out)
    finally:
        sandbox.stdin.close()  # the sandbox stops its server and worker and removes its folder
        try:
            sandbox.wait(timeout=120)
        except subprocess.TimeoutExpired:
            sandbox.kill()
    report = {"checks": [asdict(c) for c in checks], "facts": facts}
    (args.out / "prefect_ui_check.json").write_text(json.dumps(report, indent=2) + "\n")
    for check in checks:
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    log.unlink(missing_ok=True)
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
