# Two commands on a fresh machine: `make demo` and `make test`.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench test-appliance test-appliance-qemu test-soak

setup:
	./scripts/bootstrap

demo: setup
	$(BIN)/wabscan demo

test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: setup
	$(BIN)/python benchmarks/local_verdicts.py

# The units under a real systemd in an nspawn container (root;
# docs/appliance-tests.md). CI runs it after `make test`.
test-appliance: setup
	$(BIN)/pytest -m appliance tests/appliance

# The memory checks under cgroup v2, in a QEMU VM booted from the same root
# (root; docs/appliance-qemu.md). About a minute with the caches warm; CI
# runs it after test-appliance, whose root it reuses.
test-appliance-qemu: setup
	$(BIN)/pytest -m appliance_qemu tests/appliance/test_qemu.py

# A 40-second seeded soak with kill -9 of the units (docs/soak.md).
test-soak: setup
	$(BIN)/pytest -m soak tests/test_soak.py
