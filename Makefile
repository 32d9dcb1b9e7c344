PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/advcli: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

demo: $(BIN)/advcli  ## the whole reference example on the built-in digits
	$(BIN)/python examples/reproduce_seed.py

test: $(BIN)/advcli  ## the test suite
	$(BIN)/python -m pytest -q

bench: $(BIN)/advcli  ## speed benchmarks (not tests)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
