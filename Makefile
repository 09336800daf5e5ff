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

bench: install
	$(PYTHON) bench/simulate.py

lint: install
	$(PYTHON) -m ruff check src tests bench

# The documentation site (mkdocs.yml, docs/): strict, so a broken link or a docstring warning fails. Built
# outside the checkout; NO_MKDOCS_2_WARNING silences mkdocs-material's banner about MkDocs 2.0 (not a warning
# of this build).
SITE_DIR ?= /tmp/spikeport-site
docs: install
	$(PIP) install --quiet -c constraints.txt -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs build --strict --site-dir $(SITE_DIR)
