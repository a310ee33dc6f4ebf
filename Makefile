# py_reactor: build, test and run.
#
#   make run     build everything, then serve the example on PORT (default 8080)
#   make test    build everything, then run every linter and test suite
#
# Other targets: deps, port, build, lint, test-python, test-pythons (the port
# built against each CPython 3.10 to 3.13), example-recording, clean,
# soak (docs/soak.md), fuzz and fuzz-quick (docs/fuzzing.md), bench and
# bench-quick (docs/performance.md).
# Every recipe line is its own step; the first one that fails stops the run.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:

PORT ?= 8080
PYTHON ?= python3
# The Python the port program embeds: an executable name or path (the
# Python of the deployment; see README, "Choosing the Python").
PY_REACTOR_PYTHON ?= python3
CARGO ?= cargo
REBAR3 ?= rebar3
ERL ?= erl
ERLC ?= erlc

# The interpreter the port embeds, named once for every cargo run. Without it
# pyo3 looks for python3 on PATH and rebuilds whenever PATH changes, which
# rebar3's pre-hook does (it puts the erts directories in front).
PYO3_PYTHON ?= $(shell $(PY_REACTOR_PYTHON) -c 'import sys; print(sys.executable)')
export PYO3_PYTHON
# cargo's output directory; a different one per Python keeps builds for
# several interpreters apart (make test-pythons).
CARGO_TARGET_DIR ?= target
export CARGO_TARGET_DIR

