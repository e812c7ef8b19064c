# The README's two commands are `make run` and `make test`; each sets itself up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint unit bench demo-order demo-cancel demo-address demo-exception reports package \
	bootstrap deploy clean

# Deploying (README "Deploying"): the Chalice stage, the artifacts bucket, where alarms go.
STAGE     ?= dev
BUCKET    ?=
OPS_EMAIL ?=
# The CS console's address (infra/resources.yaml ConsoleUrl): IM and e-mail links open it.
CONSOLE_URL ?=

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

# The daily, weekly and monthly reports to date, to the local manager's mailbox (README "Reports").
reports: $(STAMP)
	for kind in daily weekly monthly; do \
		$(BIN)/python -m chalicelib.admin --stage local report send --kind $$kind || exit 1; \
	done

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/cfn-lint infra/resources.yaml infra/bootstrap.yaml

bench: $(STAMP)
	$(BIN)/python -m bench

# Bytecode ships with the code: Lambda's file system is read-only, so without it every cold
# start compiles every module again. Hash-checked, so a stale file is never used (here or there).
# chalicelib/ is compiled before chalice zips it; what chalice adds as sources only (app.py, its
# own runtime, the wheels of requirements.txt) is compiled into the zip after it
# (infra/package_bytecode.py). infra/stage_template.py then pins the template's Stage parameter
# to the Chalice stage.
package: $(STAMP)
	$(BIN)/python -m compileall -q --invalidation-mode checked-hash chalicelib
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(BIN)/chalice package \
	  --stage $(STAGE) --merge-template infra/resources.yaml build/$(STAGE)
	$(BIN)/python infra/package_bytecode.py build/$(STAGE)/deployment.zip
	$(BIN)/python infra/stage_template.py build/$(STAGE)/sam.yaml $(STAGE)

# Once per account and region: the artifacts bucket and API Gateway's CloudWatch Logs role.
bootstrap:
	@test -n "$(BUCKET)" || { echo "BUCKET=<artifacts bucket> is required"; exit 2; }
	aws cloudformation deploy --template-file infra/bootstrap.yaml \
	    --stack-name order-backbone-bootstrap --capabilities CAPABILITY_IAM \
	    --parameter-overrides ArtifactsBucketName=$(BUCKET)

# Exactly the README's deploy commands.
deploy: package
	@test -n "$(BUCKET)" || { echo "BUCKET=<artifacts bucket> is required"; exit 2; }
	@test -n "$(OPS_EMAIL)" || { echo "OPS_EMAIL=<where alarms go> is required"; exit 2; }
	@test -n "$(CONSOLE_URL)" || { echo "CONSOLE_URL=<the CS console's address> is required"; exit 2; }
	aws cloudformation package --template-file build/$(STAGE)/sam.yaml \
	    --s3-bucket $(BUCKET) --s3-prefix order-backbone-$(STAGE) \
	    --output-template-file build/$(STAGE)/packaged.yaml
	aws cloudformation deploy --template-file build/$(STAGE)/packaged.yaml \
	    --s3-bucket $(BUCKET) --s3-prefix order-backbone-$(STAGE) \
	    --stack-name order-backbone-$(STAGE) \
	    --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
	    --parameter-overrides OpsEmail=$(OPS_EMAIL) ConsoleUrl=$(CONSOLE_URL) \
	    --no-fail-on-empty-changeset

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
