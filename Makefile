# py_reactor: build, test and run.
#
#   make run     build everything, then serve the example on PORT (default 8080)
#   make test    build everything, then run every linter and test suite
#
# Other targets: deps, port, build, lint, test-python, example-recording, clean.
# Every recipe line is its own step; the first one that fails stops the run.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:

PORT ?= 8080
PYTHON ?= python3
CARGO ?= cargo
REBAR3 ?= rebar3
ERL ?= erl
ERLC ?= erlc

PORT_BIN := priv/py_reactor_port
PYTHON_SOURCES := python test/python examples
EXAMPLES_EBIN := _build/examples
EXAMPLES_ERL := $(wildcard examples/*.erl)

.PHONY: all deps port build test lint test-python run example-recording clean

all: build

## deps: install what is missing (Erlang/OTP, rebar3, pytest, ruff); checks every time
deps:
	./scripts/install-deps.sh

## port: build the Rust port program and install it as priv/py_reactor_port
## (rebar3 runs this itself before compiling, see rebar.config)
port:
	$(CARGO) build --release
	install -d priv
	@# Installed under a temporary name, then renamed: a port being started
	@# meanwhile sees the old program or the new one, never half of one.
	install -m 0755 target/release/py_reactor_port $(PORT_BIN).tmp
	mv -f $(PORT_BIN).tmp $(PORT_BIN)

## build: dependencies, the port program and the OTP application
build: deps port
	$(REBAR3) compile

## test: every linter and test suite, Rust, Python and Erlang
test: build
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test
	$(PYTHON) -m ruff check $(PYTHON_SOURCES)
	$(PORT_BIN) python -m pytest -q test/python
	$(REBAR3) xref
	$(REBAR3) dialyzer
	$(REBAR3) eunit
	$(REBAR3) ct

## lint: the static checks of `make test` (clippy, ruff, xref, dialyzer)
lint: deps
	$(CARGO) clippy --all-targets -- -D warnings
	$(PYTHON) -m ruff check $(PYTHON_SOURCES)
	$(REBAR3) xref
	$(REBAR3) dialyzer

## test-python: only the Python tests, inside the port's interpreter
test-python: port
	$(PORT_BIN) python -m pytest -q test/python

## run: serve the example protocol on PORT (make run PORT=9000); Ctrl-C stops it
run: build
	@test -n "$(EXAMPLES_ERL)" || { echo "make run: no examples/*.erl to run" >&2; exit 1; }
	install -d $(EXAMPLES_EBIN)
	$(ERLC) -o $(EXAMPLES_EBIN) -pa _build/default/lib/py_reactor/ebin $(EXAMPLES_ERL)
	$(ERL) -noshell -pa _build/default/lib/*/ebin -pa $(EXAMPLES_EBIN) \
	    -eval 'py_reactor_example:main($(PORT))'

## example-recording: record examples/recordings/http_bug.rec again, a real
## session of an HTTP protocol with a bug (see README.md, "Reproducing a
## protocol bug offline")
example-recording: build
	escript examples/recordings/record_example.escript

## clean: remove every build output
clean:
	rm -rf target _build logs .pytest_cache .ruff_cache $(PORT_BIN)
	find $(PYTHON_SOURCES) -type d -name __pycache__ -prune -exec rm -rf {} +
