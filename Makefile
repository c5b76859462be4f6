# streethub — two commands: `make run` (the main job) and `make test` (the tests).
# Everything installs into .venv on first use; later runs reuse it.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
export STREETHUB_HOME ?= $(CURDIR)/.streethub

.PHONY: install bytecode run test lint format ui serve simulate-serve bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@echo "installing streethub and its pinned dependencies into $(VENV) …"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

# our modules compiled once, as pip compiles what it installs (an editable install does not):
# where PYTHONDONTWRITEBYTECODE is set (as on these machines) Python caches no bytecode of
# its own, and every process compiled the ~180 of our modules a run imports from source,
# ~0.3 CPU s each time (2026-12-07). Checked against the sources on every target: 0.06 s
BYTECODE := catalog curated departments lakehouse marts masking pipelines quality share_api bench

bytecode: install
	@$(BIN)/python -m compileall -q -j 0 $(BYTECODE) >/dev/null

run: bytecode  ## deliveries → lake → … with a summary (SIMULATE=1: a new simulated street first)
	$(BIN)/streethub run $(if $(SIMULATE),--simulate)

# the suite on PYTEST_WORKERS processes (pytest-xdist; 0: one process, serially); loadgroup keeps
# each costly session fixture's tests on one worker (the groups: tests/conftest.py). Three on
# two cores: on two the cores idled ~20-40 % of the time (the tests wait on the servers, browsers
# and child runs they start). Two clean-clone CIs of one commit, one after the other: 24 min 16 s
# of tests on 2 workers, 18 min 32 s on 3, with 16 % less CPU too (the machine was faster in the
# second: part of the gain is its). Each worker peaks at ~2.4 GB; the machines have 24 GiB
PYTEST_WORKERS ?= 3

# after the whole suite, the tests whose days hang on the clock once more on a machine set to
# China's time zone, as a street office's servers are (CI hosts and containers keep UTC): the
# street's days (catalog.days), the marts, the need model, the standardisers' local times, the
# share service's deadlines and age filters, a run in a child set to Asia/Shanghai. Their
# clock is moved to CLOCK_AT (UTC), where Beijing's day, month and year are not UTC's: 00:20
# on New Year's Day in Beijing is 16:20 on New Year's Eve in UTC (a confusion of the two
# days shows there whatever the hour CI runs at). Debian's faketime (libfaketime) moves every
# process of the run, children and DuckDB's clock too, by one offset from the real clock, so
# they agree with each other; CI installs it (.ci/run), elsewhere the leg says when it ran
# on the real clock instead
CLOCK_AT ?= 2026-12-31 16:20:00
TZ_TESTS := tests/catalog/test_days.py tests/marts tests/quality/test_standardise.py \
  tests/quality/test_standardise_dirt.py tests/share_api/test_requests_rules.py \
  tests/share_api/test_grants_rowfilter.py tests/curated/test_cur_golden_as_of.py \
  tests/pipelines/test_machine_timezone.py

test: bytecode  ## the whole test suite, then its clock-bound tests in Asia/Shanghai (pytest's "no tests" exit 5 counts as failure-free)
	@$(BIN)/pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; \
	  if [ $$rc -eq 0 ] && [ -z "$(PYTEST_ARGS)" ]; then \
	    clock=""; \
	    if command -v faketime >/dev/null; then \
	      clock="faketime -f $$(printf '%+ds' $$(( $$(date -ud '$(CLOCK_AT)' +%s) - $$(date +%s) )))"; \
	      echo "== the clock-bound tests again, on a machine set to Asia/Shanghai, its clock at $(CLOCK_AT) UTC"; \
	    elif [ -n "$$CI" ]; then echo "faketime is missing (Debian's package faketime)"; exit 1; \
	    else echo "== the clock-bound tests again, on a machine set to Asia/Shanghai (faketime is missing: on the real clock)"; fi; \
	    TZ=Asia/Shanghai STREETHUB_EXPECT_TZ=Asia/Shanghai $$clock $(BIN)/pytest -q -p no:cacheprovider \
	      -n $(PYTEST_WORKERS) --dist loadgroup $(TZ_TESTS); rc=$$?; \
	  fi; exit $$rc

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

ui: bytecode  ## the Dagster UI on http://127.0.0.1:3000
	$(BIN)/streethub ui

serve: bytecode  ## the share service, its portal (/portal) and API docs (/docs) on http://127.0.0.1:8780 (STREETHUB_SHARE_HOST/_PORT; first: streethub admin init)
	$(BIN)/streethub serve

simulate-serve: bytecode  ## the simulated departments' HTTP APIs on http://127.0.0.1:8765
	$(BIN)/streethub simulate serve

bench: bytecode
	$(BIN)/python -m bench

clean:  ## the hub's home, the simulated departments' folder and the default audit witness beside it
	rm -rf $(STREETHUB_HOME) $(or $(STREETHUB_SIM_DIR),$(STREETHUB_HOME).departments) \
	  $(if $(STREETHUB_WITNESS_DIR),,$(STREETHUB_HOME).witness)
