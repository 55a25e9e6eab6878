#!/usr/bin/env bash
# One-off mechanical clean-up for the lint gates (#44), run once by hand after merging:
#   make lint-fix        (or: PATH=.venv/bin:$PATH tools/lint_fixups.sh)
# 1. strips the `# pylint: disable=...` comments (tools/strip_pylint.py; each file's AST
#    is checked unchanged, a file whose AST would change is refused and named);
# 2. `ruff check --fix`: ruff's safe fixes only (import order, `X | None`, `collections.abc`,
#    unused `noqa`); F401 is unfixable in pyproject.toml, so no import is ever dropped;
# 3. `ruff format` (2-space indents, 100 columns, single quotes);
# then prints what is left for a human: `ruff check` and `mypy` (exit status 0 either way,
# so review `git diff` and those lists, run the tests, commit).
set -euo pipefail
cd "$(dirname "$0")/.."
PATHS=(gm_jax tests benchmarks configs tools)
PYTHON=${PYTHON:-python3}
command -v ruff >/dev/null || { echo 'ruff not found: pip install ruff==0.17.5 (extra [lint])' >&2; exit 1; }

echo '== 1/3 strip pylint comments'
"$PYTHON" tools/strip_pylint.py "${PATHS[@]}"
echo '== 2/3 ruff check --fix (safe fixes)'
ruff check --fix --exit-zero --quiet "${PATHS[@]}"
echo '== 3/3 ruff format'
ruff format "${PATHS[@]}"

echo '== left for a human: ruff'
ruff check --statistics "${PATHS[@]}" || true
ruff check --output-format concise "${PATHS[@]}" || true
ruff format --check "${PATHS[@]}" >/dev/null || echo 'ruff format --check still fails'
echo '== left for a human: mypy'
mypy || true