PORT_BIN := priv/py_reactor_port
PYTHON_SOURCES := python test/python examples bench fuzz
EXAMPLES_EBIN := _build/examples
EXAMPLES_ERL := $(wildcard examples/*.erl)

.PHONY: all deps port build test lint test-python run example-recording clean

all: build

## deps: install what is missing (Erlang/OTP, rebar3, pytest, ruff); checks every time
deps:
	./scripts/install-deps.sh

## port: build the Rust port program and install it as priv/py_reactor_port,
## with a copy of the `erlang` Python package as priv/python/erlang, so that
## priv/ holds all the port needs at run time (in a release too). rebar3 runs
## this itself before compiling, also when py_reactor is a dependency (see
## rebar.config).
port:
	$(CARGO) build --release
	install -d priv
	@# Installed under a temporary name, then renamed: a port being started
	@# meanwhile sees the old program or the new one, never half of one.
	install -m 0755 $(CARGO_TARGET_DIR)/release/py_reactor_port $(PORT_BIN).tmp
	mv -f $(PORT_BIN).tmp $(PORT_BIN)
	rm -rf priv/python.tmp
	install -d priv/python.tmp
	cp -R python/erlang priv/python.tmp/erlang
	find priv/python.tmp -name __pycache__ -prune -exec rm -rf {} +
	rm -rf priv/python
	mv priv/python.tmp priv/python

## build: dependencies, the port program and the OTP application (rebar3's
## compile pre-hook runs `make port`, as it does where py_reactor is a
## dependency, so the port is built once)
build: deps
	$(REBAR3) compile

## test: every linter and test suite, Rust, Python and Erlang. Each suite
## runs under SUITE_TIMEOUT seconds (default 900, a few times its usual
## length): a test that hangs fails the run with its name on screen instead
## of holding it until an outer limit cuts it off without a word.
SUITE_TIMEOUT ?= 900
WITHIN_LIMIT = timeout --kill-after=30 $(SUITE_TIMEOUT)
test: build
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path bench/native/Cargo.toml --all-targets -- -D warnings
	$(CARGO) test --no-run
	$(WITHIN_LIMIT) $(CARGO) test
	$(MAKE) --no-print-directory fuzz-quick
	$(PYTHON) -m ruff check $(PYTHON_SOURCES)
	$(WITHIN_LIMIT) $(PORT_BIN) python -m pytest -q test/python
	$(WITHIN_LIMIT) ./scripts/test-pythons.sh $(TEST_EXTRA_PYTHONS)
	$(REBAR3) xref
	$(REBAR3) dialyzer
	@# The API documentation builds without a warning.
	out=$$($(REBAR3) edoc 2>&1); echo "$$out"; ! grep -qiE 'warning|error' <<< "$$out"
	$(WITHIN_LIMIT) $(REBAR3) eunit
	$(WITHIN_LIMIT) $(REBAR3) ct

## lint: the static checks of `make test` (clippy, ruff, xref, dialyzer)
lint: deps
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path bench/native/Cargo.toml --all-targets -- -D warnings
	$(PYTHON) -m ruff check $(PYTHON_SOURCES)
	$(REBAR3) xref
	$(REBAR3) dialyzer

## fuzz-quick: every fuzz target (fuzz/, docs/fuzzing.md) for FUZZ_QUICK_SECONDS
## (default 25) each, after clippy on the fuzz crate; part of `make test`
FUZZ_QUICK_SECONDS ?= 25
## fuzz: a long run, FUZZ_SECONDS (default 600) per target; FUZZ_TARGETS=
## names some targets only (default: all)
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?=
.PHONY: fuzz fuzz-quick
fuzz-quick:
	./scripts/install-fuzz-deps.sh
	$(CARGO) clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
	./scripts/fuzz.sh $(FUZZ_QUICK_SECONDS)

fuzz:
	./scripts/install-fuzz-deps.sh
	./scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

## test-pythons: the port's test suites (cargo test) and the Python tests,
## with the port built against each CPython of PYTHONS (default 3.10 to
## 3.13; pythonX.Y on PATH or pyenv), each in target/python-X.Y.
## `make test` runs it for TEST_EXTRA_PYTHONS, versions besides the default.
PYTHONS ?= 3.10 3.11 3.12 3.13
TEST_EXTRA_PYTHONS ?= 3.13
.PHONY: test-pythons
test-pythons:
	./scripts/test-pythons.sh $(PYTHONS)

## test-python: only the Python tests, inside the port's interpreter
test-python: port
	$(PORT_BIN) python -m pytest -q test/python

## run: serve the example protocol on PORT (make run PORT=9000); Ctrl-C stops it
run: build
	@test -n "$(EXAMPLES_ERL)" || { echo "make run: no examples/*.erl to run" >&2; exit 1; }
	install -d $(EXAMPLES_EBIN)
	$(ERLC) -o $(EXAMPLES_EBIN) -pa _build/default/lib/py_reactor/ebin $(EXAMPLES_ERL)
	@# +Bd: no BREAK menu, so the first Ctrl-C (SIGINT) ends the VM; the
	@# port program sees its stdin close and stops too.
	$(ERL) +Bd -noshell -pa _build/default/lib/*/ebin -pa $(EXAMPLES_EBIN) \
	    -eval 'py_reactor_example:main($(PORT))'

## example-recording: record a real session of an HTTP protocol with a bug
## (see README.md, "Reproducing a protocol bug offline") into
## RECORDING (default _build/recordings/http_bug.rec, which git ignores);
## `make example-recording RECORDING=examples/recordings/http_bug.rec`
## replaces the committed recording
RECORDING ?= _build/recordings/http_bug.rec
example-recording: build
	escript examples/recordings/record_example.escript $(RECORDING)

## clean: remove every build output
clean:
	rm -rf target _build logs .pytest_cache .ruff_cache $(PORT_BIN) bench/native/target
	rm -rf fuzz/target fuzz/artifacts
	find $(PYTHON_SOURCES) -type d -name __pycache__ -prune -exec rm -rf {} +

## soak: the long load tests of test/soak (docs/soak.md), about a quarter of
## an hour; every case prints its figures. SOAK_SECONDS sets the length of
## the mixed-load case (default 600), SOAK_CYCLES, SOAK_IDLE, SOAK_SAMPLES
## and SOAK_CLIENTS the other sizes. The descriptor limit is raised first
## (to 65536, or to the hard limit when that is not allowed): the idle case
## holds 10,000 connections in the VM and as many in the port.
.PHONY: soak
soak: build
	$(PYTHON) -m ruff check test/soak
	install -d logs/soak
	ulimit -n 65536 2>/dev/null || ulimit -n "$$(ulimit -Hn)"; \
	    $(REBAR3) ct --dir test/soak --logdir logs/soak

# ---- benchmarks (bench/, docs/performance.md) --------------------------------

.PHONY: bench bench-quick bench-prepare

BENCH_EBIN := _build/bench/ebin

## bench: every workload against every system (py_reactor, asyncio, uvloop,
## gen_tcp, native), alternating; updates the committed results:
## bench/results/latest.json and .png and the results section of
## docs/performance.md (about 10 minutes)
bench: bench-prepare
	$(PYTHON) bench/run.py --update-committed

## bench-quick: the same workloads with fewer and shorter runs (under 2
## minutes); writes _build/bench/results/latest.json and .png, which git
## ignores, and changes no committed file
bench-quick: bench-prepare
	$(PYTHON) bench/run.py --quick

## bench-prepare: what the benchmarks need besides the build: wrk, uvloop and
## matplotlib, the native server and load generator, the Erlang bench modules
bench-prepare: build
	./scripts/install-bench-deps.sh
	$(CARGO) build --release --manifest-path bench/native/Cargo.toml --target-dir bench/native/target
	install -d $(BENCH_EBIN)
	$(ERLC) -Wall -o $(BENCH_EBIN) -pa _build/default/lib/py_reactor/ebin bench/erlang/*.erl bench/servers/*.erl
