# gm_jax: `make demo` trains every family briefly on the embedded data; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo test test-fast test-targets bench bench-train-step family-table clean

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-deps nflows==0.14  # reference spline for the tests
	$(BIN)/python -m pip install -q -e '.[tfds,plots,test,bench]' -c constraints.txt
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m gm_jax.demo --out demo

# `--dist loadgroup` keeps a module marked with one `xdist_group` on one worker (needs
# pytest < 9.2 with pytest-xdist 3.8, see setup.cfg; tests/parallel checks it).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not target" --durations=15 $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not slow" $(PYTEST_ARGS)

# Shipped configs trained to their quality targets (Glow, PixelCNN: ~10 minutes).
test-targets: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m target $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m gm_jax.bench --all --out benchmarks/results/bench.jsonl $(BENCH_ARGS)

# JAX vs the same models in PyTorch (extra [bench]), one process; ~15 minutes.
bench-train-step: $(STAMP)
	$(BIN)/python benchmarks/train_step.py --out benchmarks/results/train_step

# The measured family comparison table (3 seeds x 7 families: the five classic rows took
# 23 minutes on 2 cores, each diffusion row adds ~10 minutes a seed).
family-table: $(STAMP)
	$(BIN)/python benchmarks/family_table.py --out benchmarks/results/family_table

clean:
	rm -rf demo .pytest_cache build *.egg-info
