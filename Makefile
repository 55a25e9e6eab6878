# gm_jax: `make demo` trains every family briefly on the embedded data; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# What `make demo` needs (the library, tfds, matplotlib): a newcomer's first command installs
# no test, benchmark or lint tools (torch, pytorch-fid, ruff, mypy); `make test` adds them.
DEMO_STAMP := $(VENV)/.demo-stamp
PYTEST_ARGS ?=
# Python writes the bytecode of what it imports (into .venv and __pycache__/, git-ignored)
# even where the environment sets PYTHONDONTWRITEBYTECODE, as this machine does: uv, unlike
# pip, compiles nothing at install, so every process of `make test` (two workers and dozens
# of CLI and multi-device subprocesses) compiled jax, TensorFlow and torch from source
# again (`import tensorflow, torch` 17 s -> 7 s once written). Measured, fresh clone: pytest
# 591 s -> 553 s with every module compiled at install, which cost the install 25 s more.
unexport PYTHONDONTWRITEBYTECODE
LINT_PATHS := gm_jax tests benchmarks configs tools

.PHONY: install lint format lint-fix demo test test-fast test-targets bench bench-train-step family-table clean

# tools/install.py: pip's install, done by uv (pinned in constraints.txt) where it can (a fresh
# .venv with every extra: 20 s against pip's 115 s here), pip otherwise or with
# GM_JAX_INSTALL_WITH_PIP=1.
$(DEMO_STAMP): setup.cfg pyproject.toml constraints.txt tools/install.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python tools/install.py -q -e '.[tfds,plots]' -c constraints.txt
	touch $(DEMO_STAMP)

# k-diffusion: tests/sampling's reference samplers load only its k_diffusion/sampling.py (with
# torch from [bench]); its declared dependencies (torchvision, clean-fid, wandb...) are not
# needed, hence --no-deps (and not in setup.cfg's `test` extra).
$(STAMP): $(DEMO_STAMP) setup.cfg pyproject.toml constraints.txt
	$(BIN)/python tools/install.py -q -e '.[tfds,plots,test,bench,lint]' -c constraints.txt
	$(BIN)/python tools/install.py -q --no-deps -c constraints.txt k-diffusion==0.1.1.post1 nflows==0.14
	touch $(STAMP)

install: $(STAMP)

# The gates CI runs before the tests (.ci/run): ruff lint, ruff format check, mypy.
# Settings and the reasons for each ignored rule: pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

# Rewrites in place: sorts imports, then formats (2-space indents, 100 columns, single quotes).
format: $(STAMP)
	$(BIN)/ruff check --select I --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

# One-off mechanical clean-up (#44): strips the `# pylint: disable` comments (AST checked
# unchanged), applies ruff's safe fixes, formats. Prints what is left for a human.
lint-fix: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH tools/lint_fixups.sh

demo: $(DEMO_STAMP)
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
