# Two entry points for a fresh machine: `make demo` and `make test`. Both install first.
# constraints.txt pins torch==2.13.0 so no install step can pull a newer (CUDA) torch.
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install demo test bench lint

install:
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e ".[test]"

demo: install
	spikeport demo

test: install
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) bench/simulate.py

lint: install
	$(PYTHON) -m ruff check src tests bench
