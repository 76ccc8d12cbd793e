# Kommo Bridge: `make run` starts everything locally, `make test` proves it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROTO_SRC := $(shell find protos -name '*.proto')
STAMP := $(VENV)/.installed

.PHONY: install protos run test lint typecheck bench clean

install: $(STAMP) protos

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.9
	@$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.lock
	@$(MAKE) --no-print-directory protos
	@$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $@

protos: libs/contracts/kommo_bridge/.generated

libs/contracts/kommo_bridge/.generated: $(PROTO_SRC)
	@rm -rf libs/contracts/kommo_bridge
	@mkdir -p libs/contracts
	@PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m grpc_tools.protoc -I protos \
		--python_out=libs/contracts --mypy_out=libs/contracts \
		--grpc_python_out=libs/contracts --mypy_grpc_out=libs/contracts $(PROTO_SRC)
	@find libs/contracts/kommo_bridge -type d -exec touch {}/__init__.py \;
	@touch $@

run: install
	$(BIN)/python -m libs.devstack

test: install lint typecheck
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy libs services tests bench

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) libs/contracts/kommo_bridge .data
