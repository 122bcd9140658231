# netaug-mcu: two commands for a fresh machine.
#   make demo   - set up, then train -> convert -> check -> firmware -> HIL, report in runs/demo/
#   make test   - set up, then the test suite
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)
DEB_PACKAGES := dataset-fashion-mnist gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm
PYTEST_ARGS ?=

.PHONY: all install system-deps demo test bench clean help

all: install

help:
	@echo "make demo     set up and run the whole pipeline on the defaults (runs/demo/report.md)"
	@echo "make test     set up and run the test suite"
	@echo "make install  only the set-up (.venv with every dependency, Debian packages when root)"
	@echo "make bench    the benchmarks (figures in bench/results/)"

$(VENV)/bin/python:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (netaug-mcu needs Python 3.11)"; exit 2; }
	$(PYTHON) -m venv $(VENV)

# Re-runs when pyproject.toml or this Makefile changes.
$(STAMP): $(VENV)/bin/python pyproject.toml
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[all]'
	# onnx2tf 1.29.24 (last for Python 3.11) and tf-keras pin the full `tensorflow` wheel; we use tensorflow-cpu.
	$(PIP) install -q --no-deps tf-keras==2.19.0 onnx2tf==1.29.24
	rm -f $(VENV)/.installed-*
	touch $@

system-deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	    || echo "warning: could not install$$missing (firmware/QEMU stages will be skipped)"; \
	else \
	  echo "note: not root; to enable every stage run: sudo apt-get install$$missing"; \
	fi

install: system-deps $(STAMP)

demo: install
	$(VENV)/bin/netaug-mcu demo --out runs/demo

# pytest's exit 5 ("no tests collected") is a failure too: a suite that ran nothing proves nothing.
test: install
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc = 5 ]; then echo "error: pytest collected no tests"; fi; exit $$rc

# Benchmarks write their figures to bench/results/ (the NetAug comparison takes ~2 h on 2 cores).
bench: install
	$(PY) bench/analyzer_bench.py
	$(PY) bench/boards_bench.py
	$(PY) bench/fuzz_analyzer.py -n 10000
	$(PY) bench/fuzz_parsers.py --examples 10000
	$(PY) bench/convert_bench.py
	$(PY) bench/hil_bench.py
	$(PY) bench/netaug_vs_baseline.py
	$(PY) bench/netaug_demo_seeds.py

clean:
	rm -rf runs build .pytest_cache
