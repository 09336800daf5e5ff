# Two entry points for a fresh machine: `make demo` and `make test`. Both install first.
# constraints.txt pins torch==2.13.0 so no install step can pull a newer (CUDA) torch.
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install demo test bench lint docs

install:
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e ".[test]"

demo: install
	spikeport demo

test: install
	$(PYTHON) -m pytest -q

# The quick benchmarks (about 2.5 min on 2 cores); the others, and the full runs of these, are listed with their
# commands in docs/benchmarks.md. JSON goes to bench/results/quick/.
QUICK = bench/results/quick
bench: install
	$(PYTHON) bench/scan_check.py
	$(PYTHON) bench/pools.py --repeats 3 --json $(QUICK)/pools.json
	$(PYTHON) bench/calibrate_once.py --repeats 1 --json $(QUICK)/calibrate_once.json
	$(PYTHON) bench/simulate.py --timesteps 64 --networks demo,resnet20 --repeats 3 --json $(QUICK)/simulate.json
	$(PYTHON) bench/neurobench_metrics.py --nets mlp --timesteps 8 --limit 500 --json $(QUICK)/neurobench.json

lint: install
	$(PYTHON) -m ruff check src tests bench

# The documentation site (mkdocs.yml, docs/): strict, so a broken link or a docstring warning fails. Built
# outside the checkout; NO_MKDOCS_2_WARNING silences mkdocs-material's banner about MkDocs 2.0 (not a warning
# of this build).
SITE_DIR ?= /tmp/spikeport-site
docs: install
	$(PIP) install --quiet -c constraints.txt -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs build --strict --site-dir $(SITE_DIR)
