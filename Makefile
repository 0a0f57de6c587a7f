# Bootstrap: `make up` starts RAFSS, `make test` runs the whole suite.
# Both create .venv from a fresh clone and install everything they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rafss-installed
MODELS ?=
BACKEND ?=

.PHONY: install up test lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip setuptools wheel
	$(BIN)/python -m pip install torch==2.14.1 torchvision==0.29.1
	SAM2_BUILD_CUDA=0 $(BIN)/python -m pip install --no-build-isolation sam2==1.1.0
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/rafss up $(if $(BACKEND),--backend $(BACKEND)) $(if $(MODELS),--models $(MODELS))

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
