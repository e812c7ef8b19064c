# The README's two commands are `make run` and `make test`; each sets itself up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint unit bench demo-order demo-cancel demo-address demo-exception package clean

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m devstack.stack

demo-order: $(STAMP)
	$(BIN)/python -m devstack.demo order

demo-exception: $(STAMP)
	$(BIN)/python -m devstack.demo exception

demo-cancel: $(STAMP)
	$(BIN)/python -m devstack.demo cancel $(ORDER)

demo-address: $(STAMP)
	$(BIN)/python -m devstack.demo address $(ORDER)

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/cfn-lint infra/resources.yaml

bench: $(STAMP)
	$(BIN)/python -m bench

# Bytecode ships with the code: Lambda's file system is read-only, so without it every cold
# start compiles every module again. Hash-checked, so a stale file is never used (here or there).
package: $(STAMP)
	$(BIN)/python -m compileall -q --invalidation-mode checked-hash chalicelib
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(BIN)/chalice package \
	  --stage $${STAGE:-dev} --merge-template infra/resources.yaml build/$${STAGE:-dev}

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
