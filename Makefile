# glacierfs: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install sysdeps bench-deps demo test lint bench soak systemd-test clean

install: sysdeps $(STAMP)

# libfuse 3 and its headers are needed to build pyfuse3; fuse3 gives fusermount3.
sysdeps:
	@bash contrib/install-sysdeps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: install
	$(PY) contrib/demo.py

test: install
	$(PY) -m pytest -q -p no:cacheprovider tests

lint: install
	$(PY) -m ruff check glacierfs tests
	$(PY) -m ruff format --check glacierfs tests
	$(PY) -m mypy

# `make bench SCENARIOS=warm,random` runs only the scenarios named (python -m tests.bench --help).
SCENARIOS ?=

# rclone and fio are baselines of the benchmark only, never of the tests; a failed install
# leaves the benchmark to say what it skipped.
bench-deps:
	-@bash contrib/install-sysdeps.sh --bench

bench: install bench-deps
	$(PY) -m tests.bench $(if $(SCENARIOS),--only $(SCENARIOS))

# Readers through a mount while the emulator injects every fault at random; not part of
# `make test`. `make soak DURATION=2m`; more flags: `SOAK_ARGS="--seed 7 --readers 16"`.
DURATION ?= 10m
soak: install
	$(PY) -m tests.soak --duration $(DURATION) $(SOAK_ARGS)

# The fstab line and contrib/systemd's units under a booted systemd (systemd-nspawn over a
# minimal Debian made with debootstrap, kept in .systemd-test/); as root, not in `make test`.
systemd-test: install
	@bash contrib/install-sysdeps.sh --systemd
	$(PY) -m tests.systemd.run

clean:
	rm -rf $(VENV) build *.egg-info
