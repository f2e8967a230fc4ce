# Two commands on a fresh machine: `make demo` and `make test` (both set up .venv first).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export DAGSTER_HOME ?= $(CURDIR)/data/dagster

.PHONY: install system-deps demo test test-slow test-fast lint dev mlflow clean-data stack stack-down stack-clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU build; an unpinned resolve could pull a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet torch==2.13.0
	# dev = the platform extra (Dagster, lakehouse, training) + tools; the base dependencies
	# alone are the edge device's: pip install '.[edge]' (mfg-edge), see README
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Broker tests start their own mosquitto, browser tests a headless Chromium; install the
# binaries where we may (root + apt), otherwise those tests skip with the reason.
system-deps:
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || \
	  (command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto) || \
	  echo "mosquitto not available: broker integration tests will be skipped"
	@# the browser tests (labeling page, dashboard, Dagster UI) drive headless Chromium
	@command -v chromium >/dev/null 2>&1 || \
	  (command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) || \
	  echo "chromium not available: browser tests will be skipped"

demo: install
	$(BIN)/mfg demo

# make test: everything but the heavier runs (marked slow), ~15 min on 2 cores; CI also
# runs make test-slow (full loop and its control, training, property and install tests).
test: install system-deps
	$(BIN)/python -m pytest -m "not slow"

test-slow: install system-deps
	$(BIN)/python -m pytest -m slow

test-fast: install
	$(BIN)/python -m pytest -m "not integration and not slow"

# dg runs in the project venv ([tool.dg] in pyproject.toml names the code location)
DG := VIRTUAL_ENV=$(CURDIR)/$(VENV) PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dg

lint: install
	$(BIN)/ruff check mfg_assets mfg_assets_tests benchmarks
	$(DG) check defs

dev: install
	mkdir -p $(DAGSTER_HOME)/.nux
	test -f $(DAGSTER_HOME)/dagster.yaml || cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	@# an instance made before dagster.yaml said `nux: enabled: false` would still show the
	@# "Join the Dagster community" pop-up on every page: mark it as seen
	test -f $(DAGSTER_HOME)/.nux/nux.yaml || echo "seen: 1" > $(DAGSTER_HOME)/.nux/nux.yaml
	$(DG) dev --host 127.0.0.1 --port 3000

# The MLflow UI over the embedded store: runs, metrics, plots, registered models. The models'
# metadata in the Dagster UI links here (and shows their plots from it).
MLFLOW_DB ?= $(CURDIR)/data/mlflow/mlflow.db
mlflow: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(MLFLOW_DB) --port 5000 --host 127.0.0.1

clean-data:
	find data -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +

# The production-like stack on this machine (deploy/README.md): PostgreSQL databases,
# SeaweedFS, mosquitto (TLS, passwords, ACL), MLflow server, Dagster webserver + daemon, two
# gateways, three edges; runs the demo through it and stays up until Ctrl-C.
# State and generated credentials: data/stack/. STACK_ARGS e.g. "--no-wait" or "--hours 48".
stack: install system-deps
	$(BIN)/python -m mfg_assets.stack up $(STACK_ARGS)

stack-down: install
	$(BIN)/python -m mfg_assets.stack down

# stop, drop the stack's databases and delete data/stack (new credentials next time)
stack-clean: install
	$(BIN)/python -m mfg_assets.stack down --purge
