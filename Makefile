# Two commands for a newcomer: `make run` (the main job) and `make test` (the suite; CI calls it).
# Both install what they need first: a .venv with pinned packages, and the Fashion-MNIST Debian package.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SELECTION ?= outliers
# Seeds to repeat the comparison over (mean ± std); empty = params.yaml's `seeds`. E.g. make run SEEDS="0 1 2"
SEEDS ?=

# Offline hygiene: no telemetry from any of the four tools (without these, their clients log errors offline).
export DO_NOT_TRACK := true
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
# Progress bars for local artifact downloads only clutter the log.
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# Prefect's embedded (ephemeral) state lives in the project, not in the user's home.
export PREFECT_HOME ?= $(CURDIR)/.prefect
# Its temporary server gets 20 s to start by default; on a busy 2-core machine that was seen to time out.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180

# Where the raw Fashion-MNIST IDX files are (iau_core/sources.py reads the same variable).
export FASHION_MNIST_DIR ?= /usr/share/datasets/fashion-mnist

.PHONY: run test setup postgres lint serve worker deploy mlflow-ui ui-check prefect-ui-check clean-tracking bench bench-full

run: setup  ## the unlearn flow (isolation-forest outliers) on Fashion-MNIST, embedded stores
	$(PY) -m flows.unlearn --selection $(SELECTION) $(if $(strip $(SEEDS)),--seeds $(SEEDS))

test: setup postgres  ## the whole test suite, on two workers (tests/conftest.py says which tests must share one)
	$(PY) -m pytest -q -n 2 --dist loadgroup

# Speed figures against their targets -> reports/bench.json, a table, docs/performance.md (docs/performance.md says
# what each means). Quick by default (|D| = 8,000, at most 15 min on 2 cores with nothing else running);
# FULL=1 (or bench-full): |D| = 60,000, retraining in every scaling row, make run local vs dask (46 min on 2 cores);
# GPU_ONLY=1: only the CIFAR-shaped GPU rows, added to an existing reports/bench.json (< 8 min on one H200).
# ONLY=headline: only batch_cost_vs_retrain, speedup_vs_retrain, iau_vs_limit and eta_rule_passes, added likewise
# (FULL=1 ONLY=headline: at |D| = 60,000, 12-25 min on 2 cores before the nightly batches were added to it);
# ONLY=make-run: make run SEEDS="0 1" under local and dask. Each figure reads "noisy: rerun" when its repetitions
# spread past 50% or its value is impossible: rerun it on an idle machine.
FULL ?=
GPU_ONLY ?=
ONLY ?=
bench: setup  ## the benchmark of measured ratios (python -m benchmarks)
	$(PY) -m benchmarks $(if $(strip $(FULL)),--full) $(if $(strip $(GPU_ONLY)),--gpu-only) \
		$(if $(strip $(ONLY)),--only $(ONLY))

bench-full:
	$(MAKE) bench FULL=1

# `make run` needs no PostgreSQL (the ledger is SQLite unless IAU_LEDGER_URL says otherwise): only `make test` does.
setup: $(VENV)/.installed $(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz

$(VENV)/.installed: requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version' \
		|| exit 1
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# Fashion-MNIST comes from Debian (no network download at run time). Installing needs root or sudo;
# with FASHION_MNIST_DIR pointing at a folder that holds the files, nothing is installed.
$(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
	if [ "$$SUDO" = none ] || ! { $$SUDO apt-get install -y -q dataset-fashion-mnist \
		|| { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q dataset-fashion-mnist; }; }; then \
		echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist' (Debian/Ubuntu), or" >&2; \
		echo "put the four IDX .gz files in a folder and set FASHION_MNIST_DIR=/that/folder." >&2; exit 1; fi

# PostgreSQL's server binaries: the ledger's tests start their own server on loopback in a temporary folder
# (sandbox/postgres.py); the ledger itself uses SQLite unless IAU_LEDGER_URL says otherwise. Debian's package,
# installed like Fashion-MNIST; with IAU_PG_BINDIR naming a folder that holds initdb and pg_ctl, nothing is installed.
postgres:
	@if [ -x "$${IAU_PG_BINDIR:-/nonexistent}/initdb" ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
	if [ "$$SUDO" = none ] || ! { $$SUDO apt-get install -y -q postgresql \
		|| { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q postgresql; }; }; then \
		echo "PostgreSQL is missing: run 'sudo apt-get install postgresql' (Debian/Ubuntu), or set" >&2; \
		echo "IAU_PG_BINDIR=/folder/with/initdb (the ledger's PostgreSQL tests need a server to start)." >&2; exit 1; fi

lint:
	$(VENV)/bin/ruff check .

# --- Running through a Prefect server and a worker (docs/operations.md, "Deployments") ---
serve:  ## a local Prefect server (UI on http://127.0.0.1:4200)
	$(VENV)/bin/prefect server start --host 127.0.0.1

worker:  ## a process worker for the deployments in prefect.yaml
	$(VENV)/bin/prefect work-pool create iau-local --type process --overwrite
	$(VENV)/bin/prefect worker start --pool iau-local

deploy:  ## register unlearn/outliers, unlearn/random and deletion-batch/nightly (02:00, params' timezone)
	IAU_CODE_DIR=$(CURDIR) \
	IAU_NIGHTLY_TIMEZONE=$$($(PY) -c 'from iau_core.config import load_params; print(load_params().nightly.timezone)') \
		$(VENV)/bin/prefect --no-prompt deploy --all

# MLflow 3.17's UI opens an experiment in GenAI mode unless the URL or the browser chose model training: open the
# printed links (docs/tracking.md, "Browsing"). The AI Gateway and the job runner, GenAI features unused here, are
# switched off; the Assistant panel and the GenAI popups have no server switch.
mlflow-ui:  ## browse runs and comparisons (http://127.0.0.1:5000)
	@$(PY) -m stores.mlflow_ui
	@echo "MLflow UI on http://127.0.0.1:5000 (Ctrl-C stops it)"
	MLFLOW_ENABLE_AI_GATEWAY=false MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui \
		--backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

# After make run: the UI as a new user meets it, in headless Chromium (apt-get install -y chromium); screenshots
# and ui_check.json into reports/ui/ (docs/tracking.md, "Browsing").
ui-check:  ## check that the MLflow UI opens on the runs, shows the verdict columns and charts every method
	$(PY) -m reporting.ui_check

# A nightly batch through the deployment in a sandbox (own Prefect server, tiny digits project; minutes), then its
# flow run and artifacts in headless Chromium: screenshots and prefect_ui_check.json into reports/ui/.
prefect-ui-check:  ## check that the Prefect UI shows a nightly run Completed with its audit, ladder and step tables
	$(PY) -m reporting.prefect_ui_check

clean-tracking:  ## forget every recorded run and cached model (keeps data and the venv)
	rm -rf mlflow.db mlartifacts .prefect
