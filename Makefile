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
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy libs services tests bench

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) libs/contracts/kommo_bridge .data

# The Kommo widget archive, dist/widget.zip (manifest, i18n, logos, script; reference §12). Standard
# library only, so it needs no install. The bridge's public address is written into the widget:
#   make widget BRIDGE_PUBLIC_URL=https://bridge.example.com   (default: the environment variable)
# Optional: BRIDGE_SUPPORT_URL / BRIDGE_SUPPORT_EMAIL (your support contact), WIDGET_VERSION=x.y.z.
.PHONY: widget
widget:
	@$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) -m libs.widget.build --output dist/widget.zip \
		--public-url "$(BRIDGE_PUBLIC_URL)" --support-url "$(BRIDGE_SUPPORT_URL)" \
		--support-email "$(BRIDGE_SUPPORT_EMAIL)" --widget-version "$(WIDGET_VERSION)"

# --- Deployment (docs/operations.md) -------------------------------------------------------------
IMAGE ?= kommo-bridge
IMAGE_TAG ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' deploy/kommo-bridge/Chart.yaml)
CONTAINER_ENGINE ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)

.PHONY: images chart chart-deps

# One image, every service (the container's arguments pick the module). Needs a running docker/podman.
images:
	@if [ -z "$(CONTAINER_ENGINE)" ] || ! $(CONTAINER_ENGINE) info >/dev/null 2>&1; then \
		echo "make images: no working container engine (docker or podman) here; CI lints the Dockerfile instead (tests/deploy)" >&2; \
		exit 1; \
	fi
	$(CONTAINER_ENGINE) build --pull -f Dockerfile -t $(IMAGE):$(IMAGE_TAG) .
	@echo "built $(IMAGE):$(IMAGE_TAG); push it and set image.repository / image.tag in your values"

# Lint the Helm chart (NATS subchart included) with every CI values set and package it into dist/
# (no helm binary needed). Offline without the subchart: `$(BIN)/python -m deploy.chartctl lint --allow-missing-deps`.
chart: chart-deps
	$(BIN)/python -m deploy.chartctl lint
	$(BIN)/python -m deploy.chartctl package --destination dist

# Fetch the NATS subchart Chart.yaml declares into deploy/kommo-bridge/charts/ (`helm dependency
# update`; needs network, git-ignored, a no-op when already there). Needed before `helm install`.
chart-deps: install
	$(BIN)/python -m deploy.chartctl deps
