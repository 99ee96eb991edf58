# Heliox: every developer and CI entry point. `make help` lists them.
# Tiers and what they need are described in docs/ARCHITECTURE.md ("Tests").

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Go's caches live under ~/.cache/heliox with the built tools and images (scripts/go-env.sh).
export HELIOX_CACHE ?= $(HOME)/.cache/heliox
export GOMODCACHE ?= $(HELIOX_CACHE)/go/mod
export GOCACHE ?= $(HELIOX_CACHE)/go/build
# Pinned Go tools (helm, kube-score, kind, kwok, control-plane binaries) are linked here by scripts/.
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/$(BIN):$(PATH)

# Locks resolve for the oldest Python the packages claim (requires-python >=3.11) and keep each
# pin's environment marker: the image's base may be any 3.11 (Debian bookworm's is 3.11.2).
UV_LOCK_FLAGS := -q --universal --python-version 3.11 --generate-hashes

.DEFAULT_GOAL := help
.PHONY: help venv run migrate openapi test test-unit test-integration test-chart test-image test-reliability \
        test-cluster cluster-tools cluster-up cluster-down e2e images bench lint lock tools chart-docs \
        k8s-render dev-kind dev-kind-down clean

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# The virtualenv is rebuilt only when a lock file changes.
venv: $(VENV)/.installed ## create .venv from the lock files
$(VENV)/.installed: service/requirements.lock requirements-dev.lock service/pyproject.toml migrations-job/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.lock
	$(BIN)/python -m pip install -q --no-deps -e service -e migrations-job
	@touch $@

run: venv ## migrate the embedded SQLite database, make the development API key once, serve on :8000 with reload
	$(BIN)/heliox-migrate upgrade
	@# First run: an admin key in var/dev-api-key (the README's curl examples read it from there).
	@if [ -z "$$DATABASE_URL" ]; then $(BIN)/heliox-admin dev-key; fi
	$(BIN)/uvicorn heliox.main:app --reload --reload-dir service/heliox --host 127.0.0.1 --port $${PORT:-8000} \
	  --no-server-header --log-config service/uvicorn-logging.json

migrate: venv ## apply migrations to DATABASE_URL (default: the embedded SQLite file)
	$(BIN)/heliox-migrate upgrade

openapi: venv ## rewrite docs/openapi.json, the reviewed snapshot of the OpenAPI document
	$(BIN)/python -m heliox.api.openapi > docs/openapi.json.tmp && mv docs/openapi.json.tmp docs/openapi.json

test: test-unit test-integration test-chart test-image test-reliability test-cluster ## every tier this machine can run (e2e: `make e2e`)

test-unit: venv ## unit tier: Python only
	$(BIN)/pytest tests/unit

test-integration: venv ## integration tier: starts throwaway Postgres and Redis (skips, saying why, if absent)
	$(BIN)/pytest tests/integration

test-chart: venv ## chart tier: helm lint, render, schema-validate, kube-score, promtool, under Helm 4 and 3
	@# The pinned tools are built with Go (cached); without Go the tests skip, saying so.
	@if command -v go >/dev/null; then scripts/tools.sh helm helm3 helm-docs kube-score promtool; fi
	$(BIN)/pytest tests/chart

test-image: venv ## image tier: Dockerfile lint and contract, its command run read-only, skaffold.yaml, k8s/ (no Docker)
	@if command -v go >/dev/null; then scripts/tools.sh helm; fi
	$(BIN)/pytest tests/image

test-reliability: venv ## reliability tier: reloads and outages under load, schemathesis against the OpenAPI document
	$(BIN)/pytest bench/reliability

test-cluster: venv ## cluster tier: real control plane from processes (etcd, apiserver, controllers, kwok)
	@# Build first, with its output shown (a cold build is long); without Go the tests say so.
	@if command -v go >/dev/null; then scripts/control-plane/build.sh; fi
	$(BIN)/pytest tests/cluster -m "not e2e"

cluster-tools: ## build (once per version, cached) the cluster tier's etcd, Kubernetes and kwok binaries
	scripts/control-plane/build.sh

cluster-up: cluster-tools ## start a throwaway control plane by hand; prints the KUBECONFIG to export
	$(PYTHON) scripts/control-plane/cluster.py up

cluster-down: ## stop the control plane of `make cluster-up` and remove its state
	$(PYTHON) scripts/control-plane/cluster.py down

e2e: venv ## kind tier: real pods on a kind cluster (Docker; images built offline where no registry answers)
	@# kind, helm and kubectl are pinned Go tools (cached); the node image needs the Kubernetes and
	@# etcd builds the cluster tier shares. Without Go the tier says what it misses.
	@if command -v go >/dev/null; then scripts/tools.sh kind helm && scripts/control-plane/build.sh kube etcd; fi
	$(BIN)/pytest tests/cluster -m e2e

images: ## build (cached by content under ~/.cache/heliox/images) every image the kind tier runs
	scripts/images/build.sh

bench: venv ## load benchmarks; results go to bench/results/
	$(BIN)/python -m bench.run

lint: venv ## ruff, mypy on the service, helm lint --strict on the chart
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	scripts/tools.sh helm
	helm lint --strict charts/heliox

lock: ## re-resolve the lock files (uv, universal: they hold on every Python >= 3.11, not only this one)
	@test -x $(BIN)/uv || { test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); $(BIN)/python -m pip install -q uv; }
	$(BIN)/uv pip compile $(UV_LOCK_FLAGS) -o service/requirements.lock service/pyproject.toml
	$(BIN)/uv pip compile $(UV_LOCK_FLAGS) -o requirements-dev.lock requirements-dev.in
	$(BIN)/uv pip compile $(UV_LOCK_FLAGS) -o service/build-requirements.lock service/build-requirements.in

tools: ## build and link every pinned Go tool (cached under ~/.cache/heliox)
	scripts/tools.sh

chart-docs: ## regenerate charts/heliox/README.md's values table from values.yaml
	scripts/tools.sh helm-docs
	helm-docs --chart-search-root charts

dev-kind: ## without skaffold: kind cluster (k8s/kind), docker build, kind load, helm upgrade --install --wait
	scripts/dev-kind.sh

dev-kind-down: ## delete the kind cluster of `make dev-kind`
	scripts/dev-kind.sh down

k8s-render: ## regenerate k8s/base and the production HPA from the chart (helm template)
	scripts/k8s-render.sh

clean: ## remove local environments (the ~/.cache/heliox build cache is kept)
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
