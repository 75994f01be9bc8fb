"""make ui-check: the MLflow UI as a new user meets it, in headless Chromium on a fresh profile (docs/tracking.md).

It starts the UI on the project's store as `make mlflow-ui` does (loopback, here a free port), opens the links that
`make mlflow-ui` prints (`python -m stores.mlflow_ui`) and checks three things:
1. the experiment's address opens on the runs table (model-training mode, the latest comparison's parent listed);
2. the saved view `verdicts-<selection>` shows the verdict columns (reporting.runs_list.VIEW_COLUMNS);
3. its chart view shows every child run of that comparison (none hidden, every run a point of the MU-gap scatter),
   and the parent's description links it (a real click opens it in a new tab); each run is drawn in its method's
   colour of the static plots (the run tag `mlflow.runColor`, as the runs list's colour swatches show it), no two
   methods alike.
On the way it records where a click from the bare experiments list lands (GenAI's overview in a fresh browser, a
limitation of MLflow 3.17.2: docs/tracking.md) and that, once "Model training" is chosen, the same click opens the
runs table. Screenshots (also of the static plots mu_vs_ue.png and lira_roc.png in the artifact viewer, where the
parent holds them) and the verdicts go to reports/ui/ (ui_check.json). Exit status 1 if a check fails.
Talks to MLflow over its REST API and its UI only (this package imports no orchestration library).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from reporting.chromium import Browser
from reporting.plots import RUN_COLOR_TAG
from reporting.runs_list import VIEW_METRICS

SHOTS = Path("reports") / "ui"  # under the project make ui-check runs in (the current directory)
# What `make mlflow-ui` sets: no AI Gateway, no job runner (both serve GenAI features this project never uses).
SERVER_ENV = {"MLFLOW_ENABLE_AI_GATEWAY": "false", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
              "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
ASSISTANT_CLOSE = '[data-component-id="mlflow.assistant.chat_panel.close"]'
LIST_LINK = '[data-testid="experiment-list-item-link"]'


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def mlflow_ui(db: Path, seconds: float = 300) -> Iterator[str]:
    """`mlflow ui` on the SQLite store `db`, on a free loopback port; its address, stopped afterwards. (It takes
    15 to 60 s to answer on a busy 2-core machine.)"""
    port, log = _free_port(), Path(tempfile.mkstemp(prefix="iau-mlflow-ui-", suffix=".log")[1])
    with open(log, "w") as out:
        process = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri",
                                    f"sqlite:///{db.resolve()}", "--host", "127.0.0.1", "--port", str(port)],
                                   env={**os.environ, **SERVER_ENV}, stdout=out, stderr=subprocess.STDOUT)
    ui = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + seconds
        while True:
            try:
                with urllib.request.urlopen(f"{ui}/health", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow ui did not start:\n{log.read_text()[-2000:]}") from None
                time.sleep(0.5)
        yield ui
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.unlink(missing_ok=True)


def printed_links(db: Path, experiment: str | None, ui: str) -> dict[str, str]:
    """What `make mlflow-ui` prints for this UI address: label -> link ("runs of 'x'", "view 'v'", ...)."""
    command = [sys.executable, "-m", "stores.mlflow_ui", "--db", str(db), "--ui", ui]
    printed = subprocess.run(command + (["--experiment", experiment] if experiment else []),
                             capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"^(.+?): (http\S+)$", printed, re.MULTILINE))


def rest(ui: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(f"{ui}/api/2.0/mlflow/{path}", data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def latest_comparison(ui: str, experiment_id: str) -> tuple[dict, list[dict]]:
    """The newest parent run (`unlearn-<selection>`) and its child runs (REST's form: info, data.tags, ...)."""
    found = rest(ui, "runs/search", {"experiment_ids": [experiment_id], "max_results": 1,
                                     "filter": "tags.`mlflow.runName` LIKE 'unlearn-%'",
                                     "order_by": ["attributes.start_time DESC"]}).get("runs", [])
    if not found:
        raise SystemExit("no comparison in this store yet: make run first")
    parent = found[0]["info"]
    children = rest(ui, "runs/search", {"experiment_ids": [experiment_id], "max_results": 1000,
                                        "filter": f"tags.`mlflow.parentRunId` = '{parent['run_id']}'"})
    return parent, children.get("runs", [])


def plots_of(ui: str, run_id: str, wanted: tuple[str, ...] = ("mu_vs_ue.png", "lira_roc.png")) -> list[str]:
    """Which of the comparison's static plots (reporting.plots) the parent run holds."""
    query = urllib.parse.urlencode({"run_id": run_id, "path": "plots"})
    with urllib.request.urlopen(f"{ui}/api/2.0/mlflow/artifacts/list?{query}", timeout=30) as answer:
        held = {Path(f["path"]).name for f in json.load(answer).get("files", [])}
    return [plot for plot in wanted if plot in held]


def rows_include(name: str) -> str:
    """JS: a row of the runs table names `name` (the table renders asynchronously after the page)."""
    return f"[...document.querySelectorAll('.ag-row')].some(r => r.innerText.includes({json.dumps(name)}))"


def runs_table_shown(browser: Browser, name: str, timeout: float = 90) -> bool:
    return bool(browser.wait_for(f"location.hash.includes('/runs') && {rows_include(name)}", timeout, settle=2))


def click_list_link(browser: Browser, ui: str, experiment: str) -> str:
    """From the experiments list, click the experiment's link; where it lands (the address once it settles)."""
    browser.goto(f"{ui}/#/experiments")
    browser.wait_for(f"document.querySelectorAll('{LIST_LINK}').length", 90)
    browser.evaluate(f"[...document.querySelectorAll('{LIST_LINK}')].find(a => a.textContent === "
                     f"{json.dumps(experiment)}).click()")
    browser.wait_for("/experiments\\/[^/?]+\\/(overview|runs|traces)/.test(location.hash)", 60, settle=4)
    return browser.evaluate("location.hash")


def shows(tab: str, address: str) -> bool:
    """The tab is at the address's page: the same route, with its parameters (the UI adds its own once loaded)."""
    def parts(url: str) -> tuple[str, set[str]]:
        route, _, query = url.partition("?")
        return route, set(query.split("&"))

    (route, wanted), (at, has) = parts(address), parts(tab)
    return route == at and wanted <= has


def opens_in_a_tab(browser: Browser, link: str, address: str, seconds: float = 15) -> bool:
    """A real click on the link (JS expression) opens `address` in a new tab (MLflow's markdown links open there)."""
    if not browser.click(link):
        return False
    deadline, opened = time.monotonic() + seconds, False
    while not opened and time.monotonic() < deadline:
        opened = any(shows(tab, address) for tab in browser.tabs())
        time.sleep(0.5)
    browser.close_other_tabs()
    return opened


def swatch_colors(browser: Browser) -> dict[str, str]:
    """Run name -> the colour of its swatch in the runs list beside the charts ("#rrggbb"): the colour MLflow's
    charts draw the run in (its tag RUN_COLOR_TAG, else a hash of the run id). The swatch is a label with the
    colour as its inline background; the run's link follows it."""
    found = browser.evaluate(
        "[...document.querySelectorAll('[data-testid=\"experiment-view-table-run-color\"]')]"
        ".map(s => [s.nextElementSibling?.innerText?.trim(), getComputedStyle(s).backgroundColor])") or []
    return {name: "#" + "".join(f"{int(v):02x}" for v in re.findall(r"\d+", rgb)[:3])
            for name, rgb in found if name and rgb.startswith("rgb")}


def colors_check(children: list[dict], shown: dict[str, str]) -> Check:
    """Each run the chart view lists is drawn in its method's colour (RUN_COLOR_TAG, the plots' colour:
    tasks.evaluation), and no two methods share one."""
    tags = {run["info"]["run_name"]: {t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in children}
    wrong = sorted(name for name, color in shown.items() if tags.get(name, {}).get(RUN_COLOR_TAG) != color)
    by_method: dict[str, set[str]] = {}  # a method's seeds: one colour
    for name, color in shown.items():
        if name in tags:
            by_method.setdefault(tags[name].get("method", name), set()).add(color)
    methods = {t.get("method", name) for name, t in tags.items()}
    colors = {color for found in by_method.values() for color in found}
    ok = (bool(shown) and not wrong and set(by_method) == methods and all(len(c) == 1 for c in by_method.values())
          and len(colors) == len(methods))
    detail = (f"{len(shown)} runs read, {len(methods)} methods, {len(colors)} colours"
              + (f"; not their {RUN_COLOR_TAG} tag: {', '.join(wrong)}" if wrong else ""))
    return Check("run colours: the plots' colour of each method, distinct", ok, detail)


def check_ui(ui: str, links: dict[str, str], out: Path) -> tuple[list[Check], dict]:
    runs_label = next(label for label in links if label.startswith("runs of"))
    runs_link, experiment = links[runs_label], runs_label.split("'")[1]
    experiment_id = re.search(r"/experiments/([^/?]+)/runs", runs_link).group(1)
    parent, child_runs = latest_comparison(ui, experiment_id)
    children = [run["info"]["run_name"] for run in child_runs]
    view = f"verdicts-{parent['run_name'].removeprefix('unlearn-')}"
    checks, facts = [], {"parent": parent["run_name"], "children": len(children), "view": view}
    with Browser(1440, 900) as browser:
        browser.goto(runs_link)  # 1. the address make mlflow-ui prints, in a fresh profile
        shown = runs_table_shown(browser, parent["run_name"])
        facts["assistant_opened_by_itself"] = bool(browser.evaluate(f"!!document.querySelector('{ASSISTANT_CLOSE}')"))
        browser.screenshot(out / "experiment_first_page.png")
        checks.append(Check("runs table from make mlflow-ui's address", shown,
                            f"{runs_link} lists {parent['run_name']}" if shown else f"no runs table at {runs_link}"))

        facts["fresh_list_click_lands_on"] = click_list_link(browser, ui, experiment)  # GenAI: MLflow's default
        browser.screenshot(out / "click_from_list_fresh_browser.png")
        browser.evaluate("[...document.querySelectorAll('[role=button]')].find(b => b.innerText.trim() === "
                         "'Model training').click()")  # the sidebar switch, once (the browser keeps the choice)
        time.sleep(2)
        facts["list_click_after_model_training_once"] = click_list_link(browser, ui, experiment)
        shown = runs_table_shown(browser, parent["run_name"])
        browser.screenshot(out / "click_from_list_after_model_training_once.png")
        checks.append(Check("runs table from the experiments list once Model training is chosen", shown,
                            facts["list_click_after_model_training_once"]))
        browser.evaluate(f"document.querySelector('{ASSISTANT_CLOSE}')?.click()")  # closed once, it stays closed

        browser.resize(2400, 900)  # 2. the verdict columns: ~1,900 px wide, all rendered at this width
        browser.goto(links[f"view {view!r}"])
        wanted = [*VIEW_METRICS, "verdict"]
        headers = browser.wait_for("(h => " + " && ".join(f"h.includes({json.dumps(w)})" for w in wanted) + " && h)"
                                   "([...document.querySelectorAll('.ag-header-cell')].map(c => c.innerText.trim()))",
                                   90, settle=2) or []
        browser.screenshot(out / "verdicts_view.png")
        missing = [w for w in wanted if w not in headers]
        checks.append(Check("verdict columns in the saved view", not missing and runs_table_shown(browser, children[0]),
                            f"missing {missing}" if missing else f"{view}: {', '.join(wanted)}"))

        browser.resize(1280, 800)  # the parent's page: its description states the answer
        browser.goto(runs_link.replace("/runs?", f"/runs/{parent['run_id']}?"))
        title = f"unlearn ({parent['run_name'].removeprefix('unlearn-')})"
        facts["parent_answer_above_the_fold"] = bool(browser.wait_for(
            f"[...document.querySelectorAll('strong')].some(s => s.innerText.startsWith({json.dumps(title)}) && "
            "s.getBoundingClientRect().bottom < innerHeight)", 60, settle=2))
        browser.screenshot(out / "parent_run.png")
        one_click = opens_in_a_tab(  # the description's first link
            browser, "[...document.querySelectorAll('a')].find(a => a.innerText.startsWith('Charts of every'))",
            links[f"view {view!r}, charts"])
        checks.append(Check("chart view one click from the parent", one_click,
                            "its description's link opens the view's charts" if one_click else "no such link"))

        browser.resize(1440, 900)  # the static plots as the run's artifact viewer shows them (screenshots only)
        for plot in plots_of(ui, parent["run_id"]):
            browser.goto("about:blank")  # so the previous plot's image is gone
            browser.goto(runs_link.replace("/runs?", f"/runs/{parent['run_id']}/artifacts/plots/{plot}?"))
            if browser.wait_for("[...document.images].some(i => i.complete && i.naturalWidth > 400)", 60, settle=1):
                browser.screenshot(out / f"artifact_{plot}")

        browser.resize(1440, 1800)  # 3. the chart view: every child shown, one point each in the scatter
        browser.goto(links[f"view {view!r}, charts"])
        points = browser.wait_for("(p => p && p.data[0].x.length)(document.querySelector('.js-plotly-plot'))",
                                  90, settle=3)
        hidden = browser.evaluate("[...document.querySelectorAll('input.is-visibility-toggle-checkbox')]"
                                  ".filter(c => !c.checked).length")
        browser.screenshot(out / "chart_view.png")
        checks.append(Check("chart view shows every child", points == len(children) and hidden == 0,
                            f"{points} of {len(children)} runs in the first chart, {hidden} hidden"))
        facts["run_colors"] = swatch_colors(browser)
        facts["first_chart_marker_colors"] = browser.evaluate(  # what plotly draws the points in (read, not checked)
            "(p => p && p.data.flatMap(t => [].concat(t.marker?.color ?? [])))"
            "(document.querySelector('.js-plotly-plot'))")
        checks.append(colors_check(child_runs, facts["run_colors"]))
    return checks, facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", type=Path, default=Path("mlflow.db"), help="the MLflow store (SQLite)")
    parser.add_argument("--experiment", default=None, help="default: params.yaml's tracking.experiment")
    parser.add_argument("--out", type=Path, default=SHOTS, help="where screenshots and ui_check.json go")
    args = parser.parse_args(argv)
    if not args.db.exists():
        raise SystemExit(f"{args.db} does not exist: make run first")
    args.out.mkdir(parents=True, exist_ok=True)
    with mlflow_ui(args.db) as ui:
        checks, facts = check_ui(ui, printed_links(args.db, args.experiment, ui), args.out)
    report = {"checks": [asdict(c) for c in checks], "facts": facts}
    (args.out / "ui_check.json").write_text(json.dumps(report, indent=2) + "\n")
    for check in checks:
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    print(json.dumps(facts, indent=2))
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
