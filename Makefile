# roadrunner: the two set-up commands are `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-all lint typecheck interop fuzz fuzz-ci autobahn autobahn-full bench \
	bench-check bench-baseline clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The nghttp2 HTTP/2 engine is compiled against libnghttp2: as root with apt-get (CI, a fresh
# Debian machine) its headers and a compiler are installed when missing; without root nothing
# is installed and setup.py builds without it (HTTP/2 then runs on h2).
# The mypyc-compiled modules (roadrunner/compiled.py): an edited one is rebuilt by the next make.
COMPILED_SOURCES := $(shell $(PY) -c "import runpy; c = runpy.run_path('roadrunner/compiled.py'); print(*(c['source_path'](m, '.') for m in c['MODULES']))")

$(STAMP): pyproject.toml setup.py roadrunner/compiled.py $(COMPILED_SOURCES) $(wildcard roadrunner/protocols/http2/_nghttp2*.p*) | $(BIN)/python
	@need=""; \
	[ -f /usr/include/nghttp2/nghttp2.h ] || need="$$need libnghttp2-dev"; \
	command -v cc >/dev/null 2>&1 || need="$$need gcc libc6-dev"; \
	if [ -n "$$need" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing$$need (for the nghttp2 HTTP/2 engine)"; \
		{ apt-get install -y -qq $$need || { apt-get update -qq && apt-get install -y -qq $$need; }; } \
			>/dev/null 2>&1 || echo "could not install$$need: HTTP/2 will run on h2"; \
	fi
	$(BIN)/pip install -q -e '.[test]'
	@$(BIN)/python -c "from roadrunner.protocols.http2.engine import nghttp2_missing as m; r = m(); r and print('note: the nghttp2 HTTP/2 engine is not built (' + r + '): HTTP/2 runs on h2')"
	@$(BIN)/python -c "from roadrunner.compiled import build; b = build(); b == 'compiled' or print('note: the mypyc modules are not compiled (' + b + '): they run as pure Python')"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/roadrunner examples.hello:app --host 127.0.0.1 --port 8000

lint: $(STAMP)
	$(BIN)/ruff check roadrunner tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy roadrunner

# With the mypyc modules compiled (roadrunner/compiled.py), the whole suite runs on the compiled
# build without coverage (coverage.py cannot see compiled code), then the unit and integration
# tiers run again on the pure modules (ROADRUNNER_PURE=1) and measure coverage. A pure build (no
# compiler, ROADRUNNER_NO_EXTENSIONS=1) runs the whole suite once, under coverage.
COVERAGE := --cov=roadrunner --cov-report=term --cov-fail-under=90

test: lint typecheck
	@if [ "$$($(BIN)/python -c 'from roadrunner.compiled import build; print(build())')" = compiled ]; then \
		echo "make test: the compiled build, every tier"; \
		$(BIN)/python -m pytest -q -p no:cacheprovider && \
		echo "make test: the pure modules (ROADRUNNER_PURE=1), unit and integration, with coverage" && \
		ROADRUNNER_PURE=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/unit tests/integration $(COVERAGE); \
	else \
		echo "make test: a pure build, every tier, with coverage"; \
		$(BIN)/python -m pytest -q -p no:cacheprovider $(COVERAGE); \
	fi

# Run the suite on every supported CPython (pyenv provides 3.10-3.13).
test-all:
	@for v in 3.10 3.11 3.12 3.13; do \
		py=$$(ls -d $$HOME/.pyenv/versions/$$v*/bin/python3 2>/dev/null | head -1); \
		[ -n "$$py" ] || { echo "python $$v not found"; exit 1; }; \
		$$py -m venv .venv-$$v && .venv-$$v/bin/pip install -q -e '.[test]' && \
		.venv-$$v/bin/python -m pytest -q -p no:cacheprovider || exit 1; \
	done

interop: $(STAMP)
	bash tests/interop/install.sh
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/interop

# Coverage-guided fuzzing (atheris) of every input surface, FUZZ_SECONDS each (tests/fuzz/).
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(BIN)/pip install -q --only-binary atheris -e '.[test,fuzz]' || echo "fuzz: no atheris wheel for this Python/platform"
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh

# The CI run: 15 s per harness.
fuzz-ci:
	$(MAKE) fuzz FUZZ_SECONDS=15

# Autobahn|Testsuite against roadrunner on h1: the CI subset (also part of `make interop`) or
# the full 12.*/13.* set (about 40 minutes, outside CI; result recorded in docs/websocket.md).
autobahn: $(STAMP)
	bash tests/interop/autobahn/setup.sh
	$(BIN)/python tests/interop/autobahn/run.py

autobahn-full: $(STAMP)
	bash tests/interop/autobahn/setup.sh
	$(BIN)/python tests/interop/autobahn/run.py --full

# The bench matrix (bench/run.py): every scenario against every peer that serves it, pinned to
# core 0 with the load on core 1, about 45 minutes; rewrites docs/benchmarks.md whole, its charts
# in docs/bench/. A part of it: make bench BENCH_ARGS="--only roadrunner,granian --only hello"
# (written to bench/results/partial.md); BENCH_ARGS="--from-json docs/bench/benchmarks.json"
# renders the docs again from the published run (its JSON is committed) without measuring, and a
# second --from-json bench/results/partial.json --output docs/benchmarks.md folds a part re-run in.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# The regression gate (bench/gate.py): instructions per request under callgrind for h1 hello, h1
# echo and h2c hello; fails when one is more than 3% dearer than bench/baseline/callgrind.json.
# valgrind is a Debian package, installed by the interop tier's script when missing.
VALGRIND := bash tests/interop/install.sh valgrind=valgrind callgrind_control=valgrind

bench-check: $(STAMP)
	$(VALGRIND)
	$(BIN)/python -m bench.callgrind --check

# Rewrites the baseline: commit it on its own, for review.
bench-baseline: $(STAMP)
	$(VALGRIND)
	$(BIN)/python -m bench.callgrind --record

clean:
	rm -rf $(VENV) .venv-3.* .coverage .coverage.* .pytest_cache .mypy_cache .ruff_cache tests/fuzz/crashes build roadrunner/protocols/http2/_nghttp2.c \
		roadrunner/_compiled_sources.py roadrunner__mypyc.*.so $$(find roadrunner -name '*.so')
